"""The records of remediation jobs (:mod:`receiver.store.jobs` reads and moves them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.locks import Holder

JOB_COLUMNS = (
    "id, incident_id, alert_id, rule, playbook, dedupe_key, params, state, severity, attempts,"
    " max_attempts, lease_owner, lease_expires_at, not_before, started_at, finished_at,"
    " approved_at, idempotent, risk, targets, plan, result, reason, parent_job_id, chain_depth,"
    " created_at, updated_at, undoes_job_id"
)

@dataclass(frozen=True)
class Job:
    """One job, every column of :data:`JOB_COLUMNS` (JSON columns decoded)."""

    id: int
    incident_id: int
    alert_id: int | None
    rule: str
    playbook: str
    dedupe_key: str
    params: dict[str, Any]
    state: str
    severity: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    approved_at: datetime | None
    idempotent: int
    risk: str | None
    targets: list[str] | None
    plan: dict[str, Any] | None
    result: dict[str, Any] | None
    reason: str | None
    parent_job_id: int | None
    chain_depth: int
    created_at: datetime
    updated_at: datetime
    undoes_job_id: int | None = None
    """The job whose action this one takes back (it runs the playbook's ``undo``), or None
    (see :mod:`receiver.remediation.undo`)."""


@dataclass(frozen=True)
class ExpiredLease:
    """A running job whose worker stopped renewing its lease (a candidate, not locked)."""

    id: int
    incident_id: int


@dataclass(frozen=True)
class TargetWait:
    """A job put back to wait for a target (:meth:`JobRepository.wait_for_target`)."""

    job: Job | None
    """The job, queued; None when the lease was lost meanwhile (nothing was moved)."""
    holder: Holder | None
    """Who keeps the target from it, if anyone still does."""
    new: bool
    """Whether the job was not already waiting for this target (said once on the timeline)."""
