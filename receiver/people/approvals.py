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
when, and its vote is rolled back with it. Every change is a conditional UPDATE whose result
is checked; a decision moves a job only from ``awaiting_approval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from receiver.config import Config
from receiver.errors import DecisionError
from receiver.store import Store, events
from receiver.store import approvals as approval_store
from receiver.store import incidents as incident_store
from receiver.store import jobs as job_store
from receiver.store.db import Row, Tx

if TYPE_CHECKING:
    from playbooks.base import Playbook


def required_approvers(
    config: Config, job: Row, registry: Mapping[str, Playbook[Any]] | None = None
) -> tuple[int, list[str]]:
    """How many distinct approvers a job needs, and from which groups: the rule's
    ``approval.approvers`` when it names a count, else its playbook's ``default_approvers``
    (two for restore_database), looked up in ``registry`` (default: the built-in ones)."""
    rule = config.rule(job["rule"])
    if rule is None:
        return 1, []
    n = rule.approval.approvers
    if "approvers" not in rule.approval.model_fields_set:
        if registry is None:
            from playbooks import REGISTRY  # deferred: playbooks import the adapters

            registry = REGISTRY
        playbook = registry.get(job["playbook"])
        if playbook is not None:
            n = max(n, playbook.default_approvers)
    return n, list(rule.approval.groups)


def open_approval(tx: Tx, config: Config, job: Row, now: datetime) -> Row | None:
    rule = config.rule(job["rule"])
    expires = now + (rule.approval.expires if rule else timedelta(minutes=30))
    n, groups = required_approvers(config, job)
    return approval_store.create(tx, job=job, required=n, groups=groups, now=now,
                                 expires_at=expires)


def _audit(tx: Tx, job: Row, kind: str, actor: str, message: str, detail: dict[str, Any],
           origin: dict[str, Any] | None, now: datetime) -> None:
    events.record(tx, incident_id=job["incident_id"], at=now, kind=kind, actor=actor,
                  message=message, detail=detail, job_id=job["id"], origin=origin)


def refuse(store: Store, job_id: int, user: str, code: str, message: str, now: datetime,
           origin: dict[str, Any] | None) -> None:
    """Record a refused decision attempt in the audit log (its own transaction)."""
    from receiver.store import audit

    with store.db.transaction() as tx:
        job = job_store.get(tx, job_id)
        audit.append(tx, at=now, actor=f"user:{user}", action="approval.refused",
                     subject=f"job:{job_id}", incident_id=job["incident_id"] if job else None,
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
) -> Row:
    """Record one person's decision; return the job row after it. Refusals are audited."""
    origin = origin or {}
    try:
        with store.db.transaction() as tx:
            return _decide(tx, config, job_id, approve, user, reason, now, origin)
    except DecisionError as exc:
        refuse(store, job_id, user, exc.code, str(exc), now, origin)
        raise


def _not_waiting(job: Row, approval: Row | None) -> DecisionError:
    who = f" by {approval['decided_by']} at {approval['decided_at'].isoformat()}" if (
        approval is not None and approval["decided_by"] and approval["decided_at"]) else ""
    state = approval["state"] if approval is not None and approval["state"] != "pending" \
        else job["state"]
    return DecisionError("not_waiting",
                         f"job {job['id']} is no longer waiting for approval: {state}{who}")


def _decide(tx: Tx, config: Config, job_id: int, approve: bool, user: str, reason: str,
            now: datetime, origin: dict[str, Any]) -> Row:
    found = job_store.get(tx, job_id)
    if found is None:
        raise DecisionError("not_found", f"no job {job_id}")
    # Lock first, then read: a decision running at the same time waits here and then sees
    # the state this one leaves behind.
    incident_store.lock(tx, found["incident_id"])
    job = job_store.lock(tx, job_id)
    approval = approval_store.lock_for_job(tx, job_id)
    if job is None:
        raise DecisionError("not_found", f"no job {job_id}")
    if job["state"] != "awaiting_approval" or approval is None or approval["state"] != "pending":
        raise _not_waiting(job, approval)
    if approval["expires_at"] <= now:
        raise DecisionError("expired", f"the approval for job {job_id} expired at "
                            f"{approval['expires_at'].isoformat()}")
    groups = approval["groups"] or []
    if groups and not (config.people.groups_of(user) & set(groups)):
        raise DecisionError("not_allowed",
                            f"{user} is not in an approving group ({', '.join(groups)})")
    _one_account_one_vote(tx, approval, user, origin)
    decision = "approve" if approve else "deny"
    if not approval_store.add_vote(tx, approval["id"], user, decision, reason, now, origin):
        raise DecisionError("already_voted", f"{user} has already decided on job {job_id}")
    actor = f"user:{user}"
    if not approve:
        row = _close(tx, job, approval, "denied", user=user, reason=reason, now=now)
        _audit(tx, job, "job_denied", actor, f"job #{job_id} denied by {user}: {reason}",
               {"reason": reason}, origin, now)
        return row
    approves = [v for v in approval_store.votes(tx, approval["id"]) if v["decision"] == "approve"]
    _audit(tx, job, "job_approved", actor,
           f"job #{job_id} approved by {user} ({len(approves)}/{approval['required']})",
           {"approvals": len(approves), "required": approval["required"], "reason": reason},
           origin, now)
    if len(approves) < approval["required"]:
        return job
    row = _close(tx, job, approval, "approved", user=user, reason=reason, now=now)
    job_store.wake_workers(tx)
    return row


def _one_account_one_vote(tx: Tx, approval: Row, user: str, origin: dict[str, Any]) -> None:
    """A vote cast from the command line counts for the OS account that cast it: one that
    already voted on this approval as another person (its own mapping, then someone else's
    token) is refused. Checked under the approval's row lock, so two votes at once from one
    account cannot both pass."""
    if origin.get("via") != "cli" or not origin.get("os_user"):
        return
    for vote in approval_store.votes(tx, approval["id"]):
        cast = vote["origin"] or {}
        if (cast.get("via") == "cli" and cast.get("os_user") == origin["os_user"]
                and cast.get("host") == origin.get("host") and vote["approver"] != user):
            raise DecisionError(
                "same_account", f"the OS account {origin['os_user']!r} already voted on this "
                f"job as {vote['approver']}; one account counts as one approver")


def _close(tx: Tx, job: Row, approval: Row, state: str, *, user: str, reason: str,
           now: datetime) -> Row:
    """Close the approval and move the job, both conditional and both checked: if either
    finds the other actor's state, the decision is refused and its transaction rolled back
    (with the vote it recorded)."""
    closed = approval_store.close(tx, approval["id"], state, by=user, now=now)
    if closed is None:
        raise _not_waiting(job, approval_store.get(tx, approval["id"]))
    row = job_store.decide(tx, job["id"], approve=state == "approved", actor=user,
                           reason=reason, now=now)
    if row is None:
        current = job_store.get(tx, job["id"]) or job
        raise _not_waiting(current, None)
    return row


class _Raced(Exception):
    """Rolls back one expiry whose rows another actor changed meanwhile."""


def expire_due(store: Store, now: datetime) -> list[int]:
    """Expire pending approvals past their deadline: job ``expired``, incident escalated.

    One transaction per approval, with the locks of a decision (incident, job, approval)
    taken before the state is read again, so that an expiry and a last-second decision
    never both win."""
    with store.db.transaction(write=False) as tx:
        due = approval_store.expired(tx, now)
    done = []
    for cand in due:
        try:
            with store.db.transaction() as tx:
                incident_store.lock(tx, cand["incident_id"])
                job = job_store.lock(tx, cand["job_id"])
                approval = approval_store.lock_for_job(tx, cand["job_id"])
                if (job is None or approval is None or approval["state"] != "pending"
                        or approval["expires_at"] >= now
                        or job["state"] != "awaiting_approval"):
                    continue  # decided (or re-parked) meanwhile
                moved = job_store.move(tx, job["id"], "expired", now=now,
                                       from_states=("awaiting_approval",),
                                       reason="approval expired")
                if moved is None:
                    raise _Raced
                if approval_store.close(tx, approval["id"], "expired", by="system",
                                        now=now) is None:
                    raise _Raced
                done.append(job["id"])
                _audit(tx, job, "job_expired", "system",
                       f"job #{job['id']}: approval expired unanswered", {}, None, now)
                _audit(tx, job, "escalated", "system",
                       f"escalated to a human: approval for job #{job['id']} expired", {},
                       None, now)
        except _Raced:
            continue
    return done
