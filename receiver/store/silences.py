"""Alertmanager silences made by remediation jobs: which Alertmanager, which silence, until
when, and when it was expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.errors import StoreError
from receiver.store.repository import Repository, maybe, record, records

_COLUMNS = "id, job_id, alertmanager, silence_id, created_at, ends_at, expired_at"
_ORPHAN_COLUMNS = ("s.id, s.job_id, s.alertmanager, s.silence_id, s.created_at, s.ends_at,"
                   " s.expired_at, j.incident_id")


@dataclass(frozen=True)
class JobSilence:
    id: int
    job_id: int
    alertmanager: str
    silence_id: str
    created_at: datetime
    ends_at: datetime
    expired_at: datetime | None


@dataclass(frozen=True)
class OrphanSilence(JobSilence):
    """An open silence whose job is no longer running, with the job's incident."""

    incident_id: int


class SilenceRepository(Repository):
    """One row per silence a job made in one Alertmanager."""

    def add(self, *, job_id: int, alertmanager: str, silence_id: str, created_at: datetime,
            ends_at: datetime) -> JobSilence:
        row = self.tx.fetchone(
            "INSERT INTO job_silences (job_id, alertmanager, silence_id, created_at, ends_at)"  # noqa: S608 - constant columns
            f" VALUES (:job, :am, :sid, :created, :ends) RETURNING {_COLUMNS}",
            {"job": job_id, "am": alertmanager, "sid": silence_id, "created": created_at,
             "ends": ends_at},
        )
        if row is None:
            raise StoreError("the silence was not written")
        return record(JobSilence, row)

    def of_job(self, job_id: int, *, open_only: bool = False) -> list[JobSilence]:
        """The job's silences, oldest first (only those not yet expired with ``open_only``)."""
        rows = self.tx.fetchall(
            f"SELECT {_COLUMNS} FROM job_silences WHERE job_id = :job"  # noqa: S608 - constant columns
            + (" AND expired_at IS NULL" if open_only else "") + " ORDER BY id",
            {"job": job_id},
        )
        return records(JobSilence, rows)

    def mark_expired(self, silence_row: int, *, now: datetime) -> JobSilence | None:
        """Record that the silence was expired; None when it already was (of two workers
        expiring one silence, one says so)."""
        row = self.tx.fetchone(
            "UPDATE job_silences SET expired_at = :now"  # noqa: S608 - constant columns
            f" WHERE id = :id AND expired_at IS NULL RETURNING {_COLUMNS}",
            {"id": silence_row, "now": now},
        )
        return maybe(JobSilence, row)

    def orphans(self, *, now: datetime, limit: int = 20) -> list[OrphanSilence]:
        """Open silences whose job is no longer running (its expiry failed, or its worker
        died), due to be tried (``retry_at`` unset or past), oldest first."""
        rows = self.tx.fetchall(
            f"SELECT {_ORPHAN_COLUMNS} FROM job_silences s JOIN jobs j ON j.id = s.job_id"  # noqa: S608 - constant columns
            " WHERE s.expired_at IS NULL AND j.state <> 'running'"
            " AND (s.retry_at IS NULL OR s.retry_at <= :now) ORDER BY s.id LIMIT :n",
            {"now": now, "n": limit},
        )
        return records(OrphanSilence, rows)

    def retry_later(self, silence_row: int, *, at: datetime) -> None:
        """Try expiring it again from ``at`` (Alertmanager could not be reached)."""
        self.tx.execute("UPDATE job_silences SET retry_at = :at WHERE id = :id",
                        {"id": silence_row, "at": at})
