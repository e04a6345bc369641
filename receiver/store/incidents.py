"""Incidents: row locks, state transitions through the table, and the changes people make.

Every state change is checked against :data:`receiver.incidents.states.TRANSITIONS` and
written as one conditional ``UPDATE ... WHERE state IN (<allowed from>)``: two actors racing
on one incident cannot both move it. The read model the API and pages show (an incident with
its alerts, timeline, jobs, approvals and evidence) is in :mod:`receiver.store.incident_views`,
the timers' statements in :mod:`receiver.store.timers`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.errors import InvalidTransition
from receiver.incidents.states import IncidentState, can_transition, sources
from receiver.store import events, timers
from receiver.store import incident_views as views
from receiver.store.db import Tx
from receiver.store.records import IncidentFilter
from receiver.store.repository import Repository, maybe, records

INITIAL = IncidentState.OPEN
"""The state an incident is opened in."""


@dataclass(frozen=True)
class Incident:
    """One incident as stored (without its alerts, timeline and jobs)."""

    id: int
    key: str
    state: str
    severity: str
    severity_reason: str
    title: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    opened_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    false_alarm_at: datetime | None
    sla_breached_at: datetime | None
    last_seen_at: datetime
    updated_at: datetime
    reopened_count: int
    assignee: str | None
    resolved_by: str | None
    escalation_level: int


_COLUMNS = ", ".join(Incident.__dataclass_fields__)


@dataclass(frozen=True)
class IncidentHead:
    """What a person's action reads and answers: state, severity, deadline, commander."""

    id: int
    state: str
    severity: str
    opened_at: datetime
    acknowledged_at: datetime | None
    ack_due_at: datetime
    assignee: str | None


def lock(tx: Tx, incident_id: int) -> None:
    """Take the incident's row lock first, in any transaction that may change it and also
    touches its jobs: one lock order (incident, then jobs) for intake, workers and people,
    so that they cannot deadlock. (SQLite serialises writers already.)"""
    tx.lock_rows("incidents", "id = :id", {"id": incident_id}, strength="no key update")


def allowed_sources(to: str, from_states: Collection[str] | None = None) -> tuple[str, ...]:
    """The states a move to ``to`` may start from: ``from_states`` (each checked against the
    table: InvalidTransition names those it forbids), or every one the table allows."""
    if from_states is None:
        return sources(to)
    bad = sorted(s for s in from_states if not can_transition(s, to))
    if bad:
        raise InvalidTransition(f"an incident cannot go from {', '.join(bad)} to {to}")
    return tuple(from_states)


def state_in(from_states: Collection[str]) -> str:
    """``state IN (...)`` of constant state names (each one a name of the table)."""
    names = [IncidentState(s).value for s in from_states]
    return f"state IN ({', '.join(repr(s) for s in names)})"


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


def get(tx: Tx, incident_id: int) -> Incident | None:
    return maybe(Incident, tx.fetchone(
        f"SELECT {_COLUMNS} FROM incidents WHERE id = :id", {"id": incident_id}))  # noqa: S608 - constant columns


def head(tx: Tx, incident_id: int) -> IncidentHead | None:
    return maybe(IncidentHead, tx.fetchone(
        "SELECT id, state, severity, opened_at, acknowledged_at, ack_due_at,"
        " assignee FROM incidents WHERE id = :id", {"id": incident_id}))


class IncidentRepository(Repository):
    """Incidents: locks, reads, transitions, what people change, and the timers' updates."""

    def lock(self, incident_id: int) -> None:
        lock(self.tx, incident_id)

    def get(self, incident_id: int) -> Incident | None:
        return get(self.tx, incident_id)

    def head(self, incident_id: int) -> IncidentHead | None:
        return head(self.tx, incident_id)

    def detail(self, incident_id: int) -> views.IncidentDetail | None:
        """The incident with its alerts, timeline, jobs, approvals and evidence."""
        return views.detail(self.tx, incident_id)

    def sent_notices(self, incident_id: int) -> list[views.SentNotice]:
        """The incident's notifications delivered, oldest delivery first."""
        return views.sent_notices(self.tx, incident_id)

    def transition(self, incident_id: int, to: str, *, now: datetime, actor: str,
                   reason: str = "", origin: dict[str, Any] | None = None,
                   job_id: int | None = None, only_from: frozenset[str] | None = None) -> bool:
        return transition(self.tx, incident_id, to, now=now, actor=actor, reason=reason,
                          origin=origin, job_id=job_id, only_from=only_from)

    # -- what people change ---------------------------------------------------------------

    def stamp_acknowledged(self, incident_id: int, now: datetime) -> None:
        """Record the first acknowledgement of an incident past ``open`` (no state change)."""
        self.tx.execute("UPDATE incidents SET acknowledged_at = :now WHERE id = :id"
                        " AND acknowledged_at IS NULL", {"id": incident_id, "now": now})

    def take_command(self, incident_id: int, user: str) -> None:
        """``user`` becomes the commander (as acknowledging does; not an update of record)."""
        self.tx.execute("UPDATE incidents SET assignee = :u WHERE id = :id",
                        {"u": user, "id": incident_id})

    def assign(self, incident_id: int, user: str, now: datetime) -> None:
        self.tx.execute("UPDATE incidents SET assignee = :u, updated_at = :now WHERE id = :id",
                        {"u": user, "now": now, "id": incident_id})

    def firing_alerts(self, incident_id: int) -> int:
        row = self.tx.fetchone("SELECT COUNT(*) AS n FROM alerts WHERE incident_id = :id"
                               " AND status = 'firing'", {"id": incident_id})
        return int(row["n"]) if row else 0

    def set_resolved_by(self, incident_id: int, user: str) -> None:
        self.tx.execute("UPDATE incidents SET resolved_by = :u WHERE id = :id",
                        {"u": user, "id": incident_id})

    def mark_false_alarm(self, incident_id: int, now: datetime) -> None:
        self.tx.execute("UPDATE incidents SET false_alarm_at = :now WHERE id = :id",
                        {"now": now, "id": incident_id})

    def set_severity(self, incident_id: int, severity: str, *, reason: str, ack_due_at: datetime,
                     now: datetime) -> None:
        self.tx.execute("UPDATE incidents SET severity = :s, severity_reason = :r,"
                        " ack_due_at = :due, updated_at = :now WHERE id = :id",
                        {"s": severity, "r": reason, "due": ack_due_at, "now": now,
                         "id": incident_id})

    def postmortem(self, incident_id: int) -> str | None:
        row = self.tx.fetchone("SELECT postmortem FROM incidents WHERE id = :id",
                               {"id": incident_id})
        return row["postmortem"] if row else None

    def save_postmortem(self, incident_id: int, text: str, now: datetime) -> None:
        self.tx.execute("UPDATE incidents SET postmortem = :t, updated_at = :now WHERE id = :id",
                        {"t": text, "now": now, "id": incident_id})

    # -- timers (statements in receiver.store.timers) -------------------------------------

    def breach_due(self, now: datetime) -> list[timers.Breach]:
        """Mark every active, unacknowledged incident past its deadline as breached (level
        1); the ones this call marked."""
        return records(timers.Breach, timers.breach_due(self.tx, now))

    def schedule_escalation(self, incident_id: int, at: datetime) -> None:
        timers.schedule_escalation(self.tx, incident_id, at)

    def escalations_due(self, now: datetime) -> list[timers.EscalationDue]:
        return records(timers.EscalationDue, timers.escalations_due(self.tx, now))

    def escalate(self, incident_id: int, *, level: int, to_level: int, later: datetime | None,
                 now: datetime) -> bool:
        """Move the escalation from ``level`` to ``to_level`` if it is still due and at
        ``level``; False when another worker or a person got there first."""
        return timers.escalate(self.tx, incident_id, level=level, to_level=to_level,
                               later=later, now=now)

    def reminders_due(self, severity: str, *, now: datetime,
                      cutoff: datetime) -> list[timers.ReminderDue]:
        return records(timers.ReminderDue,
                       timers.reminders_due(self.tx, severity, now=now, cutoff=cutoff))

    def recent_events(self, incident_id: int, limit: int = 3) -> list[timers.EventBrief]:
        """The newest timeline events besides reminders, newest first."""
        return records(timers.EventBrief, timers.recent_events(self.tx, incident_id, limit))

    def pending_jobs(self, incident_id: int) -> list[timers.JobBrief]:
        """The incident's jobs that are queued, running or awaiting approval."""
        return records(timers.JobBrief, timers.pending_jobs(self.tx, incident_id))

    def alert_text(self, alert_id: int) -> AlertText | None:
        """An alert's labels and annotations (what a job's checks and chained rules read)."""
        return maybe(AlertText, self.tx.fetchone(
            "SELECT labels, annotations FROM alerts WHERE id = :id", {"id": alert_id}))

    def alerts_resolved(self, incident_id: int, *, alert_id: int | None = None) -> bool:
        """Whether the alert ``alert_id`` has resolved; without one, whether none of the
        incident's alerts is firing any more."""
        if alert_id is None:
            return self.firing_alerts(incident_id) == 0
        row = self.tx.fetchone("SELECT status FROM alerts WHERE id = :id", {"id": alert_id})
        return row is not None and row["status"] == "resolved"

    def matching(self, f: IncidentFilter) -> list[views.IncidentSummary]:
        """The incidents matching ``f``, newest first (the list's read model)."""
        return records(views.IncidentSummary, views.list_incidents(self.tx, f))


@dataclass(frozen=True)
class AlertText:
    """What an alert says: its labels and annotations."""

    labels: dict[str, str]
    annotations: dict[str, str]
