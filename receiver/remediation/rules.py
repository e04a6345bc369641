"""Remediation rules: label matchers -> a playbook with params, approval policy and guards.

Params may substitute ``{{ labels.x }}`` and ``{{ annotations.x }}`` and nothing more; the
substituted values are then validated by the playbook's Params model and the allowlist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from receiver.durations import Duration
from receiver.errors import TargetNotAllowed, TemplateError
from receiver.intake.matchers import CompiledMatch, MatchSpec
from receiver.intake.severity import Severity

_TEMPLATE = re.compile(r"\{\{\s*(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ANY_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
RULE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
PLACEHOLDER = _TEMPLATE
"""One ``{{ labels.x }}`` / ``{{ annotations.x }}`` reference (groups: source, name)."""


def check_template(text: str) -> None:
    for m in _ANY_TEMPLATE.finditer(text):
        if not _TEMPLATE.fullmatch(m.group(0)):
            raise ValueError(
                f"unsupported template {m.group(0)!r}; only {{{{ labels.x }}}} and "
                "{{ annotations.x }} are allowed"
            )


def render_params(params: Any, labels: dict[str, str], annotations: dict[str, str]) -> Any:
    """Substitute label/annotation references in every string of ``params``."""
    if isinstance(params, str):

        return _TEMPLATE.sub(lambda m: placeholder_value(m, labels, annotations), params)
    if isinstance(params, dict):
        return {k: render_params(v, labels, annotations) for k, v in params.items()}
    if isinstance(params, list):
        return [render_params(v, labels, annotations) for v in params]
    return params


def placeholder_value(
    m: re.Match[str], labels: dict[str, str], annotations: dict[str, str]
) -> str:
    """The alert's value for one :data:`PLACEHOLDER` match (TemplateError when absent)."""
    source = labels if m.group(1) == "labels" else annotations
    if m.group(2) not in source:
        raise TemplateError(f"alert has no {m.group(1)[:-1]} {m.group(2)!r}")
    return source[m.group(2)]


def _walk_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


ApprovalMode = Literal["risk", "auto", "required", "earned"]


def checked_url_template(value: str) -> str:
    """A check's URL template: only the allowed placeholders, each where a label value may
    stand in a URL (see :mod:`receiver.remediation.urls`)."""
    from receiver.remediation.urls import (
        check_url_template,  # deferred: receiver.remediation.urls imports rules
    )

    check_template(value)
    check_url_template(value)
    return value


class ApprovalPolicy(BaseModel):
    """``risk`` (the default): approval when the playbook call is high risk. ``earned``:
    approval until the rule has earned autonomy (``promote_after`` approved runs within
    ``window`` that verified and whose alert did not fire again within ``recurrence``), see
    :mod:`receiver.remediation.autonomy`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ApprovalMode = "risk"
    per_severity: dict[Severity, ApprovalMode] = Field(default_factory=dict)
    approvers: int = Field(default=1, ge=1, le=5)
    groups: list[str] = Field(default_factory=list)
    expires: Duration = timedelta(minutes=30)
    promote_after: int = Field(default=5, ge=1, le=1000)
    window: Duration = timedelta(days=30)
    recurrence: Duration = timedelta(hours=1)

    @field_validator("window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=365):
            raise ValueError("must be between 1h and 365d")
        return value

    @field_validator("recurrence")
    @classmethod
    def _recurrence(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1m and 7d")
        return value

    @model_validator(mode="after")
    def _earned_fields(self) -> ApprovalPolicy:
        earned = {"promote_after", "window", "recurrence"} & self.model_fields_set
        if earned and not self.earned:
            raise ValueError(f"{', '.join(sorted(earned))}: only with mode: earned")
        if self.earned and self.recurrence >= self.window:
            raise ValueError("recurrence must be shorter than window")
        return self

    @property
    def earned(self) -> bool:
        """Whether any severity's mode is ``earned``."""
        return self.mode == "earned" or "earned" in self.per_severity.values()

    def mode_for(self, severity: Severity) -> ApprovalMode:
        return self.per_severity.get(severity, self.mode)

    def required_for(self, severity: Severity, *, high_risk: bool = False) -> bool:
        """Whether the policy asks for approval; ``earned`` counts as ``required`` here (the
        guards ask :mod:`receiver.remediation.autonomy` whether the rule has earned it)."""
        mode = self.mode_for(severity)
        return mode in ("required", "earned") or (mode == "risk" and high_risk)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateBudget(_Strict):
    max: int = Field(ge=1, le=100000)
    per: Duration


class CircuitBreaker(_Strict):
    failures: int = Field(default=3, ge=1, le=1000)
    window: Duration = timedelta(hours=1)


class BlastRadius(_Strict):
    max_targets_per_job: int = Field(default=5, ge=1, le=10000)
    max_targets_per_window: int | None = Field(default=None, ge=1, le=100000)
    window: Duration = timedelta(hours=1)


class Guards(_Strict):
    cooldown: Duration = timedelta(minutes=10)
    rate: RateBudget | None = None
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    dry_run: bool = False


class HttpCheck(_Strict):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    expect_status: int = Field(default=200, ge=100, le=599)
    within: Duration = timedelta(seconds=60)
    interval: Duration = timedelta(seconds=2)
    timeout: Duration = timedelta(seconds=5)

    _template = field_validator("url")(checked_url_template)


class PromQLCheck(_Strict):
    url: str = Field(pattern=r"^https?://", max_length=2048, description="Prometheus base URL")
    query: str = Field(min_length=1, max_length=4096)
    expect: Literal["empty", "non_empty", "below", "above"] = "empty"
    threshold: float | None = None
    within: Duration = timedelta(minutes=2)
    interval: Duration = timedelta(seconds=5)
    timeout: Duration = timedelta(seconds=5)

    _url_template = field_validator("url")(checked_url_template)

    @field_validator("query")
    @classmethod
    def _template(cls, value: str) -> str:
        from receiver.remediation.promql import check_query_template  # deferred: it imports rules

        check_template(value)
        check_query_template(value)
        return value


class ResolvedCheck(_Strict):
    within: Duration = timedelta(minutes=5)
    interval: Duration = timedelta(seconds=2)


class Verification(_Strict):
    http: HttpCheck | None = None
    promql: PromQLCheck | None = None
    alert_resolved: ResolvedCheck | None = None


class OnFailure(_Strict):
    action: Literal["escalate", "retry", "next"] = "escalate"
    retries: int = Field(default=2, ge=0, le=20)
    backoff: Duration = timedelta(seconds=30)
    next_rule: str | None = None


def literal_alertmanager_url(value: str) -> str:
    """An Alertmanager base URL as written in the config: a literal http(s) URL (no
    template, userinfo, query or fragment); its host:port is checked against
    ``targets.http.hosts`` when the config loads."""
    from urllib.parse import urlsplit

    if _ANY_TEMPLATE.search(value) or "{{" in value or "{%" in value:
        raise ValueError("must be a literal URL: an Alertmanager is never chosen by alert data")
    try:
        split = urlsplit(value)
        split.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"does not parse as a URL: {exc}") from exc
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "@" in split.netloc:
        raise ValueError("must not carry user:password@")
    if split.query or split.fragment or any(c.isspace() for c in value):
        raise ValueError("must be the Alertmanager's base URL (no query, fragment or spaces)")
    from receiver.remediation.urls import check_url  # deferred: it imports rules

    try:
        check_url(value, _AnyHost())  # a plain, unambiguous host:port (the allowlist: later)
    except TargetNotAllowed as exc:
        raise ValueError(str(exc)) from exc
    return value.rstrip("/")


class _AnyHost:
    def allows(self, host: str, port: int) -> bool:
        return True


AlertmanagerUrl = Annotated[str, Field(max_length=2048), AfterValidator(literal_alertmanager_url)]


class SilenceSpec(_Strict):
    """``silence``: while a job of the rule acts, the job's alert is silenced in each of
    these Alertmanagers (one URL, or every peer of an HA cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alertmanager: list[AlertmanagerUrl] = Field(min_length=1, max_length=10)
    for_: Duration = Field(default=timedelta(minutes=15), alias="for")
    comment: str | None = Field(default=None, max_length=500)

    @field_validator("alertmanager", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("alertmanager")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists one Alertmanager twice")
        return value

    @field_validator("for_")
    @classmethod
    def _bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=1):
            raise ValueError("must be between 1m and 24h")
        return value


class UndoSpec(_Strict):
    """``undo``: when a job of the rule is taken back by a job of its own (the playbook's
    ``undo``, see :mod:`receiver.remediation.undo`). ``verification_failed``: at once when
    its verification fails, before the ``on_failure`` path; ``resolved``: once the incident
    has been resolved for ``after`` (a temporary measure ends)."""

    when: Literal["verification_failed", "resolved"]
    after: Duration = timedelta(0)

    @model_validator(mode="after")
    def _after(self) -> UndoSpec:
        if self.after < timedelta(0) or self.after > timedelta(days=7):
            raise ValueError("after must be between 0s and 7d")
        if self.when != "resolved" and "after" in self.model_fields_set:
            raise ValueError("after is only for when: resolved")
        return self


class RemediationRule(MatchSpec):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=RULE_NAME)
    playbook: str
    params: dict[str, Any] = Field(default_factory=dict)
    scope: Literal["alert", "incident"] = "alert"
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    guards: Guards = Field(default_factory=Guards)
    verify: Verification = Field(default_factory=Verification)
    on_failure: OnFailure = Field(default_factory=OnFailure)
    silence: SilenceSpec | None = None
    undo: UndoSpec | None = None
    chain_only: bool = Field(
        default=False, description="only runs as another rule's on_failure next_rule"
    )
    enabled: bool = True

    @field_validator("params")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        for text in _walk_strings(value):
            check_template(text)
        return value

    @model_validator(mode="after")
    def _silence_scope(self) -> RemediationRule:
        if self.silence is not None and self.scope != "alert":
            raise ValueError("silence needs scope: alert (the silence matches the job's alert)")
        return self


def render_rule_params(
    rule: RemediationRule, labels: dict[str, str], annotations: dict[str, str]
) -> Any:
    """A rule's params for one alert: :func:`render_params`, where each value substituted
    into a param that the playbook escapes (its ``template_escapes``, e.g. a regex) is
    escaped first, so that alert data is literal text there."""
    from playbooks import REGISTRY  # deferred: playbooks import the targets and adapters

    playbook = REGISTRY.get(rule.playbook)
    escapes = playbook.template_escapes if playbook is not None else {}
    rendered: dict[str, Any] = {}
    for name, value in rule.params.items():
        escape = escapes.get(name)
        if escape is not None and any(_TEMPLATE.search(t) for t in _walk_strings(value)):
            value = render_params(
                value,
                {k: escape(v) for k, v in labels.items()},
                {k: escape(v) for k, v in annotations.items()},
            )
        else:
            value = render_params(value, labels, annotations)
        rendered[name] = value
    return rendered


def params_from_alert(rule_params: Mapping[str, Any], rendered: Any) -> frozenset[str] | None:
    """Names of the rendered params that alert data filled, or may have filled: every param
    that is not exactly a literal value of the rule (no ``{{ }}`` reference and equal to
    what the rule says now). A job's params are rendered when it is enqueued; comparing
    them with the rule when the job runs also covers a rule edited in between. None when
    ``rendered`` is not a mapping (such params are refused anyway)."""
    if not isinstance(rendered, Mapping):
        return None
    return frozenset(
        name
        for name, value in rendered.items()
        if name not in rule_params
        or any(_TEMPLATE.search(t) for t in _walk_strings(rule_params[name]))
        or rule_params[name] != value
    )


@dataclass(frozen=True)
class RuleHit:
    rule: RemediationRule
    index: int


class RuleSet:
    """Compiled remediation rules; every enabled rule that matches fires (not first-match)."""

    def __init__(self, rules: list[RemediationRule]) -> None:
        self._rules = [(CompiledMatch(r), r) for r in rules]

    def matching(self, labels: dict[str, str]) -> list[RuleHit]:
        return [
            RuleHit(rule, i)
            for i, (match, rule) in enumerate(self._rules)
            if rule.enabled and not rule.chain_only and match(labels)
        ]

    def __bool__(self) -> bool:
        return bool(self._rules)
