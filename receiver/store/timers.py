"""The incident timers' statements: SLA breach, escalation levels, reminders.

Each firing is a conditional UPDATE (``... RETURNING``), so a timer fires once however many
workers run it at the same moment. Used through
:class:`~receiver.store.incidents.IncidentRepository`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.incidents.states import ACTIVE_STATES
from receiver.store.db import Row, Tx

_ACTIVE_SQL = ", ".join(f"'{s}'" for s in sorted(ACTIVE_STATES))


@dataclass(frozen=True)
class Breach:
    id: int
    severity: str
    ack_due_at: datetime
    title: str


@dataclass(frozen=True)
class EscalationDue:
    id: int
    severity: str
    escalation_level: int


@dataclass(frozen=True)
class ReminderDue:
    id: int
    state: str
    title: str
    assignee: str | None


@dataclass(frozen=True)
class EventBrief:
    kind: str
    message: str


@dataclass(frozen=True)
class JobBrief:
    id: int
    playbook: str
    state: str


def breach_due(tx: Tx, now: datetime) -> list[Row]:
    return tx.fetchall(
        f"""UPDATE incidents SET sla_breached_at = :now, escalation_level = 1
             WHERE state IN ({_ACTIVE_SQL}) AND acknowledged_at IS NULL
               AND sla_breached_at IS NULL AND ack_due_at <= :now
         RETURNING id, severity, ack_due_at, title""",  # noqa: S608 - constant states
        {"now": now},
    )


def schedule_escalation(tx: Tx, incident_id: int, at: datetime) -> None:
    tx.execute("UPDATE incidents SET next_escalation_at = :at WHERE id = :id",
               {"at": at, "id": incident_id})


def escalations_due(tx: Tx, now: datetime) -> list[Row]:
    return tx.fetchall(
        f"""SELECT id, severity, escalation_level FROM incidents
             WHERE state IN ({_ACTIVE_SQL}) AND acknowledged_at IS NULL
               AND next_escalation_at IS NOT NULL AND next_escalation_at <= :now""",  # noqa: S608 - constant states
        {"now": now},
    )


def escalate(tx: Tx, incident_id: int, *, level: int, to_level: int, later: datetime | None,
             now: datetime) -> bool:
    # Every condition of the candidate query again, in the UPDATE: an incident
    # acknowledged, resolved or escalated by another worker since the SELECT is skipped.
    moved = tx.fetchone(
        f"""UPDATE incidents SET escalation_level = :nxt, next_escalation_at = :later
             WHERE id = :id AND escalation_level = :cur AND acknowledged_at IS NULL
               AND state IN ({_ACTIVE_SQL}) AND next_escalation_at IS NOT NULL
               AND next_escalation_at <= :now
         RETURNING id""",  # noqa: S608 - constant states
        {"nxt": to_level, "later": later, "id": incident_id, "cur": level, "now": now},
    )
    return moved is not None


def reminders_due(tx: Tx, severity: str, *, now: datetime, cutoff: datetime) -> list[Row]:
    return tx.fetchall(
        f"""UPDATE incidents SET last_reminder_at = :now
             WHERE severity = :sev AND state IN ({_ACTIVE_SQL})
               AND COALESCE(last_reminder_at, opened_at) <= :cutoff
         RETURNING id, state, title, assignee""",  # noqa: S608 - constant states
        {"now": now, "sev": severity, "cutoff": cutoff},
    )


def recent_events(tx: Tx, incident_id: int, limit: int) -> list[Row]:
    return tx.fetchall(
        "SELECT kind, message FROM incident_events WHERE incident_id = :id"
        " AND kind NOT IN ('reminder') ORDER BY id DESC LIMIT :n",
        {"id": incident_id, "n": limit},
    )


def pending_jobs(tx: Tx, incident_id: int) -> list[Row]:
    return tx.fetchall(
        "SELECT id, playbook, state FROM jobs WHERE incident_id = :id"
        " AND state IN ('queued', 'running', 'awaiting_approval')",
        {"id": incident_id},
    )
