"""Facts for the report page's charts that the per-incident facts lack: the alerts that
fired most, and each remediation job with whether its incident's problem came back.

Like :mod:`receiver.store.reports`, game-day incidents and their alerts and jobs are left
out. Both queries read a window ``[since, until)``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.store.db import Tx
from receiver.store.gamedays import gameday_incident
from receiver.store.repository import records


@dataclass(frozen=True)
class AlertCount:
    """One alert name: episodes first seen in the window, their incidents and deliveries."""

    alertname: str
    episodes: int
    incidents: int
    deliveries: int


@dataclass(frozen=True)
class JobRun:
    """One job created in the window, with what the recurrence rate needs of its incident:
    whether it was reopened, and when the next incident of the same key opened."""

    id: int
    playbook: str
    state: str
    incident_id: int
    created_at: datetime
    reopened_count: int
    next_opened_at: datetime | None


def _when(value: object) -> datetime | None:
    # MIN() over text on SQLite comes back as text
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value  # type: ignore[return-value]


def alert_counts(tx: Tx, since: datetime, until: datetime, limit: int) -> list[AlertCount]:
    """The ``limit`` alert names with the most episodes first seen in the window."""
    rows = tx.fetchall(
        "SELECT al.alertname, COUNT(*) AS episodes,"  # noqa: S608 - constant fragments
        " COUNT(DISTINCT al.incident_id) AS incidents, SUM(al.deliveries) AS deliveries"
        " FROM alerts al WHERE al.first_seen_at >= :since AND al.first_seen_at < :until"
        f" AND NOT {gameday_incident(tx, 'al.incident_id')}"
        " GROUP BY al.alertname ORDER BY episodes DESC, deliveries DESC, al.alertname"
        " LIMIT :limit",
        {"since": since, "until": until, "limit": limit})
    for r in rows:
        r["deliveries"] = int(r["deliveries"] or 0)
        r["episodes"] = int(r["episodes"])
        r["incidents"] = int(r["incidents"])
    return records(AlertCount, rows)


def job_runs(tx: Tx, since: datetime, until: datetime) -> list[JobRun]:
    """Every job created in the window, in id order, with its incident's recurrence facts."""
    rows = tx.fetchall(
        "SELECT j.id, j.playbook, j.state, j.incident_id, j.created_at,"  # noqa: S608
        " i.reopened_count,"
        " (SELECT MIN(n.opened_at) FROM incidents n WHERE n.key = i.key"
        "   AND n.opened_at > i.opened_at) AS next_opened_at"
        " FROM jobs j JOIN incidents i ON i.id = j.incident_id"
        " WHERE j.created_at >= :since AND j.created_at < :until"
        f" AND NOT {gameday_incident(tx, 'j.incident_id')} ORDER BY j.id",
        {"since": since, "until": until})
    for r in rows:
        r["next_opened_at"] = _when(r["next_opened_at"])
    return records(JobRun, rows)
