"""remediator.yml: pydantic models of the receiver's configuration, and the loader.

A bad file is refused at start with the path to each bad field
(``severity.rules[3].match.severity: Input should be a valid string``).

The models of each section live beside this module, one module per section or pair of
sections (``server``, ``incidents``, ``windows``, ``remediation``, ``people``,
``notifications``, ``diagnostics``, ``audit``); every one of them is importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from receiver.config.audit import AuditConfig, CheckpointSink, SyslogSink, WebhookSink
from receiver.config.chat import ChatConfig, MatrixConfig
from receiver.config.diagnostics import (
    PROBE_KINDS,
    DiagnosticCheck,
    DiagnosticsConfig,
    DockerProbe,
    HttpProbe,
    PostgresProbe,
    PrometheusProbe,
    RedisProbe,
    http_host_problems,
)
from receiver.config.gameday import GamedayConfig
from receiver.config.incidents import EscalationLevel, IncidentKeyConfig, IncidentsConfig, SlaConfig
from receiver.config.notifications import (
    ChannelName,
    NotificationChannel,
    NotificationRetry,
    NotificationsConfig,
)
from receiver.config.oncall import OncallConfig, role_reference_problems, roster_problems
from receiver.config.people import ApiToken, PeopleConfig, Person, TrustedProxy, UserName
from receiver.config.remediation import RemediationConfig
from receiver.config.section import Section
from receiver.config.server import AuthConfig, BasicAuth, LoggingConfig, ServerConfig, StoreConfig
from receiver.config.status_page import StatusApproval, StatusComponent, StatusPageConfig
from receiver.config.windows import BusinessHours, MaintenanceWindow, Weekday
from receiver.errors import ConfigError
from receiver.intake.severity import SeverityConfig
from receiver.remediation.rules import RemediationRule
from receiver.remediation.targets import TargetsConfig

if TYPE_CHECKING:
    from playbooks.base import Playbook

__all__ = [
    "ApiToken",
    "AuditConfig",
    "AuthConfig",
    "BasicAuth",
    "BusinessHours",
    "ChatConfig",
    "ChannelName",
    "CheckpointSink",
    "Config",
    "DiagnosticCheck",
    "DiagnosticsConfig",
    "DockerProbe",
    "EscalationLevel",
    "HttpProbe",
    "IncidentKeyConfig",
    "IncidentsConfig",
    "LoggingConfig",
    "MaintenanceWindow",
    "MatrixConfig",
    "NotificationChannel",
    "NotificationRetry",
    "NotificationsConfig",
    "OncallConfig",
    "PROBE_KINDS",
    "PeopleConfig",
    "Person",
    "PostgresProbe",
    "PrometheusProbe",
    "RedisProbe",
    "RemediationConfig",
    "ServerConfig",
    "SlaConfig",
    "StatusApproval",
    "StatusComponent",
    "StatusPageConfig",
    "StoreConfig",
    "SyslogSink",
    "TrustedProxy",
    "UserName",
    "WebhookSink",
    "Weekday",
    "format_loc",
    "load_config",
    "parse_config",
    "problems_of",
]


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    data_dir: Path = Path("data")
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    severity: SeverityConfig = Field(default_factory=SeverityConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    remediation: RemediationConfig = Field(default_factory=RemediationConfig)
    people: PeopleConfig = Field(default_factory=PeopleConfig)
    oncall: OncallConfig = Field(default_factory=OncallConfig)
    rules: list[RemediationRule] = Field(default_factory=list)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)
    gameday: GamedayConfig = Field(default_factory=GamedayConfig)

    @model_validator(mode="after")
    def _rule_names(self) -> Config:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self

    def rule(self, name: str) -> RemediationRule | None:
        return next((r for r in self.rules if r.name == name), None)

    def store_url(self) -> str:
        """The store URL with a relative SQLite path placed under ``data_dir``."""
        url = self.store.resolved_url()
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return f"sqlite:///{(self.data_dir / url[len('sqlite:///'):]).resolve()}"
        return url


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in (
            "str",
            "timedelta",
            "literal['business_day']",
        ):
            continue  # pydantic's internal validator names are not config paths
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        path = format_loc(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        seen.setdefault(path, msg)
    return list(seen.items())


def parse_config(
    data: Any, source: str = "<config>", *, registry: Mapping[str, Playbook[Any]] | None = None
) -> Config:
    """Validate a config mapping. Rules must name a playbook of ``registry`` (default: the
    built-in playbooks, :func:`playbooks.load_registry`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "the file must hold a mapping")])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc)) from exc
    _check_rule_playbooks(config, source, registry)
    named = [(f"rules[{i}].approval.groups", list(r.approval.groups))
             for i, r in enumerate(config.rules)]
    for severity, levels in config.sla.escalation.items():
        for i, level in enumerate(levels):
            named.append((f"sla.escalation.{severity.value}[{i}].roles",
                          [f"oncall:{r}" for r in level.roles]))
    if config.chat.invite_groups is not None:
        named.append(("chat.invite_groups", list(config.chat.invite_groups)))
    roster = (roster_problems(config.oncall, set(config.people.users))
              + role_reference_problems(config.oncall, named))
    if roster:
        raise ConfigError(source, roster)
    hosts = http_host_problems(config.rules, config.diagnostics, config.targets.http)
    if hosts:
        raise ConfigError(source, hosts)
    audiences = config.notifications.audience_problems()
    if audiences:
        raise ConfigError(source, audiences)
    return config


def _check_rule_playbooks(
    config: Config, source: str, registry: Mapping[str, Playbook[Any]] | None
) -> None:
    """Each rule must name a playbook of ``registry``, and a next_rule must name another
    rule."""
    if not config.rules:
        return
    if registry is None:
        from playbooks import load_registry  # deferred: playbooks import adapters

        registry = load_registry()
    names = {r.name for r in config.rules}
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(config.rules):
        if rule.playbook not in registry:
            known = ", ".join(sorted(registry))
            problems.append((f"rules[{i}].playbook", f"unknown playbook; known: {known}"))
        elif rule.undo is not None and not registry[rule.playbook].undoable:
            problems.append((f"rules[{i}].undo", f"playbook {rule.playbook} cannot be undone"))
        nxt = rule.on_failure.next_rule
        if rule.on_failure.action == "next" and (nxt not in names or nxt == rule.name):
            problems.append(
                (f"rules[{i}].on_failure.next_rule", f"must name another rule (got {nxt!r})")
            )
    if problems:
        raise ConfigError(source, problems)


def load_config(
    path: str | Path, *, registry: Mapping[str, Playbook[Any]] | None = None
) -> Config:
    """Read and validate a YAML config file (see :func:`parse_config` for ``registry``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"invalid YAML: {exc}")]) from exc
    config = parse_config(data, str(path), registry=registry)
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    return config
