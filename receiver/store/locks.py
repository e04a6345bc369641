"""Targets: the per-target locks jobs hold while they act, and what jobs have acted on.

A target (``container:web1``, ``redis:cache/0``) is locked by one job at a time
(``target_locks``, primary key on the target); a released target goes to the jobs that
waited for it (``jobs.waiting_for``) in their order. ``job_targets`` records each target a
job acted on, for cooldowns, rate budgets and blast radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository

CHANNEL = "remediator_jobs"
"""What the workers listen on (:meth:`receiver.store.db.Database.listen`) to claim a job
as soon as one may be runnable."""


@dataclass(frozen=True)
class Holder:
    """Who keeps a target from a job: the job holding its lock, or (``promised``) an older
    job that waited for it longer."""

    job_id: int
    promised: bool = False


def acquire_locks(
    tx: Tx, job_id: int, targets: list[str], *, now: datetime, until: datetime
) -> list[str]:
    """Lock every target for the job; return the targets held by another job, or promised
    to an older job waiting for them (then none are taken): a released target goes to the
    jobs that waited for it in their order, not to whichever job asks first."""
    busy = []
    for target in sorted(targets):
        if first_waiting(tx, target, before=job_id) is not None:
            busy.append(target)
            continue
        row = tx.fetchone(
            """INSERT INTO target_locks (target, job_id, expires_at) VALUES (:t, :job, :until)
               ON CONFLICT (target) DO UPDATE SET job_id = excluded.job_id,
                                                  expires_at = excluded.expires_at
                WHERE target_locks.expires_at < :now OR target_locks.job_id = excluded.job_id
               RETURNING job_id""",
            {"t": target, "job": job_id, "until": until, "now": now},
        )
        if row is None:
            busy.append(target)
    if busy:
        release_locks(tx, job_id)
    return busy


def first_waiting(tx: Tx, target: str, *, before: int) -> Row | None:
    """The oldest job older than ``before`` waiting for ``target`` (queued, or claimed and
    not yet holding it)."""
    return tx.fetchone(
        "SELECT id AS job_id FROM jobs WHERE waiting_for = :t AND id < :job"
        " AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
        {"t": target, "job": before},
    )


def holder(tx: Tx, target: str) -> Row | None:
    """The lock on ``target`` (``job_id``, ``expires_at``), if any."""
    return tx.fetchone("SELECT job_id, expires_at FROM target_locks WHERE target = :t",
                       {"t": target})


def release_locks(tx: Tx, job_id: int) -> None:
    """Free the job's targets, and make the queued jobs waiting for one of them (see
    :func:`receiver.store.jobs.wait_for_target`) runnable at once, and wake the workers at
    commit (:func:`wake_workers`).

    The locks are deleted first: a job that found one of them held and is still committing
    its wait holds that lock row (ON CONFLICT locks it), so on PostgreSQL the DELETE waits
    for it, and the UPDATE after it then sees the wait. A waiting job whose row another
    transaction holds is left alone (SKIP LOCKED): that is a worker claiming it, which
    locks its targets next and finds them free once this commits; waiting for its row here
    while it waits for a target this deleted would deadlock the two."""
    freed = tx.fetchall("DELETE FROM target_locks WHERE job_id = :id RETURNING target",
                        {"id": job_id})
    if not freed:
        return
    marks = ", ".join(f":t{i}" for i in range(len(freed)))
    waiting = tx.lock_rows("jobs", f"state = 'queued' AND waiting_for IN ({marks})",
                           {f"t{i}": row["target"] for i, row in enumerate(freed)},
                           skip_locked=True, strength="no key update")
    if not waiting:
        return
    ids = ", ".join(f":j{i}" for i in range(len(waiting)))
    tx.execute(f"UPDATE jobs SET not_before = NULL WHERE id IN ({ids})",  # noqa: S608 - placeholders only
               {f"j{i}": row["id"] for i, row in enumerate(waiting)})
    wake_workers(tx)


def extend_locks(tx: Tx, job_id: int, until: datetime) -> None:
    tx.execute("UPDATE target_locks SET expires_at = :until WHERE job_id = :id",
               {"id": job_id, "until": until})


def wake_workers(tx: Tx) -> None:
    """Wake the workers' claim loops when ``tx`` commits: it queued a job or made one
    runnable (see :meth:`Tx.notify`; the workers listen on :data:`CHANNEL`)."""
    tx.notify(CHANNEL)


def record_targets(tx: Tx, job_id: int, rule: str, targets: list[str], now: datetime) -> None:
    for target in targets:
        tx.execute(
            "INSERT INTO job_targets (job_id, rule, target, acted_at) VALUES (:j, :r, :t, :now)"
            " ON CONFLICT (job_id, target) DO NOTHING",
            {"j": job_id, "r": rule, "t": target, "now": now},
        )


def last_action(tx: Tx, rule: str, targets: list[str], exclude_job: int) -> datetime | None:
    if not targets:
        return None
    marks = ", ".join(f":t{i}" for i in range(len(targets)))
    params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(targets)}
    params.update({"rule": rule, "job": exclude_job})
    row = tx.fetchone(
        f"SELECT MAX(acted_at) AS last_at FROM job_targets WHERE rule = :rule"  # noqa: S608 - placeholders only
        f" AND target IN ({marks}) AND job_id <> :job",
        params,
    )
    return row["last_at"] if row else None


def actions_since(tx: Tx, since: datetime, rule: str | None = None) -> int:
    """Jobs that acted (touched at least one target) since ``since``, for rate budgets."""
    extra = " AND rule = :rule" if rule is not None else ""
    row = tx.fetchone(
        f"SELECT COUNT(DISTINCT job_id) AS n FROM job_targets WHERE acted_at >= :since{extra}",  # noqa: S608 - fixed fragment
        {"since": since, "rule": rule} if rule is not None else {"since": since},
    )
    return int(row["n"]) if row else 0


def targets_since(tx: Tx, since: datetime, rule: str | None = None) -> int:
    extra = " AND rule = :rule" if rule is not None else ""
    row = tx.fetchone(
        f"SELECT COUNT(DISTINCT target) AS n FROM job_targets WHERE acted_at >= :since{extra}",  # noqa: S608 - fixed fragment
        {"since": since, "rule": rule} if rule is not None else {"since": since},
    )
    return int(row["n"]) if row else 0


class TargetRepository(Repository):
    """Target locks (take, release, wake the jobs waiting) and the targets jobs acted on."""

    def acquire(self, job_id: int, targets: list[str], *, now: datetime,
                until: datetime) -> list[str]:
        """Lock every target for the job, or none: the targets that another job holds or
        was promised (see :func:`acquire_locks`)."""
        return acquire_locks(self.tx, job_id, targets, now=now, until=until)

    def release(self, job_id: int) -> None:
        release_locks(self.tx, job_id)

    def wake_workers(self) -> None:
        wake_workers(self.tx)

    def record_acted(self, job_id: int, rule: str, targets: list[str], now: datetime) -> None:
        record_targets(self.tx, job_id, rule, targets, now)

    def last_action(self, rule: str, targets: list[str], *, exclude_job: int) -> datetime | None:
        return last_action(self.tx, rule, targets, exclude_job)

    def actions_since(self, since: datetime, rule: str | None = None) -> int:
        return actions_since(self.tx, since, rule)

    def targets_since(self, since: datetime, rule: str | None = None) -> int:
        return targets_since(self.tx, since, rule)
