"""Read queries for incidents, their alerts and their timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.incidents.states import can_transition
from receiver.store import events
from receiver.store.db import Row, Tx
from receiver.store.records import IncidentFilter
from receiver.store.repository import Repository

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
        "SELECT id, rule, playbook, state, params, plan, result, reason, targets, risk,"
        " attempts, created_at, updated_at, started_at, finished_at FROM jobs"
        " WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    row["approvals"] = tx.fetchall(
        "SELECT id, job_id, state, required, groups, created_at, expires_at, decided_at,"
        " decided_by FROM approvals WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    for a in row["approvals"]:
        a["votes"] = tx.fetchall(
            "SELECT approver, decision, reason, at FROM approval_votes WHERE approval_id = :a"
            " ORDER BY at, approver",
            {"a": a["id"]},
        )
    row["evidence"] = tx.fetchall(
        "SELECT id, check_name, kind, ok, summary, detail, started_at, duration_ms"
        " FROM evidence WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    extra = tx.fetchone(
        "SELECT assignee, postmortem, false_alarm_at, sla_breached_at, escalation_level,"
        " resolved_by FROM incidents WHERE id = :id",
        {"id": incident_id},
    )
    row.update(extra or {})
    return row


def lock(tx: Tx, incident_id: int) -> None:
    """Take the incident's row lock first, in any transaction that may change it and also
    touches its jobs: one lock order (incident, then jobs) for intake, workers and people,
    so that they cannot deadlock. (SQLite serialises writers already.)"""
    tx.lock_rows("incidents", "id = :id", {"id": incident_id}, strength="no key update")


_STAMP = {
    "acknowledged": "acknowledged_at",
    "mitigated": "mitigated_at",
    "resolved": "resolved_at",
    "closed": "closed_at",
}


def transition(
    tx: Tx,
    incident_id: int,
    to: str,
    *,
    now: datetime,
    actor: str,
    reason: str = "",
    origin: dict[str, Any] | None = None,
    job_id: int | None = None,
    only_from: frozenset[str] | None = None,
) -> bool:
    """Move an incident along the transition table; False if it is not allowed now.

    A move to the state it is already in is a no-op (False, nothing written). With
    ``only_from``, the move is made only from those states (e.g. the engine marks an
    incident ``mitigated`` only while it is still active).
    """
    row = tx.fetchone("SELECT state, key FROM incidents WHERE id = :id", {"id": incident_id})
    if row is None:
        return False
    current = row["state"]
    if current == to or not can_transition(current, to):
        return False
    if only_from is not None and current not in only_from:
        return False
    sets = ["state = :to", "updated_at = :now"]
    if to in _STAMP:
        sets.append(f"{_STAMP[to]} = COALESCE({_STAMP[to]}, :now)")
    if to in ("resolved", "closed", "false_alarm"):
        sets.append("open_key = NULL")
    elif current in ("resolved",):
        sets += ["open_key = key", "resolved_at = NULL"]
    changed = tx.fetchone(
        f"UPDATE incidents SET {', '.join(sets)} WHERE id = :id AND state = :cur RETURNING id",  # noqa: S608 - fixed fragments
        {"id": incident_id, "to": to, "now": now, "cur": current},
    )
    if changed is None:
        return False
    events.record(
        tx, incident_id=incident_id, at=now, kind="state_changed", actor=actor,
        message=f"{current} -> {to}" + (f": {reason}" if reason else ""),
        detail={"from": current, "to": to, "reason": reason}, job_id=job_id, origin=origin,
    )
    return True


class IncidentRepository(Repository):
    """Incidents and the alerts attached to them: reads, locks, state transitions."""
