"""The YAML test files of ``remediator test``, in the style of ``promtool test rules``.

    config: ../remediator.yml          # relative to this file (or `remediator test -c`)
    now: 2026-03-02T10:00:00Z          # the moment every case is evaluated at (default now)
    cases:
      - name: a container down in web restarts it
        alerts:                        # or `notification:` with a whole webhook body
          - labels: {alertname: ContainerDown, container: web-1, severity: critical}
            annotations: {summary: web-1 is down}
            starts_at: -2m             # a time, or a duration before `now`
        state:                         # what the store holds before the alert comes in
          paused: [restart-web]        # or `true`: the kill switch for everything
          breaker_open: [scale-web]    # rules whose circuit breaker is open
          runs:                        # a rule's recent jobs (cooldown, rate, breaker)
            - {rule: restart-web, targets: [container:web-1], ago: 5m, outcome: succeeded}
        expect:
          severity: P0
          incident_key: remediator|...       # optional
          ack_due: 2026-03-02T10:15:00Z     # optional: the SLA deadline
          jobs:                              # every job the alert enqueues, in order
            - rule: restart-web
              playbook: restart_container
              params: {name: web-1}         # optional: the rendered params
              allowed: true                 # the allowlist verdict
              approval: {needed: false}     # or {needed: true, groups: [dba], approvers: 2}
              blocked_by: cooldown          # optional: the guard that stops it, or none

Every key of ``expect`` that is given is compared; what is left out is not checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from receiver.durations import Duration
from receiver.intake.severity import Severity


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputAlert(_Strict):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    starts_at: AwareDatetime | Duration = timedelta(minutes=1)
    """A time, or how long before ``now`` the alert started."""
    ends_at: AwareDatetime | None = None
    generator_url: str = ""


class PastRun(_Strict):
    rule: str
    targets: list[str] = Field(default_factory=list)
    ago: Duration = timedelta(minutes=5)
    outcome: Literal["succeeded", "failed"] = "succeeded"


class State(_Strict):
    paused: bool | list[str] = False
    """``true``: the kill switch for all remediation; a list: those rules paused."""
    breaker_open: list[str] = Field(default_factory=list)
    """Rules whose circuit breaker is open (their jobs need approval)."""
    runs: list[PastRun] = Field(default_factory=list)


class ExpectedApproval(_Strict):
    needed: bool
    groups: list[str] | None = None
    approvers: int | None = None


class ExpectedJob(_Strict):
    rule: str
    playbook: str | None = None
    params: dict[str, Any] | None = None
    allowed: bool | None = None
    approval: ExpectedApproval | None = None
    blocked_by: str | None = None
    """The guard that would stop the job (``kill_switch``, ``cooldown``, ``rate_budget``,
    ``circuit_breaker``, ``blast_radius``, ``maintenance_window``...), or ``none``."""


class Expect(_Strict):
    severity: Severity | None = None
    incident_key: str | None = None
    ack_due: AwareDatetime | None = None
    jobs: list[ExpectedJob] | None = None


class Case(_Strict):
    name: str = Field(min_length=1)
    alerts: list[InputAlert] | None = None
    notification: dict[str, Any] | None = None
    receiver: str = "remediator"
    state: State = Field(default_factory=State)
    expect: Expect

    @model_validator(mode="after")
    def _one_input(self) -> Case:
        if (self.alerts is None) == (self.notification is None):
            raise ValueError("give either alerts or notification")
        return self


class TestFile(_Strict):
    config: str | None = None
    now: AwareDatetime | None = None
    cases: list[Case] = Field(min_length=1)

    def moment(self) -> datetime:
        return (self.now or datetime.now(UTC)).astimezone(UTC)
