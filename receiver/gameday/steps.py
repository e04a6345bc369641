"""Whether each expected step of a game day happened, and when (pure).

What happened is read off the drill's incidents (:func:`happenings`): each incident
opening, acknowledgement (and by whom), mitigation, resolution, and each job by rule (its
creation is ``job_planned``; a job parked in dry run is ``job_dry_run``; a job that
succeeded is ``job_succeeded``). :func:`evaluate` then gives each expected step its earliest
happening, measured from the game day's start:

- ``met``: it happened within its ``within`` (or, without one, before the time limit);
- ``missed``: it happened too late, or it did not happen and its time is up (its
  ``within`` passed, the time limit passed, or the game day was ended);
- ``pending``: it has not happened yet and there is still time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from receiver.durations import format_duration
from receiver.gameday.scenario import JOB_STEPS, ExpectedStep
from receiver.store.incident_views import IncidentDetail

Status = Literal["met", "missed", "pending"]


@dataclass(frozen=True)
class Happening:
    step: str
    at: datetime
    incident_id: int
    actor: str = "system"
    rule: str | None = None


@dataclass(frozen=True)
class StepResult:
    expected: ExpectedStep
    status: Status
    at: datetime | None
    after: timedelta | None
    """How long after the start it happened."""
    actor: str | None
    incident_id: int | None
    note: str


def _stamp(timeline_at: datetime | None, column: datetime | None) -> datetime | None:
    return timeline_at if timeline_at is not None else column


def happenings(detail: IncidentDetail) -> list[Happening]:
    """Everything of one incident that a step can be about."""
    out = [Happening("incident_opened", detail.opened_at, detail.id)]
    seen: set[str] = set()
    for e in detail.timeline:
        step = None
        if e.kind == "acknowledged":
            step = "acknowledged"
        elif e.kind == "state_changed" and e.detail.get("to") in ("mitigated", "resolved"):
            step = str(e.detail["to"])
        elif e.kind == "resolved":
            step = "resolved"
        if step is not None and step not in seen:
            seen.add(step)
            out.append(Happening(step, e.at, detail.id, e.actor))
    for step, column in (("acknowledged", detail.acknowledged_at),
                         ("mitigated", detail.mitigated_at), ("resolved", detail.resolved_at)):
        if step not in seen and column is not None:
            out.append(Happening(step, column, detail.id))
    for job in detail.jobs:
        out.append(Happening("job_planned", job.created_at, detail.id, rule=job.rule))
        if job.state == "dry_run":
            out.append(Happening("job_dry_run", job.updated_at, detail.id, rule=job.rule))
        elif job.state == "succeeded":
            out.append(Happening("job_succeeded", job.finished_at or job.updated_at,
                                 detail.id, rule=job.rule))
    return out


def evaluate(expected: Iterable[ExpectedStep], happened: Iterable[Happening], *,
             started_at: datetime, deadline: datetime, ended_at: datetime | None,
             now: datetime) -> list[StepResult]:
    """Each expected step, in the scenario's order, met, missed or pending."""
    happened = sorted(happened, key=lambda h: h.at)
    over = min(deadline, ended_at) if ended_at is not None else deadline
    out = []
    for step in expected:
        allowed = step.within if step.within is not None else deadline - started_at
        limit = started_at + allowed
        first = next((h for h in happened if h.step == step.step
                      and (step.step not in JOB_STEPS or h.rule == step.rule)), None)
        if first is not None:
            after = first.at - started_at
            late = first.at > limit
            note = (f"after {format_duration(after)}, past the {format_duration(allowed)}"
                    " allowed" if late else f"after {format_duration(after)}")
            out.append(StepResult(step, "missed" if late else "met", first.at, after,
                                  first.actor, first.incident_id, note))
            continue
        if now >= limit or now >= over:
            why = (f"not within {format_duration(allowed)}" if now >= limit
                   else "not before the game day ended")
            out.append(StepResult(step, "missed", None, None, None, None, why))
        else:
            out.append(StepResult(step, "pending", None, None, None, None,
                                  f"{format_duration(limit - now)} left"))
    return out
