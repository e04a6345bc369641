"""Incident timers, driven by the worker from the store: SLA breach and escalation chain,
and periodic reminders for P0/P1. No in-memory timers: each firing is a conditional UPDATE,
so it survives restarts and happens once however many workers run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from receiver.config import Config
from receiver.incidents.states import ACTIVE
from receiver.intake.severity import Severity
from receiver.store import Store, events
from receiver.store.db import Tx

_ACTIVE_SQL = ", ".join(f"'{s}'" for s in sorted(ACTIVE))


def _levels(config: Config, severity: str) -> list[Any]:
    return list(config.sla.escalation.get(Severity(severity), []))


def run_due(store: Store, config: Config, *, now: datetime) -> int:
    """Fire every due timer once; return how many fired."""
    fired = 0
    with store.db.transaction() as tx:
        fired += _breaches(tx, config, now)
        fired += _next_levels(tx, config, now)
        fired += _reminders(tx, config, now)
    return fired


def _breaches(tx: Tx, config: Config, now: datetime) -> int:
    rows = tx.fetchall(
        f"""UPDATE incidents SET sla_breached_at = :now, escalation_level = 1
             WHERE state IN ({_ACTIVE_SQL}) AND acknowledged_at IS NULL
               AND sla_breached_at IS NULL AND ack_due_at <= :now
         RETURNING id, severity, ack_due_at, title""",  # noqa: S608 - constant states
        {"now": now},
    )
    for r in rows:
        levels = _levels(config, r["severity"])
        level = levels[0] if levels else None
        if len(levels) > 1:
            tx.execute("UPDATE incidents SET next_escalation_at = :at WHERE id = :id",
                       {"at": now + levels[1].after, "id": r["id"]})
        events.record(
            tx, incident_id=r["id"], at=now, kind="sla_breached", actor="system",
            message=f"{r['severity']} not acknowledged by {r['ack_due_at']:%Y-%m-%d %H:%M} UTC;"
            + (f" escalating to {level.name}" if level else " no escalation chain configured"),
            detail={"level": 1, "escalate_to": level.name if level else None,
                    "channels": level.channels if level else []},
        )
    return len(rows)


def _next_levels(tx: Tx, config: Config, now: datetime) -> int:
    due = tx.fetchall(
        f"""SELECT id, severity, escalation_level FROM incidents
             WHERE state IN ({_ACTIVE_SQL}) AND acknowledged_at IS NULL
               AND next_escalation_at IS NOT NULL AND next_escalation_at <= :now""",  # noqa: S608 - constant states
        {"now": now},
    )
    fired = 0
    for r in due:
        levels = _levels(config, r["severity"])
        nxt = r["escalation_level"] + 1
        later = now + levels[nxt].after if nxt < len(levels) else None
        # Every condition of the candidate query again, in the UPDATE: an incident
        # acknowledged, resolved or escalated by another worker since the SELECT is skipped.
        moved = tx.fetchone(
            f"""UPDATE incidents SET escalation_level = :nxt, next_escalation_at = :later
                 WHERE id = :id AND escalation_level = :cur AND acknowledged_at IS NULL
                   AND state IN ({_ACTIVE_SQL}) AND next_escalation_at IS NOT NULL
                   AND next_escalation_at <= :now
             RETURNING id""",  # noqa: S608 - constant states
            {"nxt": nxt, "later": later, "id": r["id"], "cur": r["escalation_level"],
             "now": now},
        )
        if moved is None or nxt > len(levels):
            continue
        level = levels[nxt - 1]
        fired += 1
        events.record(tx, incident_id=r["id"], at=now, kind="escalated", actor="system",
                      message=f"still not acknowledged: escalating to {level.name} "
                      f"(level {nxt})",
                      detail={"level": nxt, "escalate_to": level.name,
                              "channels": level.channels})
    return fired


def _reminders(tx: Tx, config: Config, now: datetime) -> int:
    fired = 0
    for severity, every in config.sla.reminders.items():
        rows = tx.fetchall(
            f"""UPDATE incidents SET last_reminder_at = :now
                 WHERE severity = :sev AND state IN ({_ACTIVE_SQL})
                   AND COALESCE(last_reminder_at, opened_at) <= :cutoff
             RETURNING id, state, title, assignee""",  # noqa: S608 - constant states
            {"now": now, "sev": severity.value, "cutoff": now - every},
        )
        for r in rows:
            last = tx.fetchall(
                "SELECT kind, message FROM incident_events WHERE incident_id = :id"
                " AND kind NOT IN ('reminder') ORDER BY id DESC LIMIT 3",
                {"id": r["id"]},
            )
            jobs = tx.fetchall(
                "SELECT id, playbook, state FROM jobs WHERE incident_id = :id"
                " AND state IN ('queued', 'running', 'awaiting_approval')",
                {"id": r["id"]},
            )
            steps = [f"job #{j['id']} {j['playbook']} is {j['state']}" for j in jobs]
            if r["assignee"] is None:
                steps.append("assign an incident commander")
            if r["state"] == "open":
                steps.append("acknowledge the incident")
            summary = "; ".join(e["message"][:120] for e in last)
            events.record(
                tx, incident_id=r["id"], at=now, kind="reminder", actor="system",
                message=f"update: {r['state']}; last: {summary or 'nothing new'}; next: "
                + ("; ".join(steps) or "watch and resolve"),
                detail={"state": r["state"], "next_steps": steps},
            )
            fired += 1
    return fired


__all__ = ["run_due", "timedelta"]
