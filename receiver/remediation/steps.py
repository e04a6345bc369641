"""The steps of one job, in order: claim, check, lock, plan, start, run, verify, conclude.

Each step is one function. A step that writes works in the unit of work it is given, so
that the worker makes a successful job in three write transactions:

1. claim + check + lock: the job leased, its guards re-checked, its targets locked (or the
   job blocked, refused or put back to wait for a target), in the claim's transaction;
2. start: the last check of the lease, the targets recorded, ``job_started``, the incident
   ``mitigating``;
3. conclude: ``succeeded``, the targets freed, the incident ``mitigated`` (a failure is
   concluded by :mod:`receiver.remediation.failure` instead).

Plan, run and verify touch no transaction; they share the job's session (one adapter per
system, one allowlist check, see :mod:`receiver.remediation.session`).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from playbooks.base import Plan, Risk, RunResult
from receiver.config import Config
from receiver.errors import PlaybookError, StoreError
from receiver.incidents.states import ACTIVE
from receiver.people import approvals
from receiver.remediation import guards
from receiver.remediation.session import JobSession, event, log, short
from receiver.remediation.verification import run_checks
from receiver.store import Store, UnitOfWork
from receiver.store.jobs import Job

LOCK_RETRY = timedelta(milliseconds=250)


# -- in the claim's transaction ------------------------------------------------------------

def claim(uow: UnitOfWork, *, worker: str, now: datetime, lease: timedelta) -> Job | None:
    """Lease the oldest runnable job to ``worker``; None when there is none."""
    job = uow.jobs.claim(worker=worker, now=now, lease=lease)
    if job is not None:
        event(uow, job, "job_claimed",
              f"job #{job.id} claimed by {worker} (attempt {job.attempts})",
              {"worker": worker, "attempt": job.attempts}, at=now)
    return job


def refuse(uow: UnitOfWork, job: Job, reason: str, *, owner: str, now: datetime) -> None:
    """The job cannot run as configured: ``refused``, with the reason."""
    if uow.jobs.move(job.id, "refused", now=now, owner=owner, reason=reason[:1000]):
        event(uow, job, "job_refused", f"job #{job.id} refused: {reason}", {"reason": reason},
              at=now)


def check(uow: UnitOfWork, s: JobSession, *, owner: str, now: datetime,
          config: Config) -> guards.Decision | None:
    """Re-check every guard (see :mod:`receiver.remediation.guards`); a guard that blocks
    ends the job ``blocked`` here (None). Otherwise the decision: pass, dry run, approval."""
    decision = guards.evaluate(uow, job=s.job, rule=s.rule, config=config, targets=s.targets,
                               high_risk=s.risk is Risk.HIGH, always_approve=s.always_approve,
                               now=now)
    if decision.outcome != "block":
        return decision
    if uow.jobs.move(s.job.id, "blocked", now=now, owner=owner, reason=decision.reason,
                     targets=s.targets):
        event(uow, s.job, "job_blocked",
              f"job #{s.job.id} blocked by {decision.guard}: {decision.reason}",
              {"guard": decision.guard, **decision.detail}, at=now)
    return None


def lock(uow: UnitOfWork, s: JobSession, *, owner: str, now: datetime, lease: timedelta,
         poll_interval: timedelta) -> bool:
    """Lock every target for this job. If another job holds one, put this job back in the
    queue until that lock is released (said once on the timeline). Under the lock, the
    cooldown is checked again, so two jobs cannot both pass it and act in turn. True when
    the job holds its targets."""
    job = s.job
    busy = uow.targets.acquire(job.id, s.targets, now=now, until=now + lease)
    if busy:
        # Woken when the holder releases the lock (release_locks); the timed retry is only
        # a fallback, like the poll interval everywhere else.
        fallback = max(LOCK_RETRY, poll_interval)
        delay = fallback * (1 + random.random())  # noqa: S311 - jitter, not security
        wait = uow.jobs.wait_for_target(job.id, busy[0], owner=owner, now=now,
                                        retry_at=now + delay, attempts=job.attempts - 1)
        if wait.job is not None and wait.new:  # said once, not at every retry
            how = "is promised to" if wait.holder and wait.holder.promised else "is held by"
            event(uow, job, "job_waiting",
                  f"job #{job.id} waits: {busy[0]} {how} job "
                  f"#{wait.holder.job_id if wait.holder else '?'}", {"targets": busy}, at=now)
        return False
    blocked = guards.cooldown_block(uow, job=job, rule=s.rule, targets=s.targets, now=now)
    if blocked is not None:
        uow.targets.release(job.id)
        if uow.jobs.move(job.id, "blocked", now=now, owner=owner, reason=blocked.reason,
                         targets=s.targets):
            event(uow, job, "job_blocked", f"job #{job.id} blocked by cooldown: {blocked.reason}",
                  {"guard": "cooldown", **blocked.detail}, at=now)
        return False
    return True


# -- outside any transaction ----------------------------------------------------------------

def plan(s: JobSession) -> Plan:
    """What the playbook would do (no side effect); PlaybookError or OSError when it
    cannot say."""
    return s.playbook.plan(s.params, s.ctx)


def run(s: JobSession, *, store: Store, owner: str, lease: timedelta,
        clock: Callable[[], datetime],
        act: Callable[[], RunResult] | None = None) -> tuple[RunResult | None, str | None]:
    """Run the playbook (or ``act``: an undo's) while a heartbeat renews the job's lease
    (and its target locks); the result, or why it failed."""
    done = threading.Event()

    def beat() -> None:
        interval = max(lease.total_seconds() / 3, 0.2)
        while not done.wait(interval):
            try:
                with store.unit() as uow:
                    uow.jobs.extend_lease(s.job.id, owner, clock() + lease)
            except StoreError as exc:
                log.warning("lease_renewal_failed", job_id=s.job.id, error=str(exc))

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    try:
        return (act() if act is not None else s.playbook.run(s.params, s.ctx)), None
    except (PlaybookError, OSError, TimeoutError) as exc:
        return None, short(exc)
    finally:
        done.set()
        t.join()


def verify(s: JobSession, result: RunResult, *, config: Config,
           sleep: Callable[[float], None]) -> tuple[list[dict[str, Any]], bool]:
    """The playbook's own check, then the rule's (HTTP, PromQL, alert resolved): every
    check as recorded, and whether all passed."""
    checks: list[dict[str, Any]] = []
    ok = True
    try:
        own = s.playbook.verify(s.params, s.ctx, result)
    except (PlaybookError, OSError) as exc:
        own = None
        checks.append({"check": "playbook", "ok": False, "summary": short(exc)})
        ok = False
    if own is not None:
        checks.append({"check": "playbook", **own.as_dict()})
        ok = ok and own.ok
    if ok:
        spec = s.rule.verify
        labels = s.alert_text()[0] if spec.http is not None or spec.promql is not None else {}
        for c in run_checks(spec, labels, s.resolved, sleep, hosts=config.targets.http,
                            adapters=s.adapters):
            checks.append(c.as_dict())
            ok = ok and c.ok
    return checks, ok


# -- their own transactions -----------------------------------------------------------------

def park(uow: UnitOfWork, s: JobSession, decision: guards.Decision, p: Plan, *, owner: str,
         now: datetime, config: Config) -> None:
    """Dry run (the plan recorded, nothing done) or awaiting approval (an approval opened)."""
    job = s.job
    state = "dry_run" if decision.outcome == "dry_run" else "awaiting_approval"
    moved = uow.jobs.move(job.id, state, now=now, owner=owner, reason=decision.reason,
                          plan=p.as_dict(), targets=s.targets, risk=s.risk.value,
                          idempotent=int(s.playbook.idempotent))
    if moved is None:
        return
    if state == "awaiting_approval":
        approvals.open_approval(uow, config, moved, now)
    kind = "job_dry_run" if state == "dry_run" else "job_awaiting_approval"
    event(uow, job, kind,
          f"job #{job.id} {state.replace('_', ' ')}: {p.summary} ({decision.reason})",
          {"guard": decision.guard, "plan": p.as_dict()}, at=now)


def start(uow: UnitOfWork, s: JobSession, p: Plan, *, owner: str, now: datetime,
          lease: timedelta) -> bool:
    """The point of no return: act only while this worker still holds a live lease (a
    sweep may have interrupted and re-queued the job while it was planned). Records the
    plan and targets, ``job_started``, and the incident ``mitigating``. False: do not act."""
    job, rule = s.job, s.rule
    uow.incidents.lock(job.incident_id)
    started = uow.jobs.start(
        job.id, owner, now=now, until=now + lease,
        fields={"plan": p.as_dict(), "targets": s.targets, "risk": s.risk.value,
                "idempotent": int(s.playbook.idempotent),
                "max_attempts": rule.on_failure.retries + 1
                if rule.on_failure.action == "retry" else 1},
    )
    if started is None:
        current = uow.jobs.get(job.id)
        if current is None or current.state != "running":
            uow.targets.release(job.id)
        log.warning("job_lease_lost", job_id=job.id, worker=owner,
                    state=current.state if current else None)
        return False
    uow.targets.record_acted(job.id, rule.name, s.targets, now)
    event(uow, job, "job_started", f"job #{job.id} running {s.playbook.name}: {p.summary}",
          {"plan": p.as_dict(), "targets": s.targets}, at=now)
    uow.incidents.transition(job.incident_id, "mitigating", now=now, actor="system",
                             reason=f"job #{job.id} started", job_id=job.id,
                             only_from=frozenset({"open", "acknowledged"}))
    return True


def conclude(uow: UnitOfWork, s: JobSession, result: RunResult, checks: list[dict[str, Any]],
             *, owner: str, now: datetime) -> None:
    """``succeeded``: the targets freed, the checks and the result on the timeline, the
    incident ``mitigated``."""
    job = s.job
    payload = {**result.as_dict(), "verification": checks}
    uow.incidents.lock(job.incident_id)
    if not uow.jobs.move(job.id, "succeeded", now=now, owner=owner, result=payload):
        return
    uow.targets.release(job.id)
    if checks:
        event(uow, job, "verification_passed",
              f"job #{job.id} verified: " + "; ".join(c["summary"] for c in checks),
              {"checks": checks}, at=now)
    event(uow, job, "job_succeeded", f"job #{job.id} succeeded: {result.summary}",
          {"result": payload}, at=now)
    uow.incidents.transition(job.incident_id, "mitigated", now=now, actor="system",
                             reason=f"job #{job.id} succeeded", job_id=job.id,
                             only_from=ACTIVE)
