"""remediator.yml: pydantic models of the receiver's configuration, and the loader.

A bad file is refused at start with the path to each bad field
(``severity.rules[3].match.severity: Input should be a valid string``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from receiver.durations import Duration
from receiver.errors import ConfigError
from receiver.matchers import MatchSpec
from receiver.rules import RateBudget, RemediationRule, check_template
from receiver.secrets import SecretRef
from receiver.severity import Severity, SeverityConfig
from receiver.targets import TargetsConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ServerConfig(_Section):
    bind: str = Field(default="127.0.0.1:9095", pattern=r"^[\w.\-\[\]:]+:\d{1,5}$")
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=64)
    timeout: int = Field(default=30, ge=1, le=600)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    public_url: str = Field(default="http://127.0.0.1:9095", pattern=r"^https?://")
    embedded_worker: bool = True
    secret_key: SecretRef | None = Field(
        default=None,
        description="signs approval links, sessions and CSRF tokens; when unset, a random "
        "key is created once in data_dir/secret_key (mode 0600) and shared by all processes",
    )
    secure_cookies: bool = Field(
        default=True, description="mark the session cookie Secure (HTTPS only)"
    )


class BasicAuth(_Section):
    username: str = Field(min_length=1)
    password: SecretRef


class AuthConfig(_Section):
    bearer_token: SecretRef | None = None
    basic: BasicAuth | None = None

    @property
    def configured(self) -> bool:
        return self.bearer_token is not None or self.basic is not None


class StoreConfig(_Section):
    url: SecretRef | str = Field(
        default="sqlite:///remediator.db",
        description="sqlite:///relative/or//absolute path, or postgresql://...; "
        "a PostgreSQL URL with a password belongs in env:NAME or file:/path",
    )
    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=10, ge=1, le=200)
    connect_timeout: Duration = timedelta(seconds=3)
    migrate_on_start: bool = True

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("env:", "file:")):
            return value  # resolved by SecretRef
        if isinstance(value, str) and not value.startswith(
            ("sqlite://", "postgresql://", "postgres://")
        ):
            raise ValueError("store.url must start with sqlite://, postgresql:// or env:/file:")
        return value

    def resolved_url(self) -> str:
        return self.url.reveal() if not isinstance(self.url, str) else self.url


class IncidentKeyConfig(_Section):
    by: Literal["group_key", "labels"] = "group_key"
    labels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _labels_needed(self) -> IncidentKeyConfig:
        if self.by == "labels" and not self.labels:
            raise ValueError("incidents.key.by=labels needs a non-empty 'labels' list")
        return self


class IncidentsConfig(_Section):
    key: IncidentKeyConfig = Field(default_factory=IncidentKeyConfig)
    flap_window: Duration = timedelta(minutes=15)


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKWEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


class BusinessHours(_Section):
    timezone: str = "UTC"
    days: list[Weekday] = Field(
        default_factory=lambda: list(_WORKWEEK), min_length=1
    )
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("use HH:MM, 24-hour")
        return value

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.opens >= self.closes:
            raise ValueError("business hours: start must be before end")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def opens(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def closes(self) -> time:
        return time.fromisoformat(self.end)

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(_DAYS.index(d) for d in self.days)


class EscalationLevel(_Section):
    name: str = Field(min_length=1, max_length=100)
    channels: list[str] = Field(default_factory=list)
    after: Duration = timedelta(minutes=15)


class SlaConfig(_Section):
    """Acknowledge-by deadlines. ``business_day`` counts one business day of business hours."""

    P0: Duration | Literal["business_day"] = timedelta(minutes=15)
    P1: Duration | Literal["business_day"] = timedelta(hours=1)
    P2: Duration | Literal["business_day"] = timedelta(hours=4)
    P3: Duration | Literal["business_day"] = "business_day"
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    escalation: dict[Severity, list[EscalationLevel]] = Field(
        default_factory=dict,
        description="who is told when the acknowledge-by deadline passes unacknowledged: "
        "level 1 at the deadline, each next level 'after' the previous one",
    )
    reminders: dict[Severity, Duration] = Field(
        default_factory=lambda: {Severity.P0: timedelta(minutes=15),
                                 Severity.P1: timedelta(minutes=30)},
        description="status updates to the incident channel while not resolved",
    )
    noise_window: Duration = Field(
        default=timedelta(minutes=5),
        description="report: incidents that resolve on their own within this, with no human "
        "or remediation action, count as noise",
    )

    def for_severity(self, severity: Severity) -> timedelta | Literal["business_day"]:
        value: timedelta | Literal["business_day"] = getattr(self, severity.value)
        return value


class MaintenanceWindow(_Section):
    """A time range during which matching actions are blocked: one-off (``start_at`` and
    ``end_at``) or recurring (``days`` with ``start``/``end`` local times, which may wrap
    past midnight). Empty ``rules``/``targets`` mean every rule/target."""

    name: str = Field(min_length=1, max_length=100)
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    days: list[Weekday] = Field(default_factory=list)
    start: str | None = None
    end: str | None = None
    rules: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list, description="fnmatch patterns")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return BusinessHours._tz(value)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        return BusinessHours._hhmm(value) if value is not None else None

    @model_validator(mode="after")
    def _shape(self) -> MaintenanceWindow:
        one_off = self.start_at is not None or self.end_at is not None
        recurring = bool(self.days) or self.start is not None or self.end is not None
        if one_off == recurring:
            raise ValueError("give either start_at/end_at or days/start/end")
        if one_off:
            if self.start_at is None or self.end_at is None:
                raise ValueError("a one-off window needs start_at and end_at")
            if self.start_at.tzinfo is None or self.end_at.tzinfo is None:
                raise ValueError("start_at/end_at need a time zone offset")
            if self.end_at <= self.start_at:
                raise ValueError("end_at must be after start_at")
        elif not (self.days and self.start and self.end) or self.start == self.end:
            raise ValueError("a recurring window needs days, start and end (start != end)")
        return self

    def active(self, now: datetime) -> bool:
        if self.start_at is not None and self.end_at is not None:
            return self.start_at <= now < self.end_at
        assert self.start is not None and self.end is not None  # noqa: S101 - validated
        local = now.astimezone(ZoneInfo(self.timezone))
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        t, day = local.time(), _DAYS[local.weekday()]
        if start < end:
            return day in self.days and start <= t < end
        # wraps midnight: the window belongs to the day it starts on
        yesterday = _DAYS[(local.weekday() - 1) % 7]
        return (day in self.days and t >= start) or (yesterday in self.days and t < end)

    def covers(self, rule: str, targets: list[str]) -> bool:
        if self.rules and rule not in self.rules:
            return False
        if not self.targets:
            return True
        return any(fnmatch.fnmatchcase(t, p) for t in targets for p in self.targets)


class RemediationConfig(_Section):
    enabled: bool = True
    dry_run: bool = Field(default=False, description="shadow mode: record plans, touch nothing")
    lease: Duration = timedelta(seconds=60)
    poll_interval: Duration = timedelta(seconds=2)
    rate_budget: RateBudget | None = Field(
        default_factory=lambda: RateBudget(max=30, per=timedelta(hours=1))
    )
    max_targets_per_window: int | None = Field(default=50, ge=1)
    targets_window: Duration = timedelta(hours=1)
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    max_chain_depth: int = Field(default=3, ge=0, le=10)


class Person(_Section):
    groups: list[str] = Field(default_factory=list)
    email: str | None = None
    password_hash: str | None = None


UserName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,99}$")]


class TrustedProxy(_Section):
    """An auth proxy (oauth2-proxy style) that sets the user in a header."""

    header: str = Field(default="X-Forwarded-User", pattern=r"^[A-Za-z0-9-]{1,64}$")
    addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"], min_length=1)

    @field_validator("addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    def trusts(self, remote: str | None) -> bool:
        if not remote:
            return False
        try:
            ip = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.addresses)


class ApiToken(_Section):
    token: SecretRef
    user: UserName
    scope: Literal["read", "operator"] = "read"


class PeopleConfig(_Section):
    """Operators and approvers. Approval policies name groups from here."""

    users: dict[UserName, Person] = Field(default_factory=dict)
    trusted_proxy: TrustedProxy | None = None
    api_tokens: dict[str, ApiToken] = Field(default_factory=dict)
    session_lifetime: Duration = timedelta(hours=12)

    def groups_of(self, user: str) -> set[str]:
        person = self.users.get(user)
        return set(person.groups) if person else set()


ChannelName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]


def _notify_kinds() -> list[str]:
    from receiver.store.events import NOTIFY  # deferred: the store pulls in its drivers

    return sorted(NOTIFY)


class NotificationChannel(_Section):
    """One apprise destination. ``url`` is an apprise URL (``slack://...``, ``msteams://...``,
    ``mailtos://...``, ``jsons://host/path``...) given as env:/file:, since it holds tokens."""

    url: SecretRef
    events: list[str] = Field(default_factory=_notify_kinds, min_length=1)
    severities: list[Severity] = Field(default_factory=lambda: list(Severity), min_length=1)
    format: Literal["text", "markdown"] = "text"

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: SecretRef) -> SecretRef:
        import apprise  # deferred: only configs with channels pay for loading its plugins

        if apprise.Apprise.instantiate(value.reveal()) is None:
            scheme = value.reveal().partition("://")[0] if "://" in value.reveal() else "?"
            raise ValueError(f"{value.ref} is not a URL apprise can send to (scheme {scheme!r})")
        return value

    @field_validator("events")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        known = _notify_kinds()
        unknown = [k for k in value if k not in known]
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; known: {', '.join(known)}")
        return value

    def matches(self, kind: str, severity: str) -> bool:
        return kind in self.events and severity in self.severities


class NotificationRetry(_Section):
    max_attempts: int = Field(default=20, ge=1, le=1000)
    backoff_initial: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _order(self) -> NotificationRetry:
        if self.backoff_initial <= timedelta(0) or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        return self


class NotificationsConfig(_Section):
    """Phase 4: who hears about what. Outbox rows fan out to every channel whose events and
    severities match; the worker sends them with retries. ``link_base`` defaults to
    ``server.public_url``."""

    channels: dict[ChannelName, NotificationChannel] = Field(default_factory=dict)
    retry: NotificationRetry = Field(default_factory=NotificationRetry)
    link_base: str | None = Field(default=None, pattern=r"^https?://")
    timeout: Duration = timedelta(seconds=10)


def _labels_only(value: str) -> str:
    check_template(value)
    return value


_Templated = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_labels_only)]
_TemplatedUrl = Annotated[
    str, Field(pattern=r"^https?://", max_length=2048), AfterValidator(_labels_only)
]
_PromQL = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_labels_only)]


class HttpProbe(_Section):
    """GET a health or readiness endpoint: status, latency and a body excerpt (ok on 2xx)."""

    url: _TemplatedUrl


class DockerProbe(_Section):
    """A container's state, restart count, image, start time and last log lines."""

    container: _Templated = Field(description="a name or {{ labels.x }}; must pass targets")
    log_lines: int = Field(default=100, ge=1, le=1000)


class PostgresProbe(_Section):
    """SELECT 1 latency, connections vs max_connections, the longest queries, database size."""

    target: _Templated = Field(description="a name in targets.postgres, or {{ labels.x }}")
    database: _Templated | None = Field(
        default=None, description="default: the DSN's; must be in the target's databases"
    )


class RedisProbe(_Section):
    """PING latency, INFO memory and INFO clients."""

    target: _Templated = Field(description="a name in targets.redis, or {{ labels.x }}")
    db: int = Field(default=0, ge=0, le=1023)


class PrometheusProbe(_Section):
    """Instant PromQL queries, each kept as a snapshot (request rate, error rate, latency)."""

    url: _TemplatedUrl = Field(description="Prometheus base URL")
    queries: dict[Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")], _PromQL] = Field(
        min_length=1, max_length=20
    )


PROBE_KINDS = ("http", "docker", "postgres", "redis", "prometheus")


class DiagnosticCheck(MatchSpec):
    """One read-only check. It applies to an incident when any of its alerts matches (always,
    without matchers). Exactly one probe section is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    timeout: Duration = timedelta(seconds=10)
    http: HttpProbe | None = None
    docker: DockerProbe | None = None
    postgres: PostgresProbe | None = None
    redis: RedisProbe | None = None
    prometheus: PrometheusProbe | None = None

    @model_validator(mode="after")
    def _one_probe(self) -> DiagnosticCheck:
        given = [k for k in PROBE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(PROBE_KINDS)} (got {len(given)})")
        if not timedelta(0) < self.timeout <= timedelta(minutes=5):
            raise ValueError("timeout must be more than 0s and at most 5m")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in PROBE_KINDS if getattr(self, k) is not None)

    @property
    def probe(self) -> BaseModel:
        probe: BaseModel = getattr(self, self.kind)
        return probe


class DiagnosticsConfig(_Section):
    """Automatic diagnostics (checklist phase 2): run by a worker when an incident opens or
    reopens, and on demand."""

    checks: list[DiagnosticCheck] = Field(default_factory=list)
    parallelism: int = Field(default=4, ge=1, le=32)
    max_evidence_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)

    @model_validator(mode="after")
    def _unique_names(self) -> DiagnosticsConfig:
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate diagnostic check name(s): {', '.join(dupes)}")
        return self


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    data_dir: Path = Path("data")
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    severity: SeverityConfig = Field(default_factory=SeverityConfig)
    sla: SlaConfig = Field(default_factory=SlaConfig)
    remediation: RemediationConfig = Field(default_factory=RemediationConfig)
    people: PeopleConfig = Field(default_factory=PeopleConfig)
    rules: list[RemediationRule] = Field(default_factory=list)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)

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


def parse_config(data: Any, source: str = "<config>") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "the file must hold a mapping")])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc)) from exc
    _check_rule_playbooks(config, source)
    return config


def _check_rule_playbooks(config: Config, source: str) -> None:
    """Each rule must name a known playbook, and a next_rule must name another rule."""
    if not config.rules:
        return
    from playbooks import load_registry  # deferred: playbooks import adapters

    registry = load_registry()
    names = {r.name for r in config.rules}
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(config.rules):
        if rule.playbook not in registry:
            known = ", ".join(sorted(registry))
            problems.append((f"rules[{i}].playbook", f"unknown playbook; known: {known}"))
        nxt = rule.on_failure.next_rule
        if rule.on_failure.action == "next" and (nxt not in names or nxt == rule.name):
            problems.append(
                (f"rules[{i}].on_failure.next_rule", f"must name another rule (got {nxt!r})")
            )
    if problems:
        raise ConfigError(source, problems)


def load_config(path: str | Path) -> Config:
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
    config = parse_config(data, str(path))
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (path.parent / config.data_dir).resolve()})
    return config
