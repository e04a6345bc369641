"""The intake transaction: inbox row, alert episodes, incident, timeline, jobs, all at once.

Every write is an upsert keyed by a unique constraint, so concurrent duplicates (HA peers,
retries racing the original, several receiver replicas) converge on the same rows without
an error. ``change_tx`` holds the id of the transaction that last changed a row, which
lets this transaction tell the rows *it* created or resolved from the ones it only saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from receiver.incidents.states import ACTIVE_STATES
from receiver.intake.severity import Severity
from receiver.store import events
from receiver.store import jobs as job_store
from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect
from receiver.store.records import AlertRecord, IngestBatch, IngestResult
from receiver.store.repository import Repository

_CHUNK = 400
T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- what is kept of over-long alert text --------------------------------------------------
# The webhook accepts any value Alertmanager can send (the body cap is its only limit);
# these bounds apply to what the tables keep. The inbox row keeps the raw body whole, so a
# replay sees every value in full, and identities (fingerprints, the incident key's hash)
# come from the full values.

STORED_VALUE_CHARS = 65536
"""A label or annotation value longer than this is kept cut, with a marker."""
STORED_NAME_CHARS = 1024
"""A label or annotation name longer than this is kept cut, with its length and a hash."""
STORED_TEXT_CHARS = 8192
"""The receiver, group key, alert and Alertmanager URLs kept in their own columns."""
KEY_BYTES = 1024
"""An incident key longer than this (UTF-8) is kept as its start and its SHA-256: the key
is indexed, and PostgreSQL's B-tree entries hold at most ~2.7 kB."""
CUT_MARK = "… [cut: {n} characters in all]"


def cut(value: str, limit: int = STORED_VALUE_CHARS) -> str:
    """``value``, or its first ``limit`` characters and a marker with its full length."""
    if len(value) <= limit:
        return value
    return value[:limit] + CUT_MARK.format(n=len(value))


def _cut_name(name: str) -> str:
    if len(name) <= STORED_NAME_CHARS:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cut(name, STORED_NAME_CHARS)} sha256:{digest}"  # distinct names stay distinct


def _cut_set(labels: dict[str, str]) -> dict[str, str]:
    if all(len(k) <= STORED_NAME_CHARS and len(v) <= STORED_VALUE_CHARS
           for k, v in labels.items()):
        return labels
    return {_cut_name(k): cut(v) for k, v in labels.items()}


def bounded_key(key: str) -> str:
    """The incident key as stored: itself, or its first bytes and the SHA-256 of all of it."""
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= KEY_BYTES:
        return key
    head = raw[: KEY_BYTES // 2].decode("utf-8", "ignore")
    return f"{head}… sha256:{hashlib.sha256(raw).hexdigest()}"


def for_storage(batch: IngestBatch) -> IngestBatch:
    """The batch with every over-long alert-derived string cut as the tables keep it."""
    alerts = [
        dataclasses.replace(
            a,
            alertname=cut(a.alertname, STORED_TEXT_CHARS),
            labels=_cut_set(a.labels),
            annotations=_cut_set(a.annotations),
            generator_url=cut(a.generator_url, STORED_TEXT_CHARS),
            severity_reason=cut(a.severity_reason, STORED_TEXT_CHARS),
        )
        for a in batch.alerts
    ]
    inc = batch.incident
    incident = dataclasses.replace(
        inc,
        key=bounded_key(inc.key),
        receiver=cut(inc.receiver, STORED_TEXT_CHARS),
        group_key=cut(inc.group_key, STORED_TEXT_CHARS),
        group_labels=_cut_set(inc.group_labels),
        severity_reason=cut(inc.severity_reason, STORED_TEXT_CHARS),
    )
    return dataclasses.replace(
        batch,
        receiver=cut(batch.receiver, STORED_TEXT_CHARS),
        group_key=cut(batch.group_key, STORED_TEXT_CHARS),
        external_url=cut(batch.external_url, STORED_TEXT_CHARS),
        alerts=alerts,
        incident=incident,
    )


def ingest(tx: Tx, batch: IngestBatch) -> IngestResult:
    batch = for_storage(batch)
    now = batch.received_at
    txid = uuid.uuid4().hex
    note = _record_notification(tx, batch)
    result = IngestResult(notification_id=note["id"], duplicate_delivery=note["deliveries"] > 1)

    # Intakes of one incident key take turns (a transaction-scoped advisory lock on the key,
    # always the first lock taken, so the row locks after it cannot deadlock); SQLite's
    # BEGIN IMMEDIATE already serialises writers. New episodes then join the group's
    # active incident as they are inserted, in one statement.
    tx.advisory_lock(batch.incident.key)
    found = tx.lock_row("incidents", "open_key = :key", {"key": batch.incident.key},
                        strength="no key update")
    active: int | None = found["id"] if found else None
    rows = _upsert_alerts(tx, batch.alerts, now, txid, attach_to=active)
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
        incident_id = _open_or_join(tx, batch, severities, now, txid, result)
        _attach(tx, incident_id, [r["id"] for r in unattached_firing])
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
        _raise_severity(tx, active, severity, batch.incident.severity_reason, batch, now)
        records = [by_identity[_identity(r)] for r in joined]
        _event(tx, active, now, "alerts_firing", "alertmanager",
               _alert_list_message("firing", records),
               {"alerts": [_alert_ref(a) for a in records]})
    else:
        attached = {r["incident_id"] for r in rows if r["incident_id"] is not None}
        incident_id = max(attached) if attached else None

    if incident_id is not None:
        result.incident_id = incident_id
        tx.execute(
            "UPDATE incidents SET last_seen_at = :now WHERE id = :id AND last_seen_at < :now",
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
        result.jobs_enqueued = _enqueue_jobs(tx, batch, incident_id, now)
        if result.jobs_enqueued:
            job_store.wake_workers(tx)
    return result


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


def _record_notification(tx: Tx, batch: IngestBatch) -> Row:
    row = tx.fetchone(
        """
        INSERT INTO notifications (digest, receiver, group_key, status, external_url,
                                   alert_count, body, first_received_at, last_received_at)
        VALUES (:digest, :receiver, :group_key, :status, :external_url,
                :alert_count, :body, :now, :now)
        ON CONFLICT (digest) DO UPDATE
           SET deliveries = notifications.deliveries + 1,
               last_received_at = excluded.last_received_at
        RETURNING id, deliveries
        """,
        {
            "digest": batch.digest,
            "receiver": batch.receiver,
            "group_key": batch.group_key,
            "status": batch.status,
            "external_url": batch.external_url,
            "alert_count": len(batch.alerts),
            "body": batch.body,
            "now": batch.received_at,
        },
    )
    assert row is not None  # noqa: S101 - INSERT ... RETURNING always yields a row
    return row


_ON_CONFLICT = """ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
                deliveries = alerts.deliveries + 1,
                incident_id = COALESCE(alerts.incident_id, excluded.incident_id),
                last_seen_at = excluded.last_seen_at,
                change_tx = CASE WHEN alerts.status = 'firing' AND excluded.status = 'resolved'
                                 THEN excluded.change_tx ELSE alerts.change_tx END,
                ends_at = CASE WHEN alerts.status = 'firing' AND excluded.status = 'resolved'
                               THEN excluded.ends_at ELSE alerts.ends_at END,
                resolved_at = CASE WHEN alerts.status = 'firing' AND excluded.status = 'resolved'
                                   THEN excluded.resolved_at ELSE alerts.resolved_at END,
                status = CASE WHEN alerts.status = 'resolved' THEN 'resolved'
                              ELSE excluded.status END
            RETURNING id, fingerprint, starts_at, status, incident_id, deliveries, change_tx"""


def _upsert_alerts_pg(
    tx: Tx, alerts: list[AlertRecord], now: datetime, txid: str, attach_to: int | None
) -> list[Row]:
    """The same upsert with one array per column (unnest): a fixed, small statement that
    PostgreSQL and psycopg prepare once, whatever the number of alerts."""
    params = {
        "fps": [a.fingerprint for a in alerts],
        "sas": [a.starts_at for a in alerts],
        "eas": [a.ends_at for a in alerts],
        "sts": [a.status for a in alerts],
        "ans": [a.alertname for a in alerts],
        "lbs": [tx.json(a.labels) for a in alerts],
        "anns": [tx.json(a.annotations) for a in alerts],
        "gus": [a.generator_url for a in alerts],
        "sevs": [a.severity.value for a in alerts],
        "ras": [now if a.status == "resolved" else None for a in alerts],
        "now": now, "tx": txid, "inc": attach_to,
    }
    return tx.fetchall(
        f"""
        INSERT INTO alerts (fingerprint, starts_at, ends_at, status, alertname, labels,
                            annotations, generator_url, severity, first_seen_at,
                            last_seen_at, resolved_at, change_tx, incident_id)
        SELECT fp, sa, ea, st, an, lb, ann, gu, sev, :now, :now, ra, :tx,
               CAST(:inc AS bigint)
          FROM unnest(CAST(:fps AS text[]), CAST(:sas AS timestamptz[]),
                      CAST(:eas AS timestamptz[]), CAST(:sts AS text[]),
                      CAST(:ans AS text[]), CAST(:lbs AS jsonb[]), CAST(:anns AS jsonb[]),
                      CAST(:gus AS text[]), CAST(:sevs AS text[]),
                      CAST(:ras AS timestamptz[]))
               AS t(fp, sa, ea, st, an, lb, ann, gu, sev, ra)
        ORDER BY fp, sa
        {_ON_CONFLICT}
        """,  # noqa: S608 - a constant clause, no values
        params,
    )


def _upsert_alerts(
    tx: Tx, alerts: list[AlertRecord], now: datetime, txid: str, attach_to: int | None
) -> list[Row]:
    """Upsert episodes by (fingerprint, starts_at). A resolved episode never goes back to
    firing: a late firing copy only moves last_seen_at. New episodes join ``attach_to``
    (the group's active incident); an episode keeps the incident it already has."""
    return _UPSERT_ALERTS.of(tx)(tx, alerts, now, txid, attach_to)


def _upsert_alerts_sqlite(
    tx: Tx, alerts: list[AlertRecord], now: datetime, txid: str, attach_to: int | None
) -> list[Row]:
    """The upsert in chunks of multi-row VALUES (SQLite has no arrays to unnest)."""
    out: list[Row] = []
    for chunk in _chunks(alerts, _CHUNK):
        values, params = [], {"now": now, "tx": txid, "inc": attach_to}
        for i, a in enumerate(chunk):
            values.append(
                f"(:fp{i}, :sa{i}, :ea{i}, :st{i}, :an{i}, :lb{i}, :ann{i}, :gu{i}, :sev{i},"
                f" :now, :now, :ra{i}, :tx, :inc)"
            )
            params.update(
                {
                    f"fp{i}": a.fingerprint,
                    f"sa{i}": a.starts_at,
                    f"ea{i}": a.ends_at,
                    f"st{i}": a.status,
                    f"an{i}": a.alertname,
                    f"lb{i}": tx.json(a.labels),
                    f"ann{i}": tx.json(a.annotations),
                    f"gu{i}": a.generator_url,
                    f"sev{i}": a.severity.value,
                    f"ra{i}": now if a.status == "resolved" else None,
                }
            )
        sql = f"""
            INSERT INTO alerts (fingerprint, starts_at, ends_at, status, alertname, labels,
                                annotations, generator_url, severity, first_seen_at,
                                last_seen_at, resolved_at, change_tx, incident_id)
            VALUES {", ".join(values)}
            {_ON_CONFLICT}
            """  # noqa: S608 - only placeholders are interpolated
        out.extend(tx.fetchall(sql, params))
    return out


_UPSERT_ALERTS = PerDialect(postgres=_upsert_alerts_pg, sqlite=_upsert_alerts_sqlite)


def _open_or_join(
    tx: Tx,
    batch: IngestBatch,
    severities: list[Severity],
    now: datetime,
    txid: str,
    result: IngestResult,
) -> int:
    """Return the active incident for the key, reopening a recent one or opening a new one."""
    draft = batch.incident
    severity = min([draft.severity, *severities], key=lambda s: s.rank)
    active = tx.fetchone(
        "SELECT id, severity, opened_at, acknowledged_at, ack_due_at FROM incidents"
        " WHERE open_key = :key",
        {"key": draft.key},
    )
    if active is None:
        recent = tx.fetchone(
            "SELECT id FROM incidents WHERE key = :key AND state = 'resolved'"
            " AND resolved_at >= :since ORDER BY resolved_at DESC LIMIT 1",
            {"key": draft.key, "since": now - batch.flap_window},
        )
        if recent is not None:
            reopened = tx.fetchone(
                "UPDATE incidents SET state = 'open', open_key = key, resolved_at = NULL,"
                " reopened_count = reopened_count + 1, last_seen_at = :now, updated_at = :now,"
                " change_tx = :tx WHERE id = :id AND state = 'resolved' RETURNING id",
                {"id": recent["id"], "now": now, "tx": txid},
            )
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
            VALUES (:key, :key, 'open', :severity, :reason, :title, :receiver, :group_key,
                    :group_labels, :now, :due, :now, :now, :tx)
            ON CONFLICT (open_key) DO UPDATE SET last_seen_at = excluded.last_seen_at
            RETURNING id, change_tx, severity, opened_at, acknowledged_at, ack_due_at
            """,
            {
                "key": draft.key,
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
    tx: Tx, incident_id: int, severity: Severity, reason: str, batch: IngestBatch, now: datetime
) -> None:
    """Raise (never lower) an incident's severity; tighten its acknowledge-by deadline."""
    row = tx.fetchone(
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


def _attach(tx: Tx, incident_id: int, alert_ids: Iterable[int]) -> None:
    ids = list(alert_ids)
    for chunk in _chunks(ids, _CHUNK):
        marks = ", ".join(f":a{i}" for i in range(len(chunk)))
        params: dict[str, Any] = {f"a{i}": v for i, v in enumerate(chunk)}
        params["inc"] = incident_id
        tx.execute(
            f"UPDATE alerts SET incident_id = :inc WHERE incident_id IS NULL AND id IN ({marks})",  # noqa: S608 - placeholders only
            params,
        )


def _resolve_if_quiet(tx: Tx, incident_id: int, now: datetime, txid: str) -> bool:
    states = ", ".join(f"'{s}'" for s in ACTIVE_STATES)
    row = tx.fetchone(
        f"""
        UPDATE incidents SET state = 'resolved', open_key = NULL, resolved_at = :now,
               updated_at = :now, change_tx = :tx
         WHERE id = :id AND state IN ({states})
           AND NOT EXISTS (SELECT 1 FROM alerts
                            WHERE alerts.incident_id = :id AND alerts.status = 'firing')
        RETURNING id
        """,  # noqa: S608 - constant state names only
        {"id": incident_id, "now": now, "tx": txid},
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


def _enqueue_jobs(tx: Tx, batch: IngestBatch, incident_id: int, now: datetime) -> int:
    """Insert the jobs the rules selected; (rule, dedupe_key) is unique in the schema."""
    count = 0
    for job in batch.jobs:
        if job.fingerprint is not None and job.starts_at is not None:
            dedupe = f"alert:{job.fingerprint}:{job.starts_at.isoformat()}"
            alert = tx.fetchone(
                "SELECT id, status FROM alerts WHERE fingerprint = :fp AND starts_at = :sa",
                {"fp": job.fingerprint, "sa": job.starts_at},
            )
            if alert is None or alert["status"] != "firing":
                continue
            alert_id = alert["id"]
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
