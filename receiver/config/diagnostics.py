"""The ``diagnostics`` section: read-only checks, each with exactly one probe whose fields may
use ``{{ labels.x }}`` / ``{{ annotations.x }}``.

URLs may take a value only as the host or host:port, or percent-encoded in the path or query
(:mod:`receiver.remediation.urls`); PromQL only inside a quoted matcher value
(:mod:`receiver.remediation.promql`).
A literal host that ``targets.http.hosts`` does not list is refused when the config loads
(:func:`http_host_problems`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from receiver.config.deploys import DeploysProbe
from receiver.config.section import Section
from receiver.durations import Duration
from receiver.intake.matchers import MatchSpec
from receiver.remediation.promql import check_query_template
from receiver.remediation.rules import RemediationRule, check_template
from receiver.remediation.targets import HttpTargets
from receiver.remediation.urls import check_url_template, literal_host_refusal


def _labels_only(value: str) -> str:
    check_template(value)
    return value


def _url_template(value: str) -> str:
    check_template(value)
    check_url_template(value)
    return value


def _query_template(value: str) -> str:
    check_template(value)
    check_query_template(value)
    return value


_Templated = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_labels_only)]
_TemplatedUrl = Annotated[
    str, Field(pattern=r"^https?://", max_length=2048), AfterValidator(_url_template)
]
_PromQL = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_query_template)]


class HttpProbe(Section):
    """GET a health or readiness endpoint: status, latency and a body excerpt (ok on 2xx)."""

    url: _TemplatedUrl


class DockerProbe(Section):
    """A container's state, restart count, image, start time and last log lines."""

    container: _Templated = Field(description="a name or {{ labels.x }}; must pass targets")
    log_lines: int = Field(default=100, ge=1, le=1000)


class PostgresProbe(Section):
    """SELECT 1 latency, connections vs max_connections, the longest queries, database size."""

    target: _Templated = Field(description="a name in targets.postgres, or {{ labels.x }}")
    database: _Templated | None = Field(
        default=None, description="default: the DSN's; must be in the target's databases"
    )


class RedisProbe(Section):
    """PING latency, INFO memory and INFO clients."""

    target: _Templated = Field(description="a name in targets.redis, or {{ labels.x }}")
    db: int = Field(default=0, ge=0, le=1023)


class PrometheusProbe(Section):
    """Instant PromQL queries, each kept as a snapshot (request rate, error rate, latency)."""

    url: _TemplatedUrl = Field(description="Prometheus base URL")
    queries: dict[Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")], _PromQL] = Field(
        min_length=1, max_length=20
    )


PROBE_KINDS = ("http", "docker", "postgres", "redis", "prometheus", "deploys")


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
    deploys: DeploysProbe | None = None

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


class DiagnosticsConfig(Section):
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


def http_host_problems(
    rules: list[RemediationRule], diagnostics: DiagnosticsConfig, hosts: HttpTargets
) -> list[tuple[str, str]]:
    """``(field path, reason)`` for each literal URL (verification, diagnostics, a rule's
    Alertmanagers) whose host:port is not in ``targets.http.hosts``; templated hosts are
    checked per alert."""
    urls: list[tuple[str, str]] = []
    for i, rule in enumerate(rules):
        if rule.verify.http is not None:
            urls.append((f"rules[{i}].verify.http.url", rule.verify.http.url))
        if rule.verify.promql is not None:
            urls.append((f"rules[{i}].verify.promql.url", rule.verify.promql.url))
        if rule.silence is not None:
            urls += [(f"rules[{i}].silence.alertmanager[{j}]", url)
                     for j, url in enumerate(rule.silence.alertmanager)]
    for i, check in enumerate(diagnostics.checks):
        if check.http is not None:
            urls.append((f"diagnostics.checks[{i}].http.url", check.http.url))
        if check.prometheus is not None:
            urls.append((f"diagnostics.checks[{i}].prometheus.url", check.prometheus.url))
    problems = []
    for path, url in urls:
        reason = literal_host_refusal(url, hosts)
        if reason is not None:
            problems.append((path, reason))
    return problems
