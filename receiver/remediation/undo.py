"""Undo: a job of its own that takes back what another job did.

An undo job (``undoes_job_id`` set, see :mod:`receiver.store.undos`) has the rule, playbook,
params, incident and alert of the job it undoes, and goes through the same pipeline as any
job: claim and lease, guards, target locks, approval policy, audit and timeline. Where an
ordinary job plans and runs, it asks the playbook's ``undo_plan`` and ``undo`` with the
result the original job stored, then checks it with the playbook's own ``verify`` (the
rule's HTTP, PromQL and alert checks were about the action, not about taking it back).

It differs from an ordinary job in what it is for:

- the cooldown does not hold it (it takes an action back, it does not repeat it);
- it never moves the incident (no ``mitigating`` / ``mitigated``);
- a playbook that refuses (the system moved on since the run, a bound narrowed) ends it
  ``refused`` with the playbook's reason on the timeline; an undo that acts and fails ends
  ``failed`` and is escalated; an undo is never retried, chained or itself undone.

Who asks for one: a rule's ``undo: {when: verification_failed}`` (queued at once, then the
job's ``on_failure`` path goes on), ``undo: {when: resolved, after: 10m}`` (the worker's
chore :func:`run_due`, once the incident has been resolved that long), or a person
(``remediator undo``, the incident page, ``POST /api/v1/jobs/<id>/undo``) through
:func:`request`. A job is undone at most once (a unique index): a second request is refused
``already_undone`` (409). Every request, and every refused one of a person, is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from playbooks.base import Plan, Playbook, RunResult
from receiver.config import Config
from receiver.errors import ActionError, PlaybookError, TargetNotAllowed
from receiver.remediation import failure, steps
from receiver.remediation.guards import Decision
from receiver.remediation.session import JobSession, event, log, short
from receiver.store import Store, UnitOfWork
from receiver.store.jobs import Job

if TYPE_CHECKING:
    from receiver.remediation.worker import Worker

HORIZON = timedelta(days=1)
"""How long after ``after`` a resolved incident's jobs are still undone by their rule's
timer: a rule given ``undo`` later does not take back actions of long ago."""

UNDOABLE_STATES = frozenset({"succeeded", "failed", "escalated"})
"""States of a job whose action may be taken back (it ran; it may have failed verification)."""


# -- asking for an undo ---------------------------------------------------------------------

def _registry(registry: Mapping[str, Playbook[Any]] | None) -> Mapping[str, Playbook[Any]]:
    if registry is not None:
        return registry
    from playbooks import REGISTRY  # deferred: playbooks import the adapters

    return REGISTRY


def refusal(job: Job, registry: Mapping[str, Playbook[Any]] | None = None) -> str | None:
    """Why ``job`` cannot be undone (not counting an undo already queued), or None."""
    if job.undoes_job_id is not None:
        return f"job {job.id} is itself an undo (of job {job.undoes_job_id}); it is not undone"
    playbook = _registry(registry).get(job.playbook)
    if playbook is None or not playbook.undoable:
        return f"playbook {job.playbook} cannot be undone"
    if job.state not in UNDOABLE_STATES:
        return f"job {job.id} is {job.state}: only a job that acted can be undone"
    result = job.result or {}
    detail = result.get("detail") if isinstance(result.get("detail"), dict) else {}
    if not result.get("ok") or (detail or {}).get("dry_run"):
        return f"job {job.id} recorded no completed action to undo"
    return None


def _queued(uow: UnitOfWork, original: Job, undo: Job, *, actor: str, why: str, now: datetime,
            detail: dict[str, Any], origin: dict[str, Any] | None = None) -> None:
    uow.events.record(
        incident_id=original.incident_id, at=now, kind="undo_requested", actor=actor,
        message=f"undo of job #{original.id} ({original.playbook}) queued as job #{undo.id}: "
        f"{why}", detail={"undoes_job_id": original.id, "undo_job_id": undo.id, **detail},
        job_id=undo.id, origin=origin)
    uow.jobs.wake_workers()


def request(store: Store, job_id: int, *, user: str, reason: str, now: datetime,
            via: str, origin: dict[str, Any] | None = None,
            registry: Mapping[str, Playbook[Any]] | None = None) -> Job:
    """A person asks to undo job ``job_id``: the undo job, queued. ActionError when it is
    refused (``not_found`` 404, ``not_undoable`` and ``already_undone`` 409); a refusal of
    an existing job is audited in a transaction of its own."""
    reason = reason.strip()[:500]
    try:
        with store.unit() as uow:
            found = uow.jobs.get(job_id)
            if found is None:
                raise ActionError("not_found", f"no job {job_id}", 404)
            uow.incidents.lock(found.incident_id)  # lock order: incident, then job
            job = uow.jobs.lock(job_id) or found
            why = refusal(job, registry)
            if why is not None:
                raise ActionError("not_undoable", why)
            undo = uow.undos.enqueue(job, now=now)
            if undo is None:
                prior = uow.undos.of(job_id)
                raise ActionError("already_undone", f"job {job_id} is already undone by job "
                                  f"#{prior.id} ({prior.state})" if prior else
                                  f"job {job_id} already has an undo")
            _queued(uow, job, undo, actor=f"user:{user}",
                    why=f"asked by {user}" + (f": {reason}" if reason else ""), now=now,
                    detail={"when": "manual", "reason": reason, "via": via}, origin=origin)
            return undo
    except ActionError as exc:
        if exc.code != "not_found":
            _refused(store, job_id, user=user, exc=exc, now=now, via=via, origin=origin)
        raise


def _refused(store: Store, job_id: int, *, user: str, exc: ActionError, now: datetime,
             via: str, origin: dict[str, Any] | None) -> None:
    with store.unit() as uow:
        job = uow.jobs.get(job_id)
        if job is None:
            return
        uow.events.record(incident_id=job.incident_id, at=now, kind="undo_refused",
                          actor=f"user:{user}",
                          message=f"undo of job #{job_id} asked by {user} refused: {exc}",
                          detail={"undoes_job_id": job_id, "code": exc.code, "via": via},
                          job_id=job_id, origin=origin)


def after_verification_failed(store: Store, s: JobSession, *, now: datetime) -> Job | None:
    """The rule's ``undo: {when: verification_failed}``: queue the undo of the job whose
    verification just failed (before its failure is concluded: the undo waits for its
    targets). None when the rule does not ask, or the job already has one."""
    spec = s.rule.undo
    if spec is None or spec.when != "verification_failed" or s.job.undoes_job_id is not None:
        return None
    with store.unit() as uow:
        undo = uow.undos.enqueue(s.job, now=now)
        if undo is not None:
            _queued(uow, s.job, undo, actor="system", why="its verification failed", now=now,
                    detail={"when": "verification_failed"})
    return undo


def run_due(store: Store, config: Config, *, now: datetime) -> int:
    """The rules' ``undo: {when: resolved, after: D}``: queue the undo of each succeeded
    job of such a rule whose incident has been resolved for D (and not for more than
    D + :data:`HORIZON`). Safe from any number of workers at once (the unique index)."""
    queued = 0
    for rule in config.rules:
        spec = rule.undo
        if spec is None or spec.when != "resolved":
            continue
        with store.unit() as uow:
            due = uow.undos.due_after_resolved(rule.name, resolved_before=now - spec.after,
                                               resolved_since=now - spec.after - HORIZON)
            for job in due:
                undo = uow.undos.enqueue(job, now=now)
                if undo is not None:
                    queued += 1
                    _queued(uow, job, undo, actor="system",
                            why=f"the incident has been resolved for {spec.after}", now=now,
                            detail={"when": "resolved", "after_s": spec.after.total_seconds()})
    return queued


# -- running one ----------------------------------------------------------------------------

def _original_result(s: JobSession) -> RunResult:
    """The result the undone job stored (PlaybookError when there is none)."""
    undone = s.job.undoes_job_id
    with s.store.unit(write=False) as uow:
        original = uow.jobs.get(undone) if undone is not None else None
    if original is None or not original.result:
        raise PlaybookError(f"job #{undone} recorded no result to undo")
    return RunResult.from_dict(original.result)


def carry(w: Worker, s: JobSession, decision: Decision) -> None:
    """An undo job after its guards and locks: plan the undo, then park it (dry run,
    approval) or start it, undo, verify and conclude."""
    try:
        done = _original_result(s)
        plan = s.playbook.undo_plan(s.params, s.ctx, done)
    except (PlaybookError, TargetNotAllowed, OSError) as exc:
        with w.store.unit() as uow:
            _refuse(uow, s, short(exc), owner=w.id, now=w.clock())
        return
    if decision.outcome in ("dry_run", "approval"):
        with w.store.unit() as uow:
            steps.park(uow, s, decision, plan, owner=w.id, now=w.clock(), config=w.config)
        return
    with w.store.unit() as uow:
        if not _start(uow, s, plan, owner=w.id, now=w.clock(), lease=w.lease):
            return

    def act() -> RunResult:
        try:
            return s.playbook.undo(s.params, s.ctx, done)
        except TargetNotAllowed as exc:
            raise PlaybookError(f"target not allowed: {exc}") from exc

    result, error = steps.run(s, store=w.store, owner=w.id, lease=w.lease, clock=w.clock,
                              act=act)
    if error is not None or result is None or not result.ok:
        why = error or (result.summary if result else "no result")
        with w.store.unit() as uow:
            _fail(uow, s, why, result, owner=w.id, now=w.clock())
        return
    checks = _verify(s, result)
    bad = next((c for c in checks if not c["ok"]), None)
    with w.store.unit() as uow:
        if bad is not None:
            _fail(uow, s, f"verification failed: {bad['summary']}", result, owner=w.id,
                  now=w.clock(), checks=checks)
        else:
            _conclude(uow, s, result, checks, owner=w.id, now=w.clock())


def _verify(s: JobSession, result: RunResult) -> list[dict[str, Any]]:
    """The playbook's own check of what the undo left (nothing to check when it changed
    nothing)."""
    if result.detail.get("changed") is False:
        return []
    try:
        own = s.playbook.verify(s.params, s.ctx, result)
    except (PlaybookError, OSError) as exc:
        return [{"check": "playbook", "ok": False, "summary": short(exc)}]
    return [] if own is None else [{"check": "playbook", **own.as_dict()}]


def _what(s: JobSession) -> str:
    return f"undo of job #{s.job.undoes_job_id}"


def _refuse(uow: UnitOfWork, s: JobSession, why: str, *, owner: str, now: datetime) -> None:
    job = s.job
    if uow.jobs.move(job.id, "refused", now=now, owner=owner, reason=why[:1000],
                     targets=s.targets):
        uow.targets.release(job.id)
        event(uow, job, "job_refused", f"job #{job.id} ({_what(s)}) refused: {why}",
              {"reason": why, "undoes_job_id": job.undoes_job_id}, at=now)


def _start(uow: UnitOfWork, s: JobSession, p: Plan, *, owner: str, now: datetime,
           lease: timedelta) -> bool:
    """As :func:`receiver.remediation.steps.start`, without moving the incident."""
    job = s.job
    started = uow.jobs.start(job.id, owner, now=now, until=now + lease,
                             fields={"plan": p.as_dict(), "targets": s.targets,
                                     "risk": s.risk.value,
                                     "idempotent": int(s.playbook.idempotent),
                                     "max_attempts": 1})
    if started is None:
        current = uow.jobs.get(job.id)
        if current is None or current.state != "running":
            uow.targets.release(job.id)
        log.warning("job_lease_lost", job_id=job.id, worker=owner,
                    state=current.state if current else None)
        return False
    uow.targets.record_acted(job.id, s.rule.name, s.targets, now)
    event(uow, job, "job_started", f"job #{job.id} running the {_what(s)} "
          f"({s.playbook.name}): {p.summary}",
          {"plan": p.as_dict(), "targets": s.targets, "undoes_job_id": job.undoes_job_id},
          at=now)
    return True


def _conclude(uow: UnitOfWork, s: JobSession, result: RunResult,
              checks: list[dict[str, Any]], *, owner: str, now: datetime) -> None:
    job = s.job
    payload = {**result.as_dict(), "verification": checks}
    if not uow.jobs.move(job.id, "succeeded", now=now, owner=owner, result=payload):
        return
    uow.targets.release(job.id)
    if checks:
        event(uow, job, "verification_passed",
              f"job #{job.id} verified: " + "; ".join(c["summary"] for c in checks),
              {"checks": checks}, at=now)
    event(uow, job, "job_succeeded", f"job #{job.id} ({_what(s)}) succeeded: {result.summary}",
          {"result": payload, "undoes_job_id": job.undoes_job_id}, at=now)


def _fail(uow: UnitOfWork, s: JobSession, why: str, result: RunResult | None, *, owner: str,
          now: datetime, checks: list[dict[str, Any]] | None = None) -> None:
    job = s.job
    payload = None if result is None else {**result.as_dict(), "verification": checks or []}
    uow.incidents.lock(job.incident_id)
    if not uow.jobs.move(job.id, "failed", now=now, owner=owner, reason=why[:1000],
                         result=payload):
        return
    uow.targets.release(job.id)
    if checks:
        event(uow, job, "verification_failed",
              f"job #{job.id} ({_what(s)}) verification failed: {why}", {"checks": checks},
              at=now)
    event(uow, job, "job_failed", f"job #{job.id} ({_what(s)}) failed: {why}",
          {"error": why, "undoes_job_id": job.undoes_job_id}, at=now)
    failure.escalate(uow, job, f"the {_what(s)} failed: {why}", now)
