"""Plain records passed between the engine and the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from receiver.intake.severity import Severity


@dataclass(frozen=True)
class AlertRecord:
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    status: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    severity: Severity
    severity_reason: str


@dataclass(frozen=True)
class IncidentDraft:
    key: str
    title: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    severity: Severity
    severity_reason: str


@dataclass(frozen=True)
class JobDraft:
    """A remediation job selected by a rule; ``fingerprint``/``starts_at`` name the episode
    for alert-scoped rules, and are None for incident-scoped ones."""

    rule: str
    playbook: str
    params: dict[str, Any]
    fingerprint: str | None
    starts_at: datetime | None


@dataclass(frozen=True)
class IngestBatch:
    digest: str
    receiver: str
    group_key: str
    status: str
    external_url: str
    body: str
    alerts: list[AlertRecord]
    incident: IncidentDraft
    received_at: datetime
    flap_window: timedelta
    ack_due: Callable[[Severity, datetime], datetime]
    jobs: list[JobDraft] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    """What one intake transaction did."""

    notification_id: int
    duplicate_delivery: bool
    incident_id: int | None = None
    incident_severity: str | None = None
    incident_opened: bool = False
    incident_reopened: bool = False
    incident_resolved: bool = False
    new_alerts: int = 0
    resolved_alerts: int = 0
    jobs_enqueued: int = 0
    events: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "duplicate": self.duplicate_delivery,
            "incident_id": self.incident_id,
            "severity": self.incident_severity,
            "opened": self.incident_opened,
            "reopened": self.incident_reopened,
            "resolved": self.incident_resolved,
            "new_alerts": self.new_alerts,
            "resolved_alerts": self.resolved_alerts,
            "jobs_enqueued": self.jobs_enqueued,
        }


@dataclass(frozen=True)
class IncidentFilter:
    state: list[str] | None = None
    severity: list[str] | None = None
    since: datetime | None = None
    limit: int = 50
    before_id: int | None = None
