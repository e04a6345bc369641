"""How alerts group into incidents and how fast an incident must be acknowledged: the
``incidents`` and ``sla`` sections (deadlines, escalation levels, reminders)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from receiver.config.section import Section
from receiver.config.similar import SimilarConfig
from receiver.config.windows import BusinessHours
from receiver.durations import Duration
from receiver.intake.severity import Severity


class IncidentKeyConfig(Section):
    by: Literal["group_key", "labels"] = "group_key"
    labels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _labels_needed(self) -> IncidentKeyConfig:
        if self.by == "labels" and not self.labels:
            raise ValueError("incidents.key.by=labels needs a non-empty 'labels' list")
        return self


class IncidentsConfig(Section):
    key: IncidentKeyConfig = Field(default_factory=IncidentKeyConfig)
    flap_window: Duration = timedelta(minutes=15)
    similar: SimilarConfig = Field(default_factory=SimilarConfig)


class EscalationLevel(Section):
    name: str = Field(min_length=1, max_length=100)
    channels: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    """``oncall.roles`` whose holders this level calls (named in the event, invited to the
    incident's chat room)."""
    after: Duration = timedelta(minutes=15)


class SlaConfig(Section):
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
