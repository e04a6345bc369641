"""Read queries for incidents, their alerts and their timeline."""

from __future__ import annotations

from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.records import IncidentFilter

INCIDENT_COLUMNS = (
    "id, key, state, severity, severity_reason, title, receiver, group_key, group_labels,"
    " opened_at, ack_due_at, acknowledged_at, mitigated_at, resolved_at, closed_at,"
    " last_seen_at, updated_at, reopened_count"
)


def list_incidents(tx: Tx, f: IncidentFilter) -> list[Row]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.state:
        marks = ", ".join(f":st{i}" for i in range(len(f.state)))
        where.append(f"state IN ({marks})")
        params.update({f"st{i}": s for i, s in enumerate(f.state)})
    if f.severity:
        marks = ", ".join(f":sv{i}" for i in range(len(f.severity)))
        where.append(f"severity IN ({marks})")
        params.update({f"sv{i}": s for i, s in enumerate(f.severity)})
    if f.since is not None:
        where.append("opened_at >= :since")
        params["since"] = f.since
    if f.before_id is not None:
        where.append("id < :before")
        params["before"] = f.before_id
    params["limit"] = f.limit
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {INCIDENT_COLUMNS} FROM incidents {clause} ORDER BY id DESC LIMIT :limit"  # noqa: S608 - fixed fragments and placeholders only
    rows = tx.fetchall(sql, params)
    counts = _alert_counts(tx, [r["id"] for r in rows])
    for r in rows:
        r["alerts_firing"], r["alerts_total"] = counts.get(r["id"], (0, 0))
    return rows


def _alert_counts(tx: Tx, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    firing = "SUM(CASE WHEN status = 'firing' THEN 1 ELSE 0 END) AS firing"
    sql = f"SELECT incident_id, {firing}, COUNT(*) AS total FROM alerts WHERE incident_id IN ({marks}) GROUP BY incident_id"  # noqa: S608, E501 - placeholders only
    rows = tx.fetchall(
        sql,
        {f"i{n}": v for n, v in enumerate(ids)},
    )
    return {r["incident_id"]: (int(r["firing"]), int(r["total"])) for r in rows}


def get_incident(tx: Tx, incident_id: int) -> dict[str, Any] | None:
    row = tx.fetchone(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = :id",  # noqa: S608 - constant columns
        {"id": incident_id},
    )
    if row is None:
        return None
    row["alerts"] = tx.fetchall(
        "SELECT id, fingerprint, status, alertname, severity, labels, annotations,"
        " generator_url, starts_at, ends_at, first_seen_at, last_seen_at, resolved_at,"
        " deliveries FROM alerts WHERE incident_id = :id ORDER BY starts_at, id",
        {"id": incident_id},
    )
    row["timeline"] = tx.fetchall(
        "SELECT id, at, kind, actor, message, detail FROM incident_events"
        " WHERE incident_id = :id ORDER BY at, id",
        {"id": incident_id},
    )
    row["jobs"] = tx.fetchall(
        "SELECT id, rule, playbook, state, params, created_at, updated_at FROM jobs"
        " WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    return row
