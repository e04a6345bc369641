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


def _upsert_pg(
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


def upsert(
    tx: Tx, alerts: list[AlertRecord], now: datetime, txid: str, attach_to: int | None
) -> list[Row]:
    """Upsert episodes by (fingerprint, starts_at). A resolved episode never goes back to
    firing: a late firing copy only moves last_seen_at. New episodes join ``attach_to``
    (the group's active incident); an episode keeps the incident it already has."""
    return _UPSERT.of(tx)(tx, alerts, now, txid, attach_to)


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


_UPSERT = PerDialect(postgres=_upsert_pg, sqlite=_upsert_sqlite)


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
