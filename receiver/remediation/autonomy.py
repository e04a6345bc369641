"""Earned autonomy: a rule with ``approval: {mode: earned}`` needs approval until its record
says it may act alone, and needs it again the moment its record says otherwise.

- **Promotion.** A rule is promoted when it has ``promote_after`` *sticking* runs: jobs a
  person approved, that verified, and whose alert did not fire again within
  ``recurrence`` after they verified (so a run sticks only once ``recurrence`` has
  passed). Only runs that verified within ``window`` and after the rule's last setback
  count. The promotion is made, audited and put on the timeline when the next job of the
  rule is checked by the guards, on that job's incident, with the runs as evidence.
- **Demotion.** A *setback* demotes an autonomous rule at once (and, while it still needs
  approval, restarts its count): a failed verification of one of its jobs (recorded by the
  failure's own transaction), an undo of one of its jobs that a person asked for (a
  rule's scheduled ``undo: {when: resolved}`` ends a temporary measure: no setback), or
  its alert firing again within
  ``recurrence`` after a run verified (both found by the guards before they decide, and by
  the workers' chores). Each setback is recorded once (``rule_setbacks``), audited, and put
  on the timeline of the incident it showed on.

How it meets the other approval sources (see :mod:`receiver.remediation.guards`): earned
autonomy waives only what the rule's own approval policy asks for, which for ``risk`` mode
is a high-risk call. The playbook's own policy (``approval_required``, e.g. a restore that
always needs a person) still wins, and so do an open circuit breaker and a ``per_severity``
mode other than ``earned``: such a job needs approval whatever the rule earned, and a rule
is never promoted by a job that needs approval for one of those reasons. An undo job of an
earned rule is judged as ``risk`` mode would (approval when high risk): taking an action
back is not a run of the rule and must not wait for a person the rule itself no longer
needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from receiver.durations import format_duration
from receiver.remediation.guards import Decision
from receiver.remediation.rules import ApprovalPolicy, RemediationRule
from receiver.store import Store, UnitOfWork
from receiver.store.autonomy import Cause, RuleLevel, RunFacts
from receiver.store.jobs import Job

GUARD = "earned_autonomy"


# -- the record (pure) ---------------------------------------------------------------------

def sticks(run: RunFacts, recurrence: timedelta, now: datetime) -> bool:
    """The run verified, ``recurrence`` has passed since, and its alert did not fire again
    within it."""
    if not run.verified or run.verification_failed_at is not None or run.undone_at is not None:
        return False
    until = run.finished_at + recurrence
    return until <= now and (run.next_episode_at is None or run.next_episode_at > until)


def recurred(run: RunFacts, recurrence: timedelta) -> bool:
    """The run verified and its alert fired again within ``recurrence``."""
    return (run.verified and run.next_episode_at is not None
            and run.next_episode_at <= run.finished_at + recurrence)


@dataclass(frozen=True)
class Found:
    """A setback seen in a run's facts."""

    run: RunFacts
    cause: Cause
    at: datetime
    incident_id: int

    def describe(self, rule: str) -> str:
        if self.cause == "verification_failed":
            return f"job #{self.run.job_id} of rule {rule} failed its verification"
        if self.cause == "undone":
            return f"job #{self.run.job_id} of rule {rule} was undone"
        return (f"the alert of job #{self.run.job_id} (rule {rule}) fired again "
                f"{format_duration(self.at - self.run.finished_at)} after it verified")

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cause": self.cause, "job_id": self.run.job_id,
                               "job_incident_id": self.run.incident_id,
                               "at": self.at.isoformat()}
        if self.run.verified:
            out["verified_at"] = self.run.finished_at.isoformat()
        return out


def setbacks_in(runs: Iterable[RunFacts], recurrence: timedelta) -> list[Found]:
    """Every setback the runs' facts show, oldest first."""
    found: list[Found] = []
    for r in runs:
        if r.verification_failed_at is not None:
            found.append(Found(r, "verification_failed", r.verification_failed_at,
                               r.incident_id))
        if r.undone_at is not None:
            found.append(Found(r, "undone", r.undone_at, r.incident_id))
        if recurred(r, recurrence) and r.next_episode_at is not None:
            found.append(Found(r, "recurred", r.next_episode_at,
                               r.next_episode_incident_id or r.incident_id))
    return sorted(found, key=lambda f: (f.at, f.run.job_id))


@dataclass(frozen=True)
class Standing:
    """A rule's level and record at one instant."""

    level: str
    promote_after: int
    streak: tuple[RunFacts, ...]
    """The sticking approved runs that count towards a promotion, oldest first."""
    streak_started_at: datetime | None
    runs: int = 0
    verified: int = 0
    failed: int = 0
    undone: int = 0
    recurred: int = 0
    pending: tuple[RunFacts, ...] = field(default=())
    """Approved runs that verified but have not stuck yet (within ``recurrence``)."""

    @property
    def autonomous(self) -> bool:
        return self.level == "autonomous"

    @property
    def earned(self) -> bool:
        """Enough sticking runs for a promotion."""
        return len(self.streak) >= self.promote_after

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "streak": [r.job_id for r in self.streak],
                "promote_after": self.promote_after,
                "streak_started_at": self.streak_started_at.isoformat()
                if self.streak_started_at else None,
                "runs": self.runs, "verified": self.verified, "failed": self.failed,
                "undone": self.undone, "recurred": self.recurred}


def standing(policy: ApprovalPolicy, runs: list[RunFacts], level: RuleLevel | None,
             now: datetime, extra: Iterable[Found] = ()) -> Standing:
    """The rule's standing from its runs (finished within ``window + recurrence``) and its
    stored level; ``extra`` are setbacks seen but not stored (a read-only look)."""
    start = level.streak_started_at if level is not None else None
    current = level.level if level is not None else "approval"
    for f in extra:
        start = f.at if start is None or f.at > start else start
        current = "approval"
    since = now - policy.window
    if start is not None and start > since:
        since = start
    streak = tuple(r for r in runs if r.approved_at is not None and r.finished_at > since
                   and sticks(r, policy.recurrence, now))
    pending = tuple(r for r in runs if r.approved_at is not None and r.finished_at > since
                    and r.verified and r.finished_at + policy.recurrence > now)
    window = [r for r in runs if r.finished_at >= now - policy.window]
    return Standing(
        level=current, promote_after=policy.promote_after, streak=streak,
        streak_started_at=start, runs=len(window),
        verified=sum(1 for r in window if r.verified),
        failed=sum(1 for r in window if r.verification_failed_at is not None
                   or not r.verified),
        undone=sum(1 for r in window if r.undone_at is not None),
        recurred=sum(1 for r in window if recurred(r, policy.recurrence)),
        pending=pending)


# -- in a unit of work ---------------------------------------------------------------------

def _runs(uow: UnitOfWork, rule: RemediationRule, now: datetime) -> list[RunFacts]:
    p = rule.approval
    return uow.autonomy.runs(since=now - p.window - p.recurrence, until=now + timedelta(
        microseconds=1), rule=rule.name)


def set_back(uow: UnitOfWork, rule: RemediationRule, f: Found, *, now: datetime) -> bool:
    """Record one setback (once), demote the rule if it was autonomous (or restart its
    count), with the evidence on the timeline of the incident it showed on and in the audit
    log. True when this call recorded it."""
    detail = f.evidence()
    added = uow.autonomy.add_setback(rule=rule.name, job_id=f.run.job_id, cause=f.cause,
                                     at=f.at, incident_id=f.incident_id, detail=detail,
                                     now=now)
    if added is None:
        return False
    what = f.describe(rule.name)
    demoted = uow.autonomy.set_back(rule.name, at=f.at, now=now, reason=what,
                                    job_id=f.run.job_id, incident_id=f.incident_id)
    p = rule.approval
    if demoted:
        kind = "autonomy_demoted"
        message = (f"rule {rule.name} needs approval again: {what}; it earns autonomy back "
                   f"after {p.promote_after} approved runs that verify and stick")
    else:
        kind = "autonomy_set_back"
        message = (f"rule {rule.name} starts its count again ({p.promote_after} approved "
                   f"runs that verify and stick): {what}")
    uow.events.record(incident_id=f.incident_id, at=now, kind=kind, actor="system",
                      message=message, job_id=f.run.job_id,
                      detail={"rule": rule.name, "level": "approval", **detail})
    return True


def record_setbacks(uow: UnitOfWork, rule: RemediationRule, runs: list[RunFacts], *,
                    now: datetime) -> int:
    """Record every setback the runs show that is not on record yet; how many."""
    return sum(set_back(uow, rule, f, now=now)
               for f in setbacks_in(runs, rule.approval.recurrence))


def decide(uow: UnitOfWork, *, job: Job, rule: RemediationRule, high_risk: bool,
           now: datetime, record: bool = True) -> Decision:
    """The approval guard for a job whose severity's mode is ``earned``: pass when the rule
    has earned autonomy (promoting it now when its record has just earned it), approval
    otherwise. ``record=False`` looks without writing (a preview): what would be decided."""
    if job.undoes_job_id is not None:
        if high_risk:
            return Decision("approval", "approval_policy", "high-risk action (an undo)")
        return Decision("pass", GUARD, "an undo is judged by its risk")
    runs = _runs(uow, rule, now)
    if record:
        record_setbacks(uow, rule, runs, now=now)
        extra: list[Found] = []
    else:
        extra = _unrecorded(uow, rule, runs, now)
    level = uow.autonomy.level(rule.name)
    st = standing(rule.approval, runs, level, now, extra)
    if st.autonomous:
        return Decision("pass", GUARD, f"rule {rule.name} has earned autonomy")
    if st.earned:
        if record:
            promote(uow, rule, st, job=job, now=now)
        return Decision("pass", GUARD, f"rule {rule.name} has earned autonomy")
    waiting = f"; {len(st.pending)} more verified, not yet past recurrence" if st.pending else ""
    return Decision("approval", GUARD,
                    f"rule {rule.name} needs approval until it earns autonomy: "
                    f"{len(st.streak)} of {st.promote_after} approved runs verified and "
                    f"stuck{waiting}",
                    {"streak": [r.job_id for r in st.streak],
                     "promote_after": st.promote_after})


def promote(uow: UnitOfWork, rule: RemediationRule, st: Standing, *, job: Job,
            now: datetime) -> bool:
    """Promote the rule (once), with the runs that earned it on the timeline of ``job``'s
    incident and in the audit log."""
    p = rule.approval
    runs = st.streak[-st.promote_after:]
    ids = ", ".join(f"#{r.job_id}" for r in runs)
    reason = (f"{len(runs)} approved runs verified and stuck (no recurrence within "
              f"{format_duration(p.recurrence)}) within {format_duration(p.window)}: {ids}")
    if uow.autonomy.promote(rule.name, now=now, reason=reason, job_id=job.id,
                            incident_id=job.incident_id) is None:
        return False
    uow.events.record(
        incident_id=job.incident_id, at=now, kind="autonomy_promoted", actor="system",
        message=f"rule {rule.name} earned autonomy: {reason}; job #{job.id} and its next "
                "jobs run without approval until a setback", job_id=job.id,
        detail={"rule": rule.name, "level": "autonomous",
                "runs": [{"job_id": r.job_id, "incident_id": r.incident_id,
                          "approved_at": r.approved_at.isoformat() if r.approved_at else None,
                          "verified_at": r.finished_at.isoformat()} for r in runs],
                "window": format_duration(p.window),
                "recurrence": format_duration(p.recurrence)})
    return True


def verification_failed(uow: UnitOfWork, job: Job, rule: RemediationRule, *,
                        now: datetime) -> None:
    """In a failed verification's transaction: the setback, at once (earned rules only)."""
    if not rule.approval.earned or job.undoes_job_id is not None:
        return
    run = RunFacts(job_id=job.id, rule=job.rule, playbook=job.playbook,
                   incident_id=job.incident_id, state="failed", approved_at=job.approved_at,
                   started_at=job.started_at or now, finished_at=now, webhook_at=None,
                   verification_failed_at=now, undone_at=None, next_episode_at=None,
                   next_episode_incident_id=None)
    set_back(uow, rule, Found(run, "verification_failed", now, job.incident_id), now=now)


def _unrecorded(uow: UnitOfWork, rule: RemediationRule, runs: list[RunFacts],
                now: datetime) -> list[Found]:
    p = rule.approval
    known = {(s.job_id, s.cause) for s in uow.autonomy.setbacks(
        since=now - p.window - p.recurrence, rule=rule.name)}
    return [f for f in setbacks_in(runs, p.recurrence) if (f.run.job_id, f.cause) not in known]


def refresh(store: Store, rules: Iterable[RemediationRule], now: datetime) -> int:
    """A worker chore: record the setbacks of earned rules (recurrences, undos) that no
    guard has seen yet; how many. A read per earned rule; a write only when there is a
    setback to record."""
    done = 0
    for rule in rules:
        if not (rule.approval.earned and rule.enabled):
            continue
        with store.unit(write=False) as uow:
            found = _unrecorded(uow, rule, _runs(uow, rule, now), now)
        if found:
            with store.unit() as uow:
                done += sum(set_back(uow, rule, f, now=now) for f in found)
    return done


def standings(uow: UnitOfWork, rules: Iterable[RemediationRule],
              now: datetime) -> dict[str, Standing]:
    """Each earned rule's standing, read only (setbacks not yet recorded count)."""
    out: dict[str, Standing] = {}
    levels = uow.autonomy.levels()
    for rule in rules:
        if not rule.approval.earned:
            continue
        runs = _runs(uow, rule, now)
        out[rule.name] = standing(rule.approval, runs, levels.get(rule.name), now,
                                  _unrecorded(uow, rule, runs, now))
    return out
