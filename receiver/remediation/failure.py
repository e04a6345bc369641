"""What happens when a job does not succeed: retry, the next rule, the circuit breaker,
escalation to a human; and what a swept lease or a crash leaves.

Each function works inside the caller's unit of work (one transaction), and moves the job
only while the worker named ``owner`` still holds it (a sweep moves only from exactly
``interrupted``): of two actors racing on one job, one concludes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from playbooks.base import Playbook, RunResult
from receiver.config import Config
from receiver.remediation import autonomy, guards
from receiver.remediation.rules import RemediationRule, TemplateError, render_rule_params
from receiver.remediation.session import JobSession, event
from receiver.store import UnitOfWork
from receiver.store.jobs import ExpiredLease, Job


@dataclass(frozen=True)
class Failure:
    """One failed attempt: why, and what to record with it."""

    why: str
    result: RunResult | None = None
    targets: list[str] | None = None
    payload: dict[str, Any] | None = None
    first: tuple[str, str, dict[str, Any]] | None = None
    """An event recorded just before the failure's own, on the same terms (verification)."""


def next_rule(config: Config, session: JobSession) -> tuple[RemediationRule | None,
                                                              dict[str, Any]]:
    """The rule to chain to when this job fails (``on_failure: next``), and its params
    rendered from the job's alert; read before the failure's transaction."""
    on = session.rule.on_failure
    nxt = config.rule(on.next_rule) if on.action == "next" and on.next_rule else None
    if nxt is None:
        return None, {}
    labels, annotations = session.alert_text()
    try:
        params: dict[str, Any] = render_rule_params(nxt, labels, annotations)
    except TemplateError:
        params = dict(nxt.params)  # the follow-up job is then refused with the reason
    return nxt, params


def fail(uow: UnitOfWork, session: JobSession, failure: Failure, *, owner: str, now: datetime,
         config: Config, chain: tuple[RemediationRule | None, dict[str, Any]]) -> None:
    """Conclude a failed attempt: retry later, or fail and chain the next rule, or fail and
    escalate; the rule's breaker is checked on each failure. ``chain`` is
    :func:`next_rule`'s answer."""
    job, rule = session.job, session.rule
    on = rule.on_failure
    why = failure.why
    uow.incidents.lock(job.incident_id)
    if failure.first is not None and failure.first[0] == "verification_failed":
        autonomy.verification_failed(uow, job, rule, now=now)  # earned autonomy's setback
    fields: dict[str, Any] = {"reason": why[:1000]}
    if failure.payload is not None or failure.result is not None:
        fields["result"] = failure.payload or (failure.result.as_dict() if failure.result
                                               else None)
    if failure.targets is not None:
        fields["targets"] = failure.targets
    if on.action == "retry" and job.attempts <= on.retries:
        delay = on.backoff * (2 ** (job.attempts - 1))
        if uow.jobs.move(job.id, "queued", now=now, owner=owner, not_before=now + delay,
                         **fields):
            uow.targets.release(job.id)
            _first(uow, job, failure, now)
            event(uow, job, "job_retry_scheduled",
                  f"job #{job.id} failed ({why}); retry {job.attempts}/{on.retries} in "
                  f"{int(delay.total_seconds())}s", {"error": why}, at=now)
        return
    if not uow.jobs.move(job.id, "failed", now=now, owner=owner, **fields):
        return
    uow.targets.release(job.id)
    _first(uow, job, failure, now)
    event(uow, job, "job_failed", f"job #{job.id} failed: {why}", {"error": why}, at=now)
    trip_breaker(uow, job, rule, now)
    nxt, params = chain
    if nxt is not None and job.chain_depth < config.remediation.max_chain_depth:
        follow = uow.jobs.enqueue_followup(job, rule=nxt.name, playbook=nxt.playbook,
                                           params=params, now=now)
        if follow is not None:
            event(uow, follow, "job_enqueued",
                  f"job #{follow.id} queued after job #{job.id} failed: rule {nxt.name} -> "
                  f"{nxt.playbook}", {"parent_job_id": job.id}, at=now)
            uow.jobs.wake_workers()
            return
    escalate(uow, job, f"remediation failed: {why}", now)


def _first(uow: UnitOfWork, job: Job, failure: Failure, now: datetime) -> None:
    if failure.first is not None:
        kind, message, detail = failure.first
        event(uow, job, kind, message, detail, at=now)


def trip_breaker(uow: UnitOfWork, job: Job, rule: RemediationRule, now: datetime) -> None:
    """K failures of a rule within its window open its breaker: further jobs of the rule
    need approval until someone resets it."""
    cb = rule.guards.circuit_breaker
    failures = uow.jobs.failures_since(rule.name, now - cb.window)
    if failures < cb.failures:
        return
    reason = f"{failures} failures within {cb.window}"
    # One conditional upsert: of several workers failing jobs of this rule at once, the
    # one that opens the breaker says so.
    if uow.controls.set_unless(guards.breaker(rule.name), "open", reason=reason,
                               actor="system", now=now):
        event(uow, job, "circuit_opened",
              f"circuit breaker opened for rule {rule.name}: {reason}; further jobs of this "
              "rule need approval until it is reset", {"rule": rule.name, "failures": failures},
              at=now)


def escalate(uow: UnitOfWork, job: Job, why: str, now: datetime) -> None:
    """Hand the incident back to people: the event (notified), and an incident that
    automation was mitigating returns to open, or to acknowledged if someone had."""
    event(uow, job, "escalated", f"escalated to a human: {why}", {"job_id": job.id},
          as_job=False, at=now)
    head = uow.incidents.head(job.incident_id)
    back = "acknowledged" if head is not None and head.acknowledged_at else "open"
    uow.incidents.transition(job.incident_id, back, now=now, actor="system",
                             reason=f"remediation by job #{job.id} did not succeed",
                             job_id=job.id, only_from=frozenset({"mitigating"}))


def crashed(uow: UnitOfWork, job: Job, reason: str, *, owner: str, now: datetime) -> None:
    """A bug ended the job: failed, its targets freed, escalated."""
    uow.incidents.lock(job.incident_id)
    if uow.jobs.move(job.id, "failed", now=now, owner=owner, reason=reason):
        uow.targets.release(job.id)
        event(uow, job, "job_failed", f"job #{job.id} failed: {reason}", {}, at=now)
        escalate(uow, job, f"job crashed: {reason}", now)


def interrupted(uow: UnitOfWork, cand: ExpiredLease, *, registry: dict[str, Playbook[Any]],
                now: datetime) -> bool:
    """Conclude one job whose lease ran out: re-queued if its playbook is idempotent (and
    it has attempts left), escalated otherwise. False when another sweeper got it first."""
    uow.incidents.lock(cand.incident_id)
    job = uow.jobs.interrupt(cand.id, now)
    if job is None:
        return False
    event(uow, job, "job_interrupted", f"job #{job.id} interrupted: its worker's lease ran out",
          {}, at=now)
    playbook = registry.get(job.playbook)
    idempotent = playbook is not None and playbook.idempotent
    # The row is ours since the conditional interrupt above: these moves are made from
    # exactly 'interrupted'.
    if idempotent and job.attempts < max(job.max_attempts, 1) + 2:
        if uow.jobs.move(job.id, "queued", now=now, from_states=("interrupted",)):
            event(uow, job, "job_requeued",
                  f"job #{job.id} re-queued: {job.playbook} is idempotent", {}, at=now)
    elif uow.jobs.move(job.id, "escalated", now=now, from_states=("interrupted",),
                       reason="interrupted; not safe to re-run automatically"):
        escalate(uow, job, f"interrupted while running; {job.playbook} is not idempotent, "
                 "a human must check", now)
    return True
