"""Timeline events, each written with its audit entry in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.store import audit
from receiver.store.db import Tx

# Timeline kinds that are state changes or decisions, and so also go to the audit log.
AUDITED = frozenset(
    {
        "opened", "reopened", "resolved", "severity_changed", "state_changed",
        "job_enqueued", "job_claimed", "job_blocked", "job_refused", "job_awaiting_approval",
        "job_approved", "job_denied", "job_expired", "job_started", "job_succeeded",
        "job_failed", "job_dry_run", "job_interrupted", "job_requeued", "job_escalated",
        "job_retry_scheduled", "verification_passed", "verification_failed",
        "circuit_opened", "escalated", "job_waiting", "acknowledged", "assigned", "note",
        "sla_breached",
        "reminder", "diagnostics_requested", "postmortem_saved",
    }
)


# Kinds worth telling people about: each also lands in the notifications outbox, in the
# same transaction; the worker expands it to the configured channels and sends it.
NOTIFY = frozenset(
    {
        "opened", "reopened", "resolved", "severity_changed", "job_awaiting_approval",
        "job_started", "job_succeeded", "job_failed", "verification_failed", "escalated",
        "sla_breached", "reminder",
    }
)
# Kinds that start automatic diagnostics for the incident.
DIAGNOSE = frozenset({"opened", "reopened"})


def record(
    tx: Tx,
    *,
    incident_id: int,
    at: datetime,
    kind: str,
    actor: str,
    message: str,
    detail: dict[str, Any] | None = None,
    job_id: int | None = None,
    origin: dict[str, Any] | None = None,
) -> None:
    # The one place timeline text is written: configured secrets never reach it, nor the
    # outbox and audit entry made from it.
    message = tx.redactor.text(message)
    detail = tx.redactor(detail or {})
    tx.execute(
        "INSERT INTO incident_events (incident_id, at, kind, actor, message, detail, job_id)"
        " VALUES (:inc, :at, :kind, :actor, :msg, :detail, :job)",
        {"inc": incident_id, "at": at, "kind": kind, "actor": actor, "msg": message,
         "detail": tx.json(detail), "job": job_id},
    )
    if kind in NOTIFY:
        tx.execute(
            "INSERT INTO outbox (kind, incident_id, job_id, message, detail, created_at)"
            " VALUES (:kind, :inc, :job, :msg, :detail, :at)",
            {"kind": kind, "inc": incident_id, "job": job_id, "msg": message,
             "detail": tx.json(detail), "at": at},
        )
    if kind in DIAGNOSE:
        tx.execute(
            "INSERT INTO diagnostic_requests (incident_id, reason, requested_by, state,"
            " requested_at) VALUES (:inc, :reason, :actor, 'pending', :at)",
            {"inc": incident_id, "reason": f"incident {kind}", "actor": actor, "at": at},
        )
    if kind in AUDITED:
        subject = f"job:{job_id}" if job_id is not None else f"incident:{incident_id}"
        audit.append(
            tx,
            at=at,
            actor=actor,
            action=f"{'job' if job_id is not None else 'incident'}.{kind.removeprefix('job_')}",
            subject=subject,
            incident_id=incident_id,
            details={"message": message, **detail},
            origin=origin,
        )
