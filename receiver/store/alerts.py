"""Alert episodes: the upsert by identity ``(fingerprint, startsAt)`` and attaching
episodes to their incident.

The upsert is one of the few statements written per backend (a :class:`PerDialect`): one
array per column on PostgreSQL, chunks of multi-row VALUES on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect
from receiver.store.records import AlertRecord

_CHUNK = 400
T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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


_ACTIVE_COLUMNS = "id, severity, opened_at, ack_due_at"


def _lock_active_and_upsert_pg(
    tx: Tx, key: str, alerts: list[AlertRecord], now: datetime, txid: str
) -> tuple[Row | None, list[Row]]:
    """One statement: lock the key's active incident (``FOR NO KEY UPDATE``), upsert the
    episodes attached to it, and move its ``last_seen_at`` when one of them belongs to it.
    The episodes go as one JSON document (``jsonb_to_recordset``): a fixed statement that
    PostgreSQL and psycopg prepare once, whatever the number of alerts."""
    episodes = [
        {"fp": a.fingerprint, "sa": a.starts_at.isoformat(),
         "ea": a.ends_at.isoformat() if a.ends_at is not None else None,
         "st": a.status, "an": a.alertname, "lb": a.labels, "ann": a.annotations,
         "gu": a.generator_url, "sev": a.severity.value}
        for a in alerts
    ]
    rows = tx.fetchall(
        f"""
        WITH active AS (
            SELECT {_ACTIVE_COLUMNS} FROM incidents WHERE open_key = :key
               FOR NO KEY UPDATE
        ), up AS (
            INSERT INTO alerts (fingerprint, starts_at, ends_at, status, alertname, labels,
                                annotations, generator_url, severity, first_seen_at,
                                last_seen_at, resolved_at, change_tx, incident_id)
            SELECT fp, sa, ea, st, an, lb, ann, gu, sev, :now, :now,
                   CASE WHEN st = 'resolved' THEN CAST(:now AS timestamptz) END, :tx,
                   (SELECT id FROM active)
              FROM jsonb_to_recordset(:episodes)
                   AS t(fp text, sa timestamptz, ea timestamptz, st text, an text,
                        lb jsonb, ann jsonb, gu text, sev text)
            ORDER BY fp, sa
            {_ON_CONFLICT}
        ), seen AS (
            UPDATE incidents SET last_seen_at = :now
             WHERE id = (SELECT id FROM active) AND last_seen_at < :now
               AND EXISTS (SELECT 1 FROM up WHERE up.incident_id = incidents.id)
        )
        SELECT up.*, active.id AS active_id, active.severity AS active_severity,
               active.opened_at AS active_opened_at, active.ack_due_at AS active_ack_due_at
          FROM up LEFT JOIN active ON true
        """,  # noqa: S608 - constant clauses, no values
        {"key": key, "episodes": tx.json(episodes), "now": now, "tx": txid},
    )
    if not rows:  # a notification without alerts: nothing upserted, the lock still taken
        return tx.lock_row("incidents", "open_key = :key", {"key": key},
                           columns=_ACTIVE_COLUMNS, strength="no key update"), []
    first = rows[0]
    active = None if first["active_id"] is None else {
        "id": first["active_id"], "severity": first["active_severity"],
        "opened_at": first["active_opened_at"], "ack_due_at": first["active_ack_due_at"]}
    return active, rows


def _lock_active_and_upsert_sqlite(
    tx: Tx, key: str, alerts: list[AlertRecord], now: datetime, txid: str
) -> tuple[Row | None, list[Row]]:
    """The same as three statements (a write transaction already excludes other writers)."""
    active = tx.lock_row("incidents", "open_key = :key", {"key": key},
                         columns=_ACTIVE_COLUMNS, strength="no key update")
    rows = _upsert_sqlite(tx, alerts, now, txid, active["id"] if active else None)
    if active is not None and any(r["incident_id"] == active["id"] for r in rows):
        tx.execute(
            "UPDATE incidents SET last_seen_at = :now WHERE id = :id AND last_seen_at < :now",
            {"id": active["id"], "now": now},
        )
    return active, rows


def lock_active_and_upsert(
    tx: Tx, key: str, alerts: list[AlertRecord], now: datetime, txid: str
) -> tuple[Row | None, list[Row]]:
    """Lock the active incident of ``key`` (None when there is none) and upsert the
    episodes by (fingerprint, starts_at). A resolved episode never goes back to firing: a
    late firing copy only moves last_seen_at. New episodes join the active incident; an
    episode keeps the incident it already has. When an episode belongs to the active
    incident, the incident's ``last_seen_at`` moves to ``now``. Returns the active
    incident (id, severity, opened_at, ack_due_at) and the upserted rows."""
    return _LOCK_AND_UPSERT.of(tx)(tx, key, alerts, now, txid)


def _upsert_sqlite(
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


_LOCK_AND_UPSERT = PerDialect(postgres=_lock_active_and_upsert_pg,
                              sqlite=_lock_active_and_upsert_sqlite)


def attach(tx: Tx, incident_id: int, alert_ids: Iterable[int]) -> None:
    ids = list(alert_ids)
    for chunk in _chunks(ids, _CHUNK):
        marks = ", ".join(f":a{i}" for i in range(len(chunk)))
        params: dict[str, Any] = {f"a{i}": v for i, v in enumerate(chunk)}
        params["inc"] = incident_id
        tx.execute(
            f"UPDATE alerts SET incident_id = :inc WHERE incident_id IS NULL AND id IN ({marks})",  # noqa: S608 - placeholders only
            params,
        )


def firing_episode(tx: Tx, fingerprint: str, starts_at: datetime) -> int | None:
    """The id of the episode ``(fingerprint, starts_at)`` while it is firing, else None."""
    row = tx.fetchone(
        "SELECT id, status FROM alerts WHERE fingerprint = :fp AND starts_at = :sa",
        {"fp": fingerprint, "sa": starts_at},
    )
    if row is None or row["status"] != "firing":
        return None
    return int(row["id"])
