"""Approval decisions: who may decide, N distinct approvers, single use, expiry.

The same rules apply wherever a decision comes from (the approval page, the API, the CLI):

- only a job that is still ``awaiting_approval`` with a ``pending`` approval can be decided;
- when the rule names groups, the approver must be in one of them;
- one vote per approver: the same person cannot approve twice towards N;
- one deny ends it; the N-th distinct approve re-queues the job (guards are re-checked
  when it runs);
- an approval past its expiry is ``expired`` and escalates, and the job ends ``expired``.

Concurrent decisions (several people, replicas or gunicorn workers at the same instant) are
serialised by row locks taken before anything is read: the incident, then the job, then the
approval (the lock order of every transaction that touches jobs). The one that comes second
reads the state the first one left, so it is refused ``not_waiting`` with who decided and
when, and its vote is rolled back with it. Every change is a conditional update whose result
is checked; a decision moves a job only from ``awaiting_approval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from receiver.config import Config
from receiver.errors import DecisionError
from receiver.people import roster
from receiver.store import Store, UnitOfWork
from receiver.store.approvals import Approval, Vote
from receiver.store.jobs import Job

if TYPE_CHECKING:
    from playbooks.base import Playbook

__all__ = ["DecisionError", "decide_job", "expire_due", "open_approval", "refuse",
           "required_approvers"]


def required_approvers(
    config: Config, rule_name: str, playbook_name: str,
    registry: Mapping[str, Playbook[Any]] | None = None,
) -> tuple[int, list[str]]:
    """How many distinct approvers a job of ``rule_name`` running ``playbook_name`` needs,
    and from which groups: the rule's ``approval.approvers`` when it names a count, else its
    playbook's ``default_approvers`` (two for restore_database), looked up in ``registry``
    (default: the built-in ones)."""
    rule = config.rule(rule_name)
    if rule is None:
        return 1, []
    n = rule.approval.approvers
    if "approvers" not in rule.approval.model_fields_set:
        if registry is None:
            from playbooks import REGISTRY  # deferred: playbooks import the adapters

            registry = REGISTRY
        playbook = registry.get(playbook_name)
        if playbook is not None:
            n = max(n, playbook.default_approvers)
    return n, list(rule.approval.groups)


def open_approval(uow: UnitOfWork, config: Config, job: Job, now: datetime) -> Approval | None:
    """Open (or open again) the pending approval of a job just parked for it."""
    rule = config.rule(job.rule)
    expires = now + (rule.approval.expires if rule else timedelta(minutes=30))
    n, groups = required_approvers(config, job.rule, job.playbook)
    return uow.approvals.open(job_id=job.id, incident_id=job.incident_id, required=n,
                              groups=groups, now=now, expires_at=expires)


def _audit(uow: UnitOfWork, job: Job, kind: str, actor: str, message: str,
           detail: dict[str, Any], origin: dict[str, Any] | None, now: datetime) -> None:
    uow.events.record(incident_id=job.incident_id, at=now, kind=kind, actor=actor,
                      message=message, detail=detail, job_id=job.id, origin=origin)


def refuse(store: Store, job_id: int, user: str, code: str, message: str, now: datetime,
           origin: dict[str, Any] | None) -> None:
    """Record a refused decision attempt in the audit log (its own transaction)."""
    with store.unit() as uow:
        job = uow.jobs.get(job_id)
        uow.audit.append(at=now, actor=f"user:{user}", action="approval.refused",
                         subject=f"job:{job_id}", incident_id=job.incident_id if job else None,
                         details={"code": code, "message": message}, origin=origin)


def decide_job(
    store: Store,
    config: Config,
    job_id: int,
    *,
    approve: bool,
    user: str,
    reason: str,
    now: datetime,
    origin: dict[str, Any] | None = None,
) -> Job:
    """Record one person's decision; return the job after it. Refusals are audited (in a
    transaction of their own, as the refused decision's is rolled back)."""
    origin = origin or {}
    try:
        with store.unit() as uow:
            return _decide(uow, config, job_id, approve, user, reason, now, origin)
    except DecisionError as exc:
        refuse(store, job_id, user, exc.code, str(exc), now, origin)
        raise


def _not_waiting(job: Job, approval: Approval | None) -> DecisionError:
    who = f" by {approval.decided_by} at {approval.decided_at.isoformat()}" if (
        approval is not None and approval.decided_by and approval.decided_at) else ""
    state = approval.state if approval is not None and approval.state != "pending" \
        else job.state
    return DecisionError("not_waiting",
                         f"job {job.id} is no longer waiting for approval: {state}{who}")


def _decide(uow: UnitOfWork, config: Config, job_id: int, approve: bool, user: str,
            reason: str, now: datetime, origin: dict[str, Any]) -> Job:
    found = uow.jobs.get(job_id)
    if found is None:
        raise DecisionError("not_found", f"no job {job_id}")
    # Lock first, then read: a decision running at the same time waits here and then sees
    # the state this one leaves behind.
    uow.incidents.lock(found.incident_id)
    job = uow.jobs.lock(job_id)
    approval = uow.approvals.lock_for_job(job_id)
    if job is None:
        raise DecisionError("not_found", f"no job {job_id}")
    if job.state != "awaiting_approval" or approval is None or approval.state != "pending":
        raise _not_waiting(job, approval)
    if approval.expires_at <= now:
        raise DecisionError("expired", f"the approval for job {job_id} expired at "
                            f"{approval.expires_at.isoformat()}")
    groups = approval.groups or []
    if groups and not _in_groups(uow, config, user, groups, job, now):
        raise DecisionError("not_allowed",
                            f"{user} is not in an approving group ({', '.join(groups)})")
    votes = uow.approvals.votes(approval.id)
    _one_account_one_vote(votes, user, origin)
    decision = "approve" if approve else "deny"
    if not uow.approvals.add_vote(approval.id, user, decision, reason, now, origin):
        raise DecisionError("already_voted", f"{user} has already decided on job {job_id}")
    actor = f"user:{user}"
    if not approve:
        closed = _close(uow, job, approval, "denied", user=user, reason=reason, now=now)
        _audit(uow, job, "job_denied", actor, f"job #{job_id} denied by {user}: {reason}",
               {"reason": reason}, origin, now)
        return closed
    approves = [v for v in uow.approvals.votes(approval.id) if v.decision == "approve"]
    _audit(uow, job, "job_approved", actor,
           f"job #{job_id} approved by {user} ({len(approves)}/{approval.required})",
           {"approvals": len(approves), "required": approval.required, "reason": reason},
           origin, now)
    if len(approves) < approval.required:
        return job
    closed = _close(uow, job, approval, "approved", user=user, reason=reason, now=now)
    uow.jobs.wake_workers()
    return closed


def _in_groups(uow: UnitOfWork, config: Config, user: str, groups: list[str], job: Job,
               now: datetime) -> bool:
    """Whether ``user`` may approve for ``groups``: a member of one of them, or on duty now
    for an ``oncall:<role>`` group (the role's backup too once the incident has gone
    unacknowledged for ``oncall.backup_after``)."""
    if config.people.groups_of(user) & set(groups):
        return True
    if not any(g.startswith(roster.ROLE_GROUP_PREFIX) for g in groups):
        return False
    incident = uow.incidents.get(job.incident_id)
    return roster.in_any(config, user, groups, now, uow.oncall.overrides(live_at=now),
                         opened_at=incident.opened_at if incident else None,
                         acknowledged_at=incident.acknowledged_at if incident else None)


def _one_account_one_vote(votes: list[Vote], user: str, origin: dict[str, Any]) -> None:
    """A vote cast from the command line counts for the OS account that cast it: one that
    already voted on this approval as another person (its own mapping, then someone else's
    token) is refused. Checked under the approval's row lock, so two votes at once from one
    account cannot both pass."""
    if origin.get("via") != "cli" or not origin.get("os_user"):
        return
    for vote in votes:
        cast = vote.origin or {}
        if (cast.get("via") == "cli" and cast.get("os_user") == origin["os_user"]
                and cast.get("host") == origin.get("host") and vote.approver != user):
            raise DecisionError(
                "same_account", f"the OS account {origin['os_user']!r} already voted on this "
                f"job as {vote.approver}; one account counts as one approver")


def _close(uow: UnitOfWork, job: Job, approval: Approval, state: str, *, user: str,
           reason: str, now: datetime) -> Job:
    """Close the approval and move the job, both conditional and both checked: if either
    finds the other actor's state, the decision is refused and its transaction rolled back
    (with the vote it recorded)."""
    if uow.approvals.close(approval.id, state, by=user, now=now) is None:
        raise _not_waiting(job, uow.approvals.get(approval.id))
    moved = uow.jobs.decide(job.id, approve=state == "approved", actor=user, reason=reason,
                            now=now)
    if moved is None:
        raise _not_waiting(uow.jobs.get(job.id) or job, None)
    return moved


def expire_due(store: Store, now: datetime) -> list[int]:
    """Expire pending approvals past their deadline: job ``expired``, incident escalated.

    One transaction per approval, with the locks of a decision (incident, job, approval)
    taken before the state is read again, so that an expiry and a last-second decision
    never both win."""
    with store.unit(write=False) as uow:
        due = uow.approvals.expired(now)
    done = []
    for cand in due:
        try:
            with store.unit() as uow:
                if _expire(uow, cand, now):
                    done.append(cand.job_id)
        except _Raced:
            continue
    return done


class _Raced(Exception):
    """Rolls back one expiry whose rows another actor changed meanwhile."""


def _expire(uow: UnitOfWork, cand: Approval, now: datetime) -> bool:
    """Expire one approval and its job; False when it was decided (or re-parked) meanwhile."""
    uow.incidents.lock(cand.incident_id)
    job = uow.jobs.lock(cand.job_id)
    approval = uow.approvals.lock_for_job(cand.job_id)
    if (job is None or approval is None or approval.state != "pending"
            or approval.expires_at >= now or job.state != "awaiting_approval"):
        return False
    if uow.jobs.move(job.id, "expired", now=now, from_states=("awaiting_approval",),
                     reason="approval expired") is None:
        raise _Raced
    if uow.approvals.close(approval.id, "expired", by="system", now=now) is None:
        raise _Raced
    _audit(uow, job, "job_expired", "system",
           f"job #{job.id}: approval expired unanswered", {}, None, now)
    _audit(uow, job, "escalated", "system",
           f"escalated to a human: approval for job #{job.id} expired", {}, None, now)
    return True
