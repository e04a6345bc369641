"""The report of a game day: its timeline, the time to acknowledge and to mitigate (and by
whom), each expected step met, missed or pending (and when), and what went wrong.

:func:`build` reads it in one read unit; :func:`render` writes it for a terminal. Text that
came from alerts (titles, messages) is printed with control characters replaced, so an
alert cannot move the cursor or rewrite the terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from receiver.durations import format_duration
from receiver.gameday.scenario import Scenario
from receiver.gameday.steps import StepResult, evaluate, happenings
from receiver.store import Store
from receiver.store.gamedays import GameDay
from receiver.store.incident_views import IncidentDetail

MAX_TIMELINE = 500
PROBLEM_JOB_STATES = ("failed", "blocked", "refused", "escalated", "interrupted", "expired",
                      "denied")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(text: object, limit: int = 300) -> str:
    out = _CONTROL.sub("?", str(text))
    return out if len(out) <= limit else out[:limit] + "..."


@dataclass(frozen=True)
class IncidentFigures:
    id: int
    title: str
    severity: str
    state: str
    drill: bool
    opened_after: timedelta
    time_to_acknowledge: timedelta | None
    acknowledged_by: str | None
    time_to_mitigate: timedelta | None
    mitigated_by: str | None


@dataclass(frozen=True)
class Line:
    at: datetime
    after: timedelta
    incident_id: int
    kind: str
    actor: str
    message: str


@dataclass(frozen=True)
class GameDayReport:
    gameday: GameDay
    status: str
    incidents: list[IncidentFigures]
    timeline: list[Line]
    steps: list[StepResult]
    problems: list[str]

    def as_json(self) -> dict[str, Any]:
        g = self.gameday
        return {
            "id": g.id, "name": g.name, "status": self.status,
            "started_at": g.started_at.isoformat(), "started_by": g.started_by,
            "deadline_at": g.deadline_at.isoformat(),
            "ended_at": g.ended_at.isoformat() if g.ended_at else None, "ended_by": g.ended_by,
            "live_targets": list(g.targets),
            "incidents": [{"id": i.id, "title": i.title, "severity": i.severity,
                           "state": i.state, "drill": i.drill,
                           "opened_after_s": i.opened_after.total_seconds(),
                           "time_to_acknowledge_s": _secs(i.time_to_acknowledge),
                           "acknowledged_by": i.acknowledged_by,
                           "time_to_mitigate_s": _secs(i.time_to_mitigate),
                           "mitigated_by": i.mitigated_by} for i in self.incidents],
            "steps": [{"step": s.expected.step, "rule": s.expected.rule, "status": s.status,
                       "at": s.at.isoformat() if s.at else None, "after_s": _secs(s.after),
                       "actor": s.actor, "incident_id": s.incident_id, "note": s.note}
                      for s in self.steps],
            "problems": self.problems,
            "timeline": [{"at": t.at.isoformat(), "after_s": t.after.total_seconds(),
                          "incident_id": t.incident_id, "kind": t.kind, "actor": t.actor,
                          "message": t.message} for t in self.timeline],
        }


def _secs(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _who(detail: IncidentDetail, to: str) -> str | None:
    for e in detail.timeline:
        if (to == "acknowledged" and e.kind == "acknowledged") or (
                e.kind == "state_changed" and e.detail.get("to") == to):
            reason = str(e.detail.get("reason") or "")
            return f"{e.actor} ({reason})" if e.actor == "system" and reason else e.actor
    return None


def figures(detail: IncidentDetail, *, started_at: datetime, drill: bool) -> IncidentFigures:
    ack, mit = detail.acknowledged_at, detail.mitigated_at
    return IncidentFigures(
        id=detail.id, title=plain(detail.title), severity=detail.severity, state=detail.state,
        drill=drill, opened_after=detail.opened_at - started_at,
        time_to_acknowledge=ack - detail.opened_at if ack else None,
        acknowledged_by=_who(detail, "acknowledged") if ack else None,
        time_to_mitigate=mit - detail.opened_at if mit else None,
        mitigated_by=_who(detail, "mitigated") if mit else None)


def assemble(gameday: GameDay, details: list[tuple[IncidentDetail, bool]], *,
             now: datetime) -> GameDayReport:
    """The report from the game day and its incidents (each with whether it is a drill)."""
    scenario = Scenario.model_validate_json(gameday.scenario)
    start = gameday.started_at
    happened = [h for d, _ in details for h in happenings(d)]
    steps = evaluate(scenario.expect, happened, started_at=start, deadline=gameday.deadline_at,
                     ended_at=gameday.ended_at, now=now)
    lines = sorted((Line(e.at, e.at - start, d.id, e.kind, plain(e.actor, 100),
                         plain(e.message)) for d, _ in details for e in d.timeline),
                   key=lambda line: (line.at, line.incident_id))[:MAX_TIMELINE]
    problems = []
    if not details:
        problems.append("no incident was opened for the game day's alerts")
    for d, drill in details:
        if not drill:
            problems.append(f"incident #{d.id} holds alerts that are not the game day's: it "
                            "was handled (and is counted) as a real incident")
        for job in d.jobs:
            if job.state in PROBLEM_JOB_STATES:
                problems.append(f"job #{job.id} ({plain(job.rule, 100)}) {job.state}: "
                                f"{plain(job.reason or '-')}")
        for e in d.timeline:
            if e.kind in ("sla_breached", "escalated", "verification_failed", "job_failed"):
                problems.append(f"incident #{d.id} {e.kind.replace('_', ' ')} at "
                                f"+{format_duration(e.at - start)}: {plain(e.message)}")
    for s in steps:
        if s.status == "missed":
            problems.append(f"expected step {s.expected.label} missed: {s.note}")
    for url, why in (gameday.details.get("failed") or {}).items():
        problems.append(f"Alertmanager {plain(url, 200)} did not take the alerts: {plain(why)}")
    if gameday.ended_at is not None:
        status = "ended"
    elif now >= gameday.deadline_at:
        status = "time limit reached"
    else:
        status = "running"
    return GameDayReport(gameday, status,
                         [figures(d, started_at=start, drill=drill) for d, drill in details],
                         lines, steps, problems)


def build(store: Store, gameday_id: str, *, now: datetime) -> GameDayReport | None:
    with store.unit(write=False) as uow:
        gameday = uow.gamedays.get(gameday_id)
        if gameday is None:
            return None
        details = []
        for inc in uow.gamedays.incidents(gameday_id):
            d = uow.incidents.detail(inc.incident_id)
            if d is not None:
                details.append((d, bool(inc.drill)))
    return assemble(gameday, details, now=now)


def _d(value: timedelta | None) -> str:
    return "-" if value is None else format_duration(value)


def render(r: GameDayReport) -> list[str]:
    g = r.gameday
    out = [f"game day {g.id}: {plain(g.name)} ({r.status})",
           f"  started {g.started_at:%Y-%m-%d %H:%M:%S} UTC by {g.started_by}; time limit "
           f"{format_duration(g.deadline_at - g.started_at)}"
           + (f"; ended {g.ended_at:%H:%M:%S} by {g.ended_by}" if g.ended_at else ""),
           "  live targets: " + (", ".join(g.targets) if g.targets else "none (all dry-run)"),
           "", "incidents:"]
    if not r.incidents:
        out.append("  none")
    for i in r.incidents:
        out.append(f"  #{i.id} {i.severity} {i.state}{'' if i.drill else ' (REAL)'}: {i.title}")
        out.append(f"    opened +{_d(i.opened_after)}; acknowledged after "
                   f"{_d(i.time_to_acknowledge)} by {i.acknowledged_by or '-'}; mitigated "
                   f"after {_d(i.time_to_mitigate)} by {i.mitigated_by or '-'}")
    out += ["", "expected steps:"]
    if not r.steps:
        out.append("  none")
    for s in r.steps:
        where = f" (incident #{s.incident_id}, by {s.actor})" if s.incident_id else ""
        out.append(f"  [{s.status}] {s.expected.label}: {s.note}{where}")
    out += ["", "what went wrong:"]
    out += [f"  - {p}" for p in r.problems] or ["  nothing"]
    out += ["", "timeline:"]
    for t in r.timeline:
        out.append(f"  +{format_duration(t.after):>7} #{t.incident_id} {t.kind} ({t.actor}): "
                   f"{t.message}")
    return out
