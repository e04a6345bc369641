"""Remediation jobs: claim with a lease, conditional state changes, waits for a target.

Every state change is ``UPDATE ... WHERE state IN (<allowed from>) RETURNING``: two workers
(or a worker and a human) racing on one job cannot both win, and the caller checks the row it
gets back. A ``running`` job belongs to the worker holding its lease: only that worker moves
it (``owner=``), apart from the sweep of an expired lease (:func:`interrupt`). A decision
moves a job only from ``awaiting_approval`` (:func:`decide`), never a claimed or running one.

Target locks and the targets jobs acted on are in :mod:`receiver.store.locks`, runtime
controls in :mod:`receiver.store.controls` (their functions are re-exported here).
:class:`JobRepository` (``uow.jobs``) returns :class:`Job` records.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from receiver.errors import InvalidTransition
from receiver.remediation import job_states
from receiver.remediation.job_states import FINAL, JOB_TRANSITIONS
from receiver.store.controls import (  # noqa: F401 - the controls' statements, re-exported
    controls,
    get_control,
    set_control,
    set_control_unless,
)
from receiver.store.db import Row, Tx
from receiver.store.job_records import JOB_COLUMNS, ExpiredLease, Job, TargetWait
from receiver.store.locks import (  # noqa: F401 - the targets' statements, re-exported
    CHANNEL,
    Holder,
    acquire_locks,
    actions_since,
    extend_locks,
    first_waiting,
    holder,
    last_action,
    record_targets,
    release_locks,
    targets_since,
    wake_workers,
)
from receiver.store.repository import Repository, maybe, records

# The job state table lives in receiver.remediation.job_states; this module applies it.

PROMISED_RETRY = timedelta(milliseconds=500)
"""The timed retry of a job that found its target free but promised to an older waiting job
(see :func:`acquire_locks`): that one normally takes it at once and wakes this one when it
releases it; the retry covers a promised job that a guard stops before it takes the lock."""

def get(tx: Tx, job_id: int) -> Row | None:
    return tx.fetchone(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id})  # noqa: S608 - constant columns


def claim(tx: Tx, *, worker: str, now: datetime, lease: timedelta) -> Row | None:
    """Take the oldest runnable job and lease it to ``worker``.

    A job waiting for a target (:func:`wait_for_target`) is not runnable while another job
    holds a live lock on it, nor while another job that waited for it is claimed and on its
    way to take it: when a release wakes every job waiting for the target, the oldest is
    claimed and takes it (:func:`acquire_locks` keeps it for that one) and the others stay
    queued until the next release, instead of each being claimed and put back again."""
    pick = tx.lock_row("jobs", "state = 'queued' AND (not_before IS NULL OR not_before <= :now)"
                       " AND NOT EXISTS (SELECT 1 FROM target_locks l"
                       " WHERE l.target = jobs.waiting_for AND l.expires_at >= :now)"
                       " AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.state = 'running'"
                       " AND o.waiting_for = jobs.waiting_for)",
                       {"now": now}, order_by="id", limit=1, skip_locked=True)
    if pick is None:
        return None
    return tx.fetchone(
        f"""UPDATE jobs SET state = 'running', lease_owner = :worker, lease_expires_at = :until,
                   attempts = attempts + 1, started_at = COALESCE(started_at, :now),
                   updated_at = :now
             WHERE id = :id AND state = 'queued' RETURNING {JOB_COLUMNS}""",  # noqa: S608 - constant columns
        {"id": pick["id"], "worker": worker, "until": now + lease, "now": now},
    )


def next_due(tx: Tx) -> datetime | None:
    row = tx.fetchone("SELECT MIN(not_before) AS due FROM jobs WHERE state = 'queued'")
    due = row["due"] if row else None
    return datetime.fromisoformat(due) if isinstance(due, str) else due


def move(
    tx: Tx,
    job_id: int,
    to: str,
    *,
    now: datetime,
    owner: str | None = None,
    from_states: Collection[str] | None = None,
    **fields: Any,
) -> Row | None:
    """Move a job to ``to`` if it is in one of ``from_states`` (default: every state the
    table allows ``to`` from), in one conditional UPDATE.

    A ``running`` job moves only with ``owner``, the worker holding its lease; without
    ``owner`` a running job is never moved. Extra ``fields`` are set too (JSON fields given as
    Python values). Returns the updated row, or None if the job was not in a state it may
    move from (another actor got there first): callers check it.
    """
    sources = list(job_states.sources(to) if from_states is None else from_states)
    bad = [s for s in sources if to not in JOB_TRANSITIONS.get(s, frozenset())]
    if bad:
        raise InvalidTransition(f"a job cannot go from {', '.join(sorted(bad))} to {to}")
    if owner is None:
        sources = [s for s in sources if s != "running"]
    if not sources:
        return None
    sets = ["state = :to", "updated_at = :now"]
    params: dict[str, Any] = {"id": job_id, "to": to, "now": now}
    for name, value in fields.items():
        sets.append(f"{name} = :f_{name}")
        params[f"f_{name}"] = tx.json(value) if name in {"plan", "result", "targets"} else value
    if to in FINAL or to in ("awaiting_approval", "queued", "interrupted"):
        sets += ["lease_owner = NULL", "lease_expires_at = NULL"]
    if to in FINAL:
        sets.append("finished_at = :now")
    marks = ", ".join(f":s{i}" for i in range(len(sources)))
    params.update({f"s{i}": s for i, s in enumerate(sources)})
    owner_clause = ""
    if owner is not None:
        owner_clause = " AND lease_owner = :owner"
        params["owner"] = owner
    return tx.fetchone(
        f"UPDATE jobs SET {', '.join(sets)} WHERE id = :id AND state IN ({marks}){owner_clause}"  # noqa: S608 - fixed names
        f" RETURNING {JOB_COLUMNS}",
        params,
    )


def lock(tx: Tx, job_id: int) -> Row | None:
    """Read a job under its row lock (PostgreSQL ``FOR NO KEY UPDATE``; SQLite's BEGIN
    IMMEDIATE serialises writers already), so that its state cannot change until this
    transaction ends. Take the incident's lock first (lock order: incident, job, approval)."""
    return tx.lock_row("jobs", "id = :id", {"id": job_id}, columns=JOB_COLUMNS,
                       strength="no key update")


def start(tx: Tx, job_id: int, owner: str, *, now: datetime, until: datetime,
          fields: dict[str, Any]) -> Row | None:
    """The last check before a playbook acts: the job is still ``running`` under ``owner``'s
    live lease. Renews the lease to ``until`` and sets ``fields``, in one conditional UPDATE;
    None when the lease was lost (swept, re-queued, maybe claimed by another worker): the
    caller must not act."""
    sets = ["lease_expires_at = :until", "updated_at = :now", "waiting_for = NULL"]
    params: dict[str, Any] = {"id": job_id, "owner": owner, "now": now, "until": until}
    for name, value in fields.items():
        sets.append(f"{name} = :f_{name}")
        params[f"f_{name}"] = tx.json(value) if name in {"plan", "result", "targets"} else value
    return tx.fetchone(
        f"UPDATE jobs SET {', '.join(sets)} WHERE id = :id AND state = 'running'"  # noqa: S608 - fixed names
        f" AND lease_owner = :owner AND lease_expires_at >= :now RETURNING {JOB_COLUMNS}",
        params,
    )


def extend_lease(tx: Tx, job_id: int, owner: str, until: datetime) -> bool:
    row = tx.fetchone(
        "UPDATE jobs SET lease_expires_at = :until WHERE id = :id AND state = 'running'"
        " AND lease_owner = :owner RETURNING id",
        {"id": job_id, "owner": owner, "until": until},
    )
    if row is not None:
        extend_locks(tx, job_id, until)
    return row is not None


def expired_leases(tx: Tx, now: datetime) -> list[Row]:
    """Running jobs whose worker stopped renewing the lease (candidates; not locked)."""
    return tx.fetchall(
        "SELECT id, incident_id FROM jobs WHERE state = 'running' AND lease_expires_at < :now",
        {"now": now},
    )


def interrupt(tx: Tx, job_id: int, now: datetime) -> Row | None:
    """Mark one expired job ``interrupted`` (once, whoever sweeps) and free its targets."""
    row = tx.fetchone(
        f"""UPDATE jobs SET state = 'interrupted', lease_owner = NULL, lease_expires_at = NULL,
                   updated_at = :now
             WHERE id = :id AND state = 'running' AND lease_expires_at < :now
         RETURNING {JOB_COLUMNS}""",  # noqa: S608 - constant columns
        {"id": job_id, "now": now},
    )
    if row is not None:
        release_locks(tx, job_id)
    return row


def wait_for_target(tx: Tx, job_id: int, target: str, *, owner: str, now: datetime,
                    retry_at: datetime, attempts: int) -> tuple[Row | None, Row | None, bool]:
    """Put the owner's running job back in the queue to wait for ``target``, locked by
    another job: :func:`release_locks` makes it runnable the moment that lock is released;
    ``retry_at`` (capped at the lock's expiry, when a holder that died loses it) is only the
    fallback. Returns the job (None when the lease was lost meanwhile), the ``job_id`` of
    the job that holds the target or, with ``promised``, waited for it longer (None if
    neither does any more) and
    whether the job was not already waiting for this target (a wait is said once on the
    timeline, not at every retry)."""
    held = holder(tx, target)
    before = tx.fetchone("SELECT waiting_for FROM jobs WHERE id = :id", {"id": job_id})
    if held is not None:
        retry_at = min(retry_at, max(held["expires_at"], now))
    else:  # promised to an older waiting job, which takes it at once unless a guard stops it
        first = first_waiting(tx, target, before=job_id)
        held = {**first, "promised": True} if first is not None else None
        retry_at = min(retry_at, now + PROMISED_RETRY)
    row = move(tx, job_id, "queued", now=now, owner=owner, not_before=retry_at,
               attempts=attempts, waiting_for=target)
    new = row is not None and (before is None or before["waiting_for"] != target)
    return row, held, new


def failures_since(tx: Tx, rule: str, since: datetime) -> int:
    row = tx.fetchone(
        "SELECT COUNT(*) AS n FROM jobs WHERE rule = :rule AND state IN ('failed', 'escalated')"
        " AND finished_at >= :since",
        {"rule": rule, "since": since},
    )
    return int(row["n"]) if row else 0


def enqueue_followup(
    tx: Tx, parent: Row, *, rule: str, playbook: str, params: dict[str, Any], now: datetime
) -> Row | None:
    """A job chained from ``parent`` (on_failure next rule); unique per parent and rule."""
    return insert(tx, incident_id=parent["incident_id"], alert_id=parent["alert_id"], rule=rule,
                  playbook=playbook, dedupe_key=f"after-job:{parent['id']}", params=params,
                  severity=parent["severity"], now=now, parent_job_id=parent["id"],
                  chain_depth=parent["chain_depth"] + 1)


def insert(
    tx: Tx, *, incident_id: int, alert_id: int | None, rule: str, playbook: str,
    dedupe_key: str, params: dict[str, Any], severity: str, now: datetime,
    parent_job_id: int | None = None, chain_depth: int = 0,
) -> Row | None:
    """Queue a job; None when the rule already has one with this ``dedupe_key`` ((rule,
    dedupe_key) is unique: an alert episode, an incident or a parent job gets one job per
    rule). The caller wakes the workers (:func:`wake_workers`) once it has queued all."""
    return tx.fetchone(
        f"""INSERT INTO jobs (incident_id, alert_id, rule, playbook, dedupe_key, params, state,
                             severity, parent_job_id, chain_depth, created_at, updated_at)
           VALUES (:inc, :alert, :rule, :playbook, :dedupe, :params, 'queued', :sev, :parent,
                   :depth, :now, :now)
           ON CONFLICT (rule, dedupe_key) DO NOTHING RETURNING {JOB_COLUMNS}""",  # noqa: S608 - constant columns
        {"inc": incident_id, "alert": alert_id, "rule": rule, "playbook": playbook,
         "dedupe": dedupe_key, "params": tx.json(params), "sev": severity,
         "parent": parent_job_id, "depth": chain_depth, "now": now},
    )


def decide(
    tx: Tx, job_id: int, *, approve: bool, actor: str, reason: str, now: datetime,
    origin: dict[str, Any] | None = None,
) -> Row | None:
    """Approve (back to the queue, guards re-checked when it runs) or deny a parked job.
    Single use: only a job still ``awaiting_approval`` changes."""
    waiting = ("awaiting_approval",)
    if approve:
        return move(tx, job_id, "queued", now=now, from_states=waiting, approved_at=now)
    return move(tx, job_id, "denied", now=now, from_states=waiting,
                reason=f"denied by {actor}: {reason}"[:1000])


def list_for_incident(tx: Tx, incident_id: int) -> list[Row]:
    return tx.fetchall(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE incident_id = :id ORDER BY id",  # noqa: S608 - constant columns
        {"id": incident_id},
    )


class JobRepository(Repository):
    """Remediation jobs as :class:`Job` records: claim, conditional moves, leases, waits.
    Target locks are ``uow.targets`` (:mod:`receiver.store.locks`), controls
    ``uow.controls`` (:mod:`receiver.store.controls`)."""

    def get(self, job_id: int) -> Job | None:
        return maybe(Job, get(self.tx, job_id))

    def lock(self, job_id: int) -> Job | None:
        """The job under its row lock (take the incident's first, see :func:`lock`)."""
        return maybe(Job, lock(self.tx, job_id))

    def claim(self, *, worker: str, now: datetime, lease: timedelta) -> Job | None:
        """The oldest runnable job, leased to ``worker`` (see :func:`claim`)."""
        return maybe(Job, claim(self.tx, worker=worker, now=now, lease=lease))

    def next_due(self) -> datetime | None:
        """When the earliest queued job becomes runnable (a retry, a lock wait)."""
        return next_due(self.tx)

    def move(self, job_id: int, to: str, *, now: datetime, owner: str | None = None,
             from_states: Collection[str] | None = None, **fields: Any) -> Job | None:
        """The job moved to ``to`` by one conditional UPDATE (see :func:`move`); None when
        it was not in a state it may move from."""
        return maybe(Job, move(self.tx, job_id, to, now=now, owner=owner,
                               from_states=from_states, **fields))

    def start(self, job_id: int, owner: str, *, now: datetime, until: datetime,
              fields: dict[str, Any]) -> Job | None:
        """The last check before a playbook acts (see :func:`start`); None: do not act."""
        return maybe(Job, start(self.tx, job_id, owner, now=now, until=until, fields=fields))

    def extend_lease(self, job_id: int, owner: str, until: datetime) -> bool:
        return extend_lease(self.tx, job_id, owner, until)

    def expired_leases(self, now: datetime) -> list[ExpiredLease]:
        return records(ExpiredLease, expired_leases(self.tx, now))

    def interrupt(self, job_id: int, now: datetime) -> Job | None:
        """Mark one expired job ``interrupted`` (once, whoever sweeps) and free its targets."""
        return maybe(Job, interrupt(self.tx, job_id, now))

    def wait_for_target(self, job_id: int, target: str, *, owner: str, now: datetime,
                        retry_at: datetime, attempts: int) -> TargetWait:
        """Put the owner's running job back in the queue to wait for ``target`` (see
        :func:`wait_for_target`)."""
        row, held, new = wait_for_target(self.tx, job_id, target, owner=owner, now=now,
                                         retry_at=retry_at, attempts=attempts)
        who = None if held is None else Holder(int(held["job_id"]), bool(held.get("promised")))
        return TargetWait(maybe(Job, row), who, new)

    def failures_since(self, rule: str, since: datetime) -> int:
        return failures_since(self.tx, rule, since)

    def enqueue_followup(self, parent: Job, *, rule: str, playbook: str,
                         params: dict[str, Any], now: datetime) -> Job | None:
        """A job chained from ``parent`` (on_failure next rule); unique per parent and rule."""
        return maybe(Job, insert(
            self.tx, incident_id=parent.incident_id, alert_id=parent.alert_id, rule=rule,
            playbook=playbook, dedupe_key=f"after-job:{parent.id}", params=params,
            severity=parent.severity, now=now, parent_job_id=parent.id,
            chain_depth=parent.chain_depth + 1))

    def insert(self, *, incident_id: int, alert_id: int | None, rule: str, playbook: str,
               dedupe_key: str, params: dict[str, Any], severity: str, now: datetime,
               parent_job_id: int | None = None, chain_depth: int = 0) -> Job | None:
        """Queue a job; None when the rule already has one with this ``dedupe_key``."""
        return maybe(Job, insert(self.tx, incident_id=incident_id, alert_id=alert_id,
                                 rule=rule, playbook=playbook, dedupe_key=dedupe_key,
                                 params=params, severity=severity, now=now,
                                 parent_job_id=parent_job_id, chain_depth=chain_depth))

    def decide(self, job_id: int, *, approve: bool, actor: str, reason: str,
               now: datetime) -> Job | None:
        """Approve (back to the queue) or deny a parked job, once (see :func:`decide`)."""
        return maybe(Job, decide(self.tx, job_id, approve=approve, actor=actor, reason=reason,
                                 now=now))

    def for_incident(self, incident_id: int) -> list[Job]:
        return records(Job, list_for_incident(self.tx, incident_id))

    def wake_workers(self) -> None:
        """Wake the workers' claim loops when this unit of work commits."""
        wake_workers(self.tx)
