"""The playbook contract shared by every built-in playbook and by the job engine.

A playbook is a class with:

- ``name``: the name rules use (``restart_container``);
- ``Params``: a pydantic model of its parameters, with bounds and patterns. Rule params
  (after ``{{ labels.x }}`` substitution) are validated by it;
- ``idempotent``: whether an interrupted run may be re-run safely;
- ``risk``: ``low`` or ``high`` (high risk asks for approval by default);
- ``always_requires_approval``: no rule may run it unattended; ``default_approvers``: how
  many people approve a job when the rule does not say (two for restore_database);
  ``risk_for(params, ctx)`` refines it per call (flush_cache by a pattern under the
  target's ``key_prefixes`` is low, FLUSHALL high) and ``risk_note`` says why;
- ``template_escapes``: per param name, how a label or annotation value is escaped when it
  is substituted there (kill_query's ``query_regex``: ``re.escape``, so it is literal text);
- ``targets(params)``: the identities of what it would touch (``container:web1``,
  ``postgres:main``), used for per-target locks, cooldowns and blast radius;
- ``check_allowed(params, ctx)``: raises :class:`receiver.errors.TargetNotAllowed` when the
  allowlist in ``ctx.targets`` does not cover every target. ``ctx.from_alert`` names the
  params that alert data filled; a playbook may refuse such a value where it would accept
  the same value written literally in the rule (it then asks for approval instead);
- ``plan(params, ctx)``: what it would do, with no side effect;
- ``run(params, ctx)``: does it through an adapter and returns a :class:`RunResult`;
- ``verify(params, ctx, result)``: an optional check of the playbook's own effect;
- ``undo(params, ctx, result)`` (when ``undoable``): puts back what ``run`` changed, from
  what ``run`` recorded in ``result.detail`` (the replica count before, the server state
  before, the version rolled back from), and ``undo_plan`` says what it would do. Both
  check the allowlist again and refuse (PlaybookError) when the system moved on since the
  run, so an undo never overwrites a later change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict

from receiver.adapters import AdapterFactory
from receiver.errors import PlaybookError
from receiver.remediation.targets import TargetsConfig


class Risk(enum.StrEnum):
    LOW = "low"
    HIGH = "high"


class StrictParams(BaseModel):
    """Base for every ``Params`` model: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=StrictParams)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PlaybookContext:
    """What a playbook may use: the allowlist, a clock, a logger, and adapter factories."""

    targets: TargetsConfig
    clock: Callable[[], datetime] = _utcnow
    log: Any = field(default_factory=structlog.get_logger)
    dry_run: bool = False
    adapters: AdapterFactory = field(default_factory=AdapterFactory)
    from_alert: frozenset[str] | None = None
    """Names of the params that an alert's labels or annotations filled (see
    :func:`receiver.remediation.rules.params_from_alert`); None: not known, so every param
    counts."""

    _allowed: list[tuple[object, object]] = field(default_factory=list, repr=False,
                                                   compare=False)

    def filled_by_alert(self, param: str) -> bool:
        """Whether the value of ``param`` came (or may have come) from alert data."""
        return self.from_alert is None or param in self.from_alert

    def ensure_allowed(self, playbook: Playbook[Any], params: StrictParams) -> None:
        """``playbook.check_allowed(params, self)``, once per context and params: the
        worker checks a job's params when it takes the job, and the plan and run of the
        same job (one context) find them checked. Playbooks call this, not
        ``check_allowed``, before they act."""
        if any(p is playbook and q is params for p, q in self._allowed):
            return
        playbook.check_allowed(params, self)
        self._allowed.append((playbook, params))


@dataclass(frozen=True)
class Plan:
    """What a playbook would do: human-readable steps plus structured detail."""

    summary: str
    steps: list[str]
    targets: list[str]
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "steps": list(self.steps),
            "targets": list(self.targets),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RunResult:
    """What a playbook did. ``ok`` is False when the action itself failed."""

    ok: bool
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """The result as a job stored it (:meth:`as_dict`, as JSON): what ``undo`` is given."""
        detail = data.get("detail")
        return cls(ok=bool(data.get("ok")), summary=str(data.get("summary", "")),
                   detail=dict(detail) if isinstance(detail, Mapping) else {})


@dataclass(frozen=True)
class Verification:
    ok: bool
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary, "detail": self.detail}


class Playbook(Generic[P]):
    """Base class; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    Params: ClassVar[type[StrictParams]]
    idempotent: ClassVar[bool] = False
    risk: ClassVar[Risk] = Risk.HIGH
    always_requires_approval: ClassVar[bool] = False
    """True for playbooks no rule may run unattended (restore_database)."""
    default_approvers: ClassVar[int] = 1
    """How many people must approve a job of this playbook when its rule does not say
    (``approval.approvers``); restore_database's two-person rule is 2."""
    template_escapes: ClassVar[Mapping[str, Callable[[str], str]]] = {}
    """Per param name, the escaping applied to each label/annotation value substituted in it."""
    undoable: ClassVar[bool] = False
    """True when ``undo`` can take back what ``run`` did."""

    def parse_params(self, raw: dict[str, Any]) -> P:
        return self.Params.model_validate(raw)  # type: ignore[return-value]

    def risk_for(self, params: P, ctx: PlaybookContext) -> Risk:
        """The risk of this call; by default the class's ``risk``."""
        return self.risk

    def risk_note(self, params: P, ctx: PlaybookContext) -> str | None:
        """Why this call has the risk it has, when that is not the playbook's default."""
        return None

    def approval_required(self, params: P, ctx: PlaybookContext) -> str | None:
        """Why this call needs a person's approval whatever the rule's approval mode
        (``approval: auto`` included), or None when the rule's policy decides."""
        if self.always_requires_approval:
            return "always, for this playbook"
        return None

    def targets(self, params: P) -> list[str]:
        raise NotImplementedError

    def check_allowed(self, params: P, ctx: PlaybookContext) -> None:
        raise NotImplementedError

    def plan(self, params: P, ctx: PlaybookContext) -> Plan:
        raise NotImplementedError

    def run(self, params: P, ctx: PlaybookContext) -> RunResult:
        raise NotImplementedError

    def verify(self, params: P, ctx: PlaybookContext, result: RunResult) -> Verification | None:
        return None

    def undo_plan(self, params: P, ctx: PlaybookContext, result: RunResult) -> Plan:
        """What ``undo`` would do after ``result``, with no side effect."""
        raise PlaybookError(f"playbook {self.name!r} cannot be undone")

    def undo(self, params: P, ctx: PlaybookContext, result: RunResult) -> RunResult:
        """Take back what the run that returned ``result`` did."""
        raise PlaybookError(f"playbook {self.name!r} cannot be undone")


def dry_run_result(plan: Plan) -> RunResult:
    """What ``run`` returns when ``ctx.dry_run`` is set: the plan, and nothing done."""
    return RunResult(
        ok=True,
        summary=f"dry run, nothing done: {plan.summary}",
        detail={"dry_run": True, "plan": plan.as_dict()},
    )
