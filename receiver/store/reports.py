"""Facts for post-incident metrics: one row per incident, one per job."""

from __future__ import annotations

from datetime import datetime

from receiver.store.db import Row, Tx


def incident_facts(tx: Tx, since: datetime | None) -> list[Row]:
    where = "WHERE i.opened_at >= :since" if since is not None else ""
    rows = tx.fetchall(
        f"""SELECT i.id, i.severity, i.state, i.opened_at, i.ack_due_at, i.acknowledged_at,
                  i.mitigated_at, i.resolved_at, i.closed_at, i.false_alarm_at,
                  i.sla_breached_at,
                  (SELECT MIN(a.starts_at) FROM alerts a WHERE a.incident_id = i.id)
                      AS first_alert_at,
                  (SELECT COUNT(*) FROM incident_events e WHERE e.incident_id = i.id
                      AND e.actor LIKE 'user:%') AS human_events,
                  (SELECT COUNT(*) FROM jobs j WHERE j.incident_id = i.id
                      AND j.started_at IS NOT NULL) AS jobs_started
             FROM incidents i {where} ORDER BY i.id""",  # noqa: S608 - fixed fragment
        {"since": since} if since is not None else {},
    )
    for r in rows:
        # MIN() over text on SQLite comes back as text
        if isinstance(r["first_alert_at"], str):
            r["first_alert_at"] = datetime.fromisoformat(r["first_alert_at"])
    return rows


def job_facts(tx: Tx, since: datetime | None) -> list[Row]:
    where = "WHERE created_at >= :since" if since is not None else ""
    return tx.fetchall(
        f"SELECT id, playbook, state FROM jobs {where} ORDER BY id",  # noqa: S608 - fixed fragment
        {"since": since} if since is not None else {},
    )
