"""Game-day scenarios: YAML files naming the alerts to fire, the steps expected of the
people and the service, a time limit, and the targets that may really be acted on.

    name: web container down
    time_limit: 30m
    alerts:
      - labels: {alertname: ContainerDown, severity: critical, container: web1}
        annotations: {summary: web1 does not answer}
        resolve_after: 10m          # optional: the alert clears by itself then
    expect:
      - {step: incident_opened, within: 1m}
      - {step: acknowledged, within: 5m}
      - {step: job_dry_run, rule: restart-web, within: 2m}
      - step: resolved
    live:                           # optional: jobs whose every target is listed really act
      targets: ["container:web1"]  #   (still under the allowlist and every guard)

A file that does not fit is refused with the path of each bad field
(:class:`~receiver.errors.ConfigError`). Label and annotation values are only ever sent to
Alertmanager as JSON strings; they are bounded and may not hold control characters.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from receiver.config import problems_of
from receiver.durations import Duration
from receiver.errors import ConfigError
from receiver.store.gamedays import LABEL

MAX_FILE_BYTES = 256 * 1024

LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$")]
Value = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
TargetRef = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}:[^\s\x00-\x1f\x7f]{1,256}$")]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]

StepKind = Literal["incident_opened", "acknowledged", "job_planned", "job_dry_run",
                   "job_succeeded", "mitigated", "resolved"]
JOB_STEPS = frozenset({"job_planned", "job_dry_run", "job_succeeded"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioAlert(_Model):
    labels: dict[LabelName, Value] = Field(min_length=1, max_length=64)
    annotations: dict[LabelName, Value] = Field(default_factory=dict, max_length=64)
    resolve_after: Duration | None = None
    """The alert clears by itself this long after the start (default: at the time limit,
    or when the game day is ended)."""

    @model_validator(mode="after")
    def _labels(self) -> ScenarioAlert:
        if not self.labels.get("alertname"):
            raise ValueError("labels.alertname is required")
        if LABEL in self.labels:
            raise ValueError(f"labels.{LABEL} is set by remediator; leave it out")
        if any(name.startswith("__") for name in self.labels):
            raise ValueError("label names starting with __ are reserved")
        if self.resolve_after is not None and self.resolve_after <= timedelta(0):
            raise ValueError("resolve_after must be positive")
        return self


class ExpectedStep(_Model):
    step: StepKind
    rule: RuleName | None = None
    """The remediation rule a job step is about (required for job_* steps, only for them)."""
    within: Duration | None = None
    """How long after the start it must happen (default: before the time limit)."""

    @model_validator(mode="after")
    def _rule(self) -> ExpectedStep:
        if self.step in JOB_STEPS and self.rule is None:
            raise ValueError(f"{self.step} needs the rule it is about (rule: NAME)")
        if self.step not in JOB_STEPS and self.rule is not None:
            raise ValueError(f"rule is only for job steps, not {self.step}")
        if self.within is not None and self.within <= timedelta(0):
            raise ValueError("within must be positive")
        return self

    @property
    def label(self) -> str:
        return f"{self.step} ({self.rule})" if self.rule else self.step


class Live(_Model):
    targets: list[TargetRef] = Field(min_length=1, max_length=20)


class Scenario(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                           pattern=r"^[^\x00-\x1f\x7f]+$")]
    description: Value = ""
    time_limit: Duration = timedelta(minutes=30)
    alerts: list[ScenarioAlert] = Field(min_length=1, max_length=50)
    expect: list[ExpectedStep] = Field(default_factory=list, max_length=50)
    live: Live | None = None

    @model_validator(mode="after")
    def _limits(self) -> Scenario:
        if not timedelta(seconds=10) <= self.time_limit <= timedelta(days=1):
            raise ValueError("time_limit must be between 10s and 1d")
        for n, step in enumerate(self.expect):
            if step.within is not None and step.within > self.time_limit:
                raise ValueError(f"expect[{n}].within is past the time_limit")
        for n, alert in enumerate(self.alerts):
            if alert.resolve_after is not None and alert.resolve_after > self.time_limit:
                raise ValueError(f"alerts[{n}].resolve_after is past the time_limit")
        return self

    @property
    def live_targets(self) -> list[str]:
        return list(self.live.targets) if self.live else []


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(source, [("(top level)", "the file must hold a mapping")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_of(exc)) from exc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ConfigError naming each bad field."""
    path = Path(path)
    try:
        raw = path.read_bytes()[:MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(str(path), [("(file)", f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(str(path), [(where, f"invalid YAML: {exc}")]) from exc
    return parse_scenario(data, str(path))
