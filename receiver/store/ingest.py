"""The intake transaction: inbox row, alert episodes, incident, timeline, jobs, all at once.

Every write is an upsert keyed by a unique constraint, so concurrent duplicates (HA peers,
retries racing the original, several receiver replicas) converge on the same rows without
an error. ``change_tx`` holds the id of the transaction that last changed a row, which
lets this transaction tell the rows *it* created or resolved from the ones it only saw.
Incident state changes here (reopen, resolve) go through the transition table like every
other one (:func:`receiver.store.incidents.allowed_sources`). Alert episodes are written by
:mod:`receiver.store.alerts`; what is kept of over-long text is :mod:`receiver.store.stored_text`.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.incidents.states import ACTIVE_STATES, IncidentState
from receiver.intake.severity import Severity
from receiver.store import alerts as alert_store
from receiver.store import events, inbox
from receiver.store import jobs as job_store
from receiver.store.db import Row, Tx
from receiver.store.incidents import INITIAL, allowed_sources, state_in
from receiver.store.records import AlertRecord, IngestBatch, IngestResult
from receiver.store.repository import Repository
from receiver.store.stored_text import (
    CUT_MARK,
    KEY_BYTES,
    STORED_NAME_CHARS,
    STORED_TEXT_CHARS,
    STORED_VALUE_CHARS,
    bounded_key,
    cut,
    for_storage,
)

__all__ = ["ACTIVE_STATES", "CUT_MARK", "KEY_BYTES", "STORED_NAME_CHARS", "STORED_TEXT_CHARS",
           "STORED_VALUE_CHARS", "NotificationRepository", "bounded_key", "cut", "for_storage",
           "ingest"]


@dataclass
class _Tally:
    """:class:`IngestResult` while the transaction builds it."""

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
    events: list[str] = field(default_factory=list)

    def result(self) -> IngestResult:
        return IngestResult(**{**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(self)},
                               "events": tuple(self.events)})


def ingest(tx: Tx, batch: IngestBatch) -> IngestResult:
    batch = for_storage(batch)
    now = batch.received_at
    txid = uuid.uuid4().hex
    # Intakes of one incident key take turns (a transaction-scoped advisory lock on the key,
    # taken with the notification's row, before any row lock, so the row locks after it
    # cannot deadlock); SQLite's BEGIN IMMEDIATE already serialises writers. New episodes
    # then join the group's active incident as they are inserted, in one statement.
    note = inbox.record(tx, batch)
    result = _Tally(notification_id=note["id"], duplicate_delivery=note["deliveries"] > 1)
    found, rows = alert_store.lock_active_and_upsert(tx, batch.incident.key, batch.alerts,
                                                     now, txid)
    active: int | None = found["id"] if found else None
    # incidents whose last_seen_at is already ``now``: the active one when an episode of
    # this notification belongs to it (moved by the upsert), one opened or reopened here
    seen = {active} if any(r["incident_id"] == active for r in rows) else set()
    by_identity = {(a.fingerprint, a.starts_at): a for a in batch.alerts}
    created = [r for r in rows if r["deliveries"] == 1 and r["change_tx"] == txid]
    joined = [r for r in created
              if active is not None and r["status"] == "firing" and r["incident_id"] == active]
    newly_resolved = [
        r for r in rows if r["status"] == "resolved" and r["change_tx"] == txid
    ]
    unattached_firing = [r for r in rows if r["incident_id"] is None and r["status"] == "firing"]
    result.new_alerts = sum(1 for r in created if r["status"] == "firing")
    result.resolved_alerts = len(newly_resolved)

    incident_id: int | None = None
    if unattached_firing:
        severities = [by_identity[_identity(r)].severity for r in unattached_firing]
        incident_id = _open_or_join(tx, batch, severities, now, txid, result,
                                    known_none=found is None)
        if result.incident_opened or result.incident_reopened:
            seen.add(incident_id)
        alert_store.attach(tx, incident_id, [r["id"] for r in unattached_firing])
        _event(
            tx,
            incident_id,
            now,
            "alerts_firing",
            "alertmanager",
            _alert_list_message("firing", [by_identity[_identity(r)] for r in unattached_firing]),
            {"alerts": [_alert_ref(by_identity[_identity(r)]) for r in unattached_firing]},
        )
    elif joined:
        assert active is not None  # noqa: S101 - joined is empty without an active incident
        incident_id = active
        severities = [by_identity[_identity(r)].severity for r in joined]
        severity = min([batch.incident.severity, *severities], key=lambda sv: sv.rank)
        _raise_severity(tx, active, severity, batch.incident.severity_reason, batch, now,
                        current=found)
        records = [by_identity[_identity(r)] for r in joined]
        _event(tx, active, now, "alerts_firing", "alertmanager",
               _alert_list_message("firing", records),
               {"alerts": [_alert_ref(a) for a in records]})
    else:
        attached = {r["incident_id"] for r in rows if r["incident_id"] is not None}
        incident_id = max(attached) if attached else None

    if incident_id is not None:
        result.incident_id = incident_id
        if incident_id not in seen:
            tx.execute(
                "UPDATE incidents SET last_seen_at = :now"
                " WHERE id = :id AND last_seen_at < :now",
                {"id": incident_id, "now": now},
            )
        if newly_resolved:
            resolved_records = [by_identity[_identity(r)] for r in newly_resolved]
            for inc in sorted({r["incident_id"] or incident_id for r in newly_resolved}):
                _event(
                    tx,
                    inc,
                    now,
                    "alerts_resolved",
                    "alertmanager",
                    _alert_list_message("resolved", resolved_records),
                    {"alerts": [_alert_ref(a) for a in resolved_records]},
                )
                if _resolve_if_quiet(tx, inc, now, txid):
                    result.incident_resolved = True
                    result.events.append("resolved")

    if batch.jobs and incident_id is not None:
        episodes = {_identity(r): r for r in rows}
        result.jobs_enqueued = _enqueue_jobs(tx, batch, incident_id, now, episodes)
        if result.jobs_enqueued:
            job_store.wake_workers(tx)
    return result.result()


def _identity(row: Row) -> tuple[str, datetime]:
    return (row["fingerprint"], row["starts_at"])


def _alert_ref(a: AlertRecord) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "alertname": a.alertname,
        "starts_at": a.starts_at.isoformat(),
        "severity": a.severity.value,
    }


def _alert_list_message(status: str, alerts: list[AlertRecord]) -> str:
    names = sorted({a.alertname or a.fingerprint for a in alerts})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(alerts)} alert(s) {status}: {shown}"


def _open_or_join(
    tx: Tx,
    batch: IngestBatch,
    severities: list[Severity],
    now: datetime,
    txid: str,
    result: _Tally,
    *,
    known_none: bool = False,
) -> int:
    """Return the active incident for the key, reopening a recent one or opening a new one.
    ``known_none``: this transaction has already found no active incident, under the key's
    lock (an incident opened meanwhile without that lock still meets the insert's
    ``ON CONFLICT (open_key)``)."""
    draft = batch.incident
    severity = min([draft.severity, *severities], key=lambda s: s.rank)
    active = None if known_none else tx.fetchone(
        "SELECT id, severity, opened_at, acknowledged_at, ack_due_at FROM incidents"
        " WHERE open_key = :key",
        {"key": draft.key},
    )
    if active is None:
        # A resolved incident of the key, within the flap window, is reopened (the table's
        # resolved -> open; InvalidTransition if the table no longer allows it).
        reopen_from = state_in(allowed_sources(IncidentState.OPEN, (IncidentState.RESOLVED,)))
        recent = tx.fetchone(
            f"SELECT id FROM incidents WHERE key = :key AND {reopen_from}"  # noqa: S608 - constant states
            " AND resolved_at >= :since ORDER BY resolved_at DESC LIMIT 1",
            {"key": draft.key, "since": now - batch.flap_window},
        )
        if recent is not None:
            reopen = ("UPDATE incidents SET state = :to, open_key = key, resolved_at = NULL,"  # noqa: S608 - constant states
                      " reopened_count = reopened_count + 1, last_seen_at = :now,"
                      " updated_at = :now, change_tx = :tx"
                      f" WHERE id = :id AND {reopen_from} RETURNING id")
            reopened = tx.fetchone(reopen, {"id": recent["id"], "now": now, "tx": txid,
                                            "to": IncidentState.OPEN.value})
            if reopened is not None:
                result.incident_reopened = True
                result.incident_severity = severity.value
                result.events.append("reopened")
                _event(tx, reopened["id"], now, "reopened", "alertmanager",
                       "incident reopened: alerts firing again within the flap window", {})
                _raise_severity(tx, reopened["id"], severity, draft.severity_reason, batch, now)
                return int(reopened["id"])
        row = tx.fetchone(
            """
            INSERT INTO incidents (key, open_key, state, severity, severity_reason, title,
                                   receiver, group_key, group_labels, opened_at, ack_due_at,
                                   last_seen_at, updated_at, change_tx)
            VALUES (:key, :key, :state, :severity, :reason, :title, :receiver, :group_key,
                    :group_labels, :now, :due, :now, :now, :tx)
            ON CONFLICT (open_key) DO UPDATE SET last_seen_at = excluded.last_seen_at
            RETURNING id, change_tx, severity, opened_at, acknowledged_at, ack_due_at
            """,
            {
                "key": draft.key,
                "state": INITIAL.value,
                "severity": severity.value,
                "reason": draft.severity_reason,
                "title": draft.title,
                "receiver": draft.receiver,
                "group_key": draft.group_key,
                "group_labels": tx.json(draft.group_labels),
                "now": now,
                "due": batch.ack_due(severity, now),
                "tx": txid,
            },
        )
        assert row is not None  # noqa: S101 - upsert with RETURNING always yields a row
        if row["change_tx"] == txid:
            result.incident_opened = True
            result.incident_severity = severity.value
            result.events.append("opened")
            _event(tx, row["id"], now, "opened", "alertmanager",
                   f"incident opened as {severity.value}: {draft.title}",
                   {"severity": severity.value, "reason": draft.severity_reason,
                    "ack_due_at": batch.ack_due(severity, now).isoformat()})
            return int(row["id"])
        active = row
    _raise_severity(tx, active["id"], severity, draft.severity_reason, batch, now)
    return int(active["id"])


def _raise_severity(
    tx: Tx, incident_id: int, severity: Severity, reason: str, batch: IngestBatch, now: datetime,
    *, current: Row | None = None,
) -> None:
    """Raise (never lower) an incident's severity; tighten its acknowledge-by deadline.
    ``current``: the incident's severity, opened_at and ack_due_at as this transaction
    read them under its row lock (no need to read them again)."""
    row = current if current is not None else tx.fetchone(
        "SELECT severity, opened_at, acknowledged_at, ack_due_at FROM incidents WHERE id = :id",
        {"id": incident_id},
    )
    if row is None or Severity(row["severity"]).rank <= severity.rank:
        return
    due = min(row["ack_due_at"], batch.ack_due(severity, row["opened_at"]))
    changed = tx.fetchone(
        "UPDATE incidents SET severity = :sev, severity_reason = :reason, ack_due_at = :due,"
        " updated_at = :now WHERE id = :id AND severity = :old RETURNING id",
        {"sev": severity.value, "reason": reason, "due": due, "now": now, "id": incident_id,
         "old": row["severity"]},
    )
    if changed is not None:
        _event(tx, incident_id, now, "severity_changed", "alertmanager",
               f"severity raised {row['severity']} -> {severity.value}",
               {"from": row["severity"], "to": severity.value, "reason": reason})


def _resolve_if_quiet(tx: Tx, incident_id: int, now: datetime, txid: str) -> bool:
    """Resolve the incident when none of its alerts fires any more: from every state the
    table allows ``resolved`` from (the active ones)."""
    row = tx.fetchone(
        f"""
        UPDATE incidents SET state = :to, open_key = NULL, resolved_at = :now,
               updated_at = :now, change_tx = :tx
         WHERE id = :id AND {state_in(allowed_sources(IncidentState.RESOLVED))}
           AND NOT EXISTS (SELECT 1 FROM alerts
                            WHERE alerts.incident_id = :id AND alerts.status = 'firing')
        RETURNING id
        """,  # noqa: S608 - constant state names only
        {"id": incident_id, "now": now, "tx": txid, "to": IncidentState.RESOLVED.value},
    )
    if row is None:
        return False
    _event(tx, incident_id, now, "resolved", "alertmanager",
           "incident resolved: every alert has resolved", {})
    return True


def _event(
    tx: Tx,
    incident_id: int,
    at: datetime,
    kind: str,
    actor: str,
    message: str,
    detail: dict[str, Any],
    job_id: int | None = None,
) -> None:
    events.record(tx, incident_id=incident_id, at=at, kind=kind, actor=actor, message=message,
                  detail=detail, job_id=job_id)


def _enqueue_jobs(tx: Tx, batch: IngestBatch, incident_id: int, now: datetime,
                  episodes: dict[tuple[str, datetime], Row]) -> int:
    """Insert the jobs the rules selected; (rule, dedupe_key) is unique in the schema.
    ``episodes``: the rows this transaction upserted (and holds locked), by identity."""
    count = 0
    for job in batch.jobs:
        if job.fingerprint is not None and job.starts_at is not None:
            dedupe = f"alert:{job.fingerprint}:{job.starts_at.isoformat()}"
            row = episodes.get((job.fingerprint, job.starts_at))
            if row is None:
                alert_id = alert_store.firing_episode(tx, job.fingerprint, job.starts_at)
            else:
                alert_id = int(row["id"]) if row["status"] == "firing" else None
            if alert_id is None:
                continue
        else:
            dedupe, alert_id = f"incident:{incident_id}", None
        row = job_store.insert(tx, incident_id=incident_id, alert_id=alert_id, rule=job.rule,
                               playbook=job.playbook, dedupe_key=dedupe, params=job.params,
                               severity=batch.incident.severity.value, now=now)
        if row is not None:
            count += 1
            _event(tx, incident_id, now, "job_enqueued", "system",
                   f"job #{row['id']} queued: rule {job.rule} -> {job.playbook}",
                   {"rule": job.rule, "playbook": job.playbook}, job_id=row["id"])
    return count


class NotificationRepository(Repository):
    """Intake: one notification's alerts, incident and jobs written in one transaction."""

    def ingest(self, batch: IngestBatch) -> IngestResult:
        """Store the notification, its alerts, incident, timeline and jobs (see
        :func:`ingest`); the unit of work is the one intake transaction."""
        return ingest(self.tx, batch)
