"""Incident timers, driven by the worker from the store: SLA breach and escalation chain,
and periodic reminders for P0/P1. No in-memory timers: each firing is a conditional UPDATE,
so it survives restarts and happens once however many workers run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from receiver.config import Config
from receiver.intake.severity import Severity
from receiver.people import roster
from receiver.store import Store, UnitOfWork


def _levels(config: Config, severity: str) -> list[Any]:
    return list(config.sla.escalation.get(Severity(severity), []))


def _paged(uow: UnitOfWork, config: Config, level: Any, now: datetime) -> dict[str, str]:
    """Who holds each of the level's on-call roles now: role -> person."""
    if level is None or not level.roles:
        return {}
    overrides = uow.oncall.overrides(live_at=now)
    return {role: roster.on_duty(config.oncall, role, now, overrides).primary
            for role in level.roles if role in config.oncall.roles}


def _naming(paged: dict[str, str]) -> str:
    return ("; calling " + ", ".join(f"{role} {who}" for role, who in paged.items())
            if paged else "")


def run_due(store: Store, config: Config, *, now: datetime) -> int:
    """Fire every due timer once; return how many fired."""
    fired = 0
    with store.unit() as uow:
        fired += _breaches(uow, config, now)
        fired += _next_levels(uow, config, now)
        fired += _reminders(uow, config, now)
    return fired


def _breaches(uow: UnitOfWork, config: Config, now: datetime) -> int:
    breached = uow.incidents.breach_due(now)
    for r in breached:
        levels = _levels(config, r.severity)
        level = levels[0] if levels else None
        if len(levels) > 1:
            uow.incidents.schedule_escalation(r.id, now + levels[1].after)
        paged = _paged(uow, config, level, now)
        uow.events.record(
            incident_id=r.id, at=now, kind="sla_breached", actor="system",
            message=f"{r.severity} not acknowledged by {r.ack_due_at:%Y-%m-%d %H:%M} UTC;"
            + (f" escalating to {level.name}" if level else " no escalation chain configured")
            + _naming(paged),
            detail={"level": 1, "escalate_to": level.name if level else None,
                    "channels": level.channels if level else [], "oncall": paged},
        )
    return len(breached)


def _next_levels(uow: UnitOfWork, config: Config, now: datetime) -> int:
    fired = 0
    for r in uow.incidents.escalations_due(now):
        levels = _levels(config, r.severity)
        nxt = r.escalation_level + 1
        later = now + levels[nxt].after if nxt < len(levels) else None
        moved = uow.incidents.escalate(r.id, level=r.escalation_level, to_level=nxt,
                                       later=later, now=now)
        if not moved or nxt > len(levels):
            continue
        level = levels[nxt - 1]
        fired += 1
        paged = _paged(uow, config, level, now)
        uow.events.record(incident_id=r.id, at=now, kind="escalated", actor="system",
                          message=f"still not acknowledged: escalating to {level.name} "
                          f"(level {nxt})" + _naming(paged),
                          detail={"level": nxt, "escalate_to": level.name,
                                  "channels": level.channels, "oncall": paged})
    return fired


def _reminders(uow: UnitOfWork, config: Config, now: datetime) -> int:
    fired = 0
    for severity, every in config.chat.update_intervals(config.sla.reminders).items():
        for r in uow.incidents.reminders_due(severity.value, now=now, cutoff=now - every):
            last = uow.incidents.recent_events(r.id, limit=3)
            jobs = uow.incidents.pending_jobs(r.id)
            steps = [f"job #{j.id} {j.playbook} is {j.state}" for j in jobs]
            if r.assignee is None:
                steps.append("assign an incident commander")
            if r.state == "open":
                steps.append("acknowledge the incident")
            summary = "; ".join(e.message[:120] for e in last)
            uow.events.record(
                incident_id=r.id, at=now, kind="reminder", actor="system",
                message=f"update: {r.state}; last: {summary or 'nothing new'}; next: "
                + ("; ".join(steps) or "watch and resolve"),
                detail={"state": r.state, "next_steps": steps},
            )
            fired += 1
    return fired


__all__ = ["run_due", "timedelta"]
