"""Undo jobs: a job that takes back what another job did (``jobs.undoes_job_id``).

An undo is an ordinary row of ``jobs`` (same pipeline, same states) with ``undoes_job_id``
set; a partial unique index keeps a job from being undone twice, whoever asks at the same
instant (a rule's timer on two workers, a person on the page). :class:`UndoRepository`
(``uow.undos``) returns :class:`receiver.store.jobs.Job` records.
"""

from __future__ import annotations

from datetime import datetime

from receiver.store.db import Row, Tx
from receiver.store.jobs import JOB_COLUMNS, Job
from receiver.store.repository import Repository, maybe, records

_J_COLUMNS = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))


def undo_key(job_id: int) -> str:
    """The ``dedupe_key`` of the undo of job ``job_id``."""
    return f"undo-of-job:{job_id}"


def enqueue(tx: Tx, original: Job, *, now: datetime) -> Row | None:
    """Queue the undo of ``original``: same incident, alert, rule, playbook, params and
    severity; None when the job already has an undo (or the rule a job of that key)."""
    return tx.fetchone(
        f"""INSERT INTO jobs (incident_id, alert_id, rule, playbook, dedupe_key, params, state,
                             severity, parent_job_id, chain_depth, undoes_job_id, created_at,
                             updated_at)
           VALUES (:inc, :alert, :rule, :playbook, :dedupe, :params, 'queued', :sev, :orig,
                   :depth, :orig, :now, :now)
           ON CONFLICT DO NOTHING RETURNING {JOB_COLUMNS}""",  # noqa: S608 - constant columns
        {"inc": original.incident_id, "alert": original.alert_id, "rule": original.rule,
         "playbook": original.playbook, "dedupe": undo_key(original.id),
         "params": tx.json(original.params), "sev": original.severity, "orig": original.id,
         "depth": original.chain_depth, "now": now},
    )


def undo_of(tx: Tx, job_id: int) -> Row | None:
    return tx.fetchone(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE undoes_job_id = :id",  # noqa: S608 - constant columns
        {"id": job_id})


def due_after_resolved(tx: Tx, rule: str, *, resolved_before: datetime,
                       resolved_since: datetime, limit: int) -> list[Row]:
    """Succeeded jobs of ``rule`` (not undos themselves, not undone yet) whose incident is
    resolved (or closed since) and was resolved between ``resolved_since`` and
    ``resolved_before``."""
    return tx.fetchall(
        f"""SELECT {_J_COLUMNS} FROM jobs j JOIN incidents i ON i.id = j.incident_id
             WHERE j.rule = :rule AND j.state = 'succeeded' AND j.undoes_job_id IS NULL
               AND i.state IN ('resolved', 'closed') AND i.resolved_at <= :before
               AND i.resolved_at >= :since
               AND NOT EXISTS (SELECT 1 FROM jobs u WHERE u.undoes_job_id = j.id)
             ORDER BY j.id LIMIT :limit""",  # noqa: S608 - constant columns
        {"rule": rule, "before": resolved_before, "since": resolved_since, "limit": limit},
    )


class UndoRepository(Repository):
    """Undo jobs as :class:`Job` records."""

    def enqueue(self, original: Job, *, now: datetime) -> Job | None:
        """The undo of ``original``, queued; None when it already has one (see
        :func:`enqueue`). The caller wakes the workers."""
        return maybe(Job, enqueue(self.tx, original, now=now))

    def of(self, job_id: int) -> Job | None:
        """The undo of job ``job_id``, if it has one."""
        return maybe(Job, undo_of(self.tx, job_id))

    def due_after_resolved(self, rule: str, *, resolved_before: datetime,
                           resolved_since: datetime, limit: int = 50) -> list[Job]:
        """Jobs of ``rule`` whose incident has been resolved long enough (see
        :func:`due_after_resolved`)."""
        return records(Job, due_after_resolved(self.tx, rule, resolved_before=resolved_before,
                                               resolved_since=resolved_since, limit=limit))
