"""Approval rows and votes. Single use and the two-person rule live in conditional updates
and a primary key on (approval, approver)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository, maybe, records

COLUMNS = ("id, job_id, incident_id, state, required, groups, created_at, expires_at,"
           " decided_at, decided_by")


def create(tx: Tx, *, job_id: int, incident_id: int, required: int, groups: list[str],
           now: datetime, expires_at: datetime) -> Row | None:
    return tx.fetchone(
        f"""INSERT INTO approvals (job_id, incident_id, state, required, groups, created_at,
                                  expires_at)
           VALUES (:job, :inc, 'pending', :req, :groups, :now, :exp)
           ON CONFLICT (job_id) DO UPDATE SET state = 'pending', required = excluded.required,
                  groups = excluded.groups, created_at = excluded.created_at,
                  expires_at = excluded.expires_at, decided_at = NULL, decided_by = NULL
           RETURNING {COLUMNS}""",  # noqa: S608 - constant columns
        {"job": job_id, "inc": incident_id, "req": required,
         "groups": tx.json(groups), "now": now, "exp": expires_at},
    )


def for_job(tx: Tx, job_id: int) -> Row | None:
    return tx.fetchone(f"SELECT {COLUMNS} FROM approvals WHERE job_id = :j", {"j": job_id})  # noqa: S608 - constant columns


def lock_for_job(tx: Tx, job_id: int) -> Row | None:
    """A job's approval read under its row lock (PostgreSQL ``FOR UPDATE``; SQLite's BEGIN
    IMMEDIATE serialises writers already): a concurrent decision waits here, then sees the
    state this one leaves. Lock order: incident, job, then approval."""
    return tx.lock_row("approvals", "job_id = :j", {"j": job_id}, columns=COLUMNS)


def get(tx: Tx, approval_id: int) -> Row | None:
    return tx.fetchone(f"SELECT {COLUMNS} FROM approvals WHERE id = :i", {"i": approval_id})  # noqa: S608 - constant columns


def votes(tx: Tx, approval_id: int) -> list[Row]:
    return tx.fetchall(
        "SELECT approver, decision, reason, at, origin FROM approval_votes"
        " WHERE approval_id = :a ORDER BY at, approver",
        {"a": approval_id},
    )


def add_vote(tx: Tx, approval_id: int, approver: str, decision: str, reason: str,
             now: datetime, origin: dict[str, Any]) -> bool:
    """False when this approver has already voted on this approval."""
    row = tx.fetchone(
        "INSERT INTO approval_votes (approval_id, approver, decision, reason, at, origin)"
        " VALUES (:a, :who, :d, :r, :now, :o) ON CONFLICT (approval_id, approver) DO NOTHING"
        " RETURNING approver",
        {"a": approval_id, "who": approver, "d": decision, "r": reason, "now": now,
         "o": tx.json(origin)},
    )
    return row is not None


def close(tx: Tx, approval_id: int, state: str, *, by: str, now: datetime) -> Row | None:
    """pending -> approved/denied/expired/cancelled, once."""
    return tx.fetchone(
        "UPDATE approvals SET state = :s, decided_at = :now, decided_by = :by"  # noqa: S608 - constant columns
        f" WHERE id = :i AND state = 'pending' RETURNING {COLUMNS}",
        {"i": approval_id, "s": state, "now": now, "by": by},
    )


def expired(tx: Tx, now: datetime) -> list[Row]:
    """Pending approvals past their deadline (candidates, not locked)."""
    return tx.fetchall(
        f"SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at < :now",  # noqa: S608 - constant columns
        {"now": now},
    )


@dataclass(frozen=True)
class Approval:
    """A job's approval: ``pending`` until decided or expired."""

    id: int
    job_id: int
    incident_id: int
    state: str
    required: int
    groups: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None


@dataclass(frozen=True)
class Vote:
    """One approver's decision on an approval, with where it came from."""

    approver: str
    decision: str  # approve | deny
    reason: str
    at: datetime
    origin: dict[str, Any]


class ApprovalRepository(Repository):
    """Approvals and their votes."""

    def for_job(self, job_id: int) -> Approval | None:
        """The job's approval, if it has one."""
        return maybe(Approval, for_job(self.tx, job_id))

    def open(self, *, job_id: int, incident_id: int, required: int, groups: list[str],
             now: datetime, expires_at: datetime) -> Approval | None:
        """A pending approval for the job (a re-parked job's approval opens again)."""
        return maybe(Approval, create(self.tx, job_id=job_id, incident_id=incident_id,
                                      required=required, groups=groups, now=now,
                                      expires_at=expires_at))

    def get(self, approval_id: int) -> Approval | None:
        return maybe(Approval, get(self.tx, approval_id))

    def lock_for_job(self, job_id: int) -> Approval | None:
        """The job's approval under its row lock (see :func:`lock_for_job`)."""
        return maybe(Approval, lock_for_job(self.tx, job_id))

    def votes(self, approval_id: int) -> list[Vote]:
        """The votes cast, oldest first."""
        return records(Vote, votes(self.tx, approval_id))

    def add_vote(self, approval_id: int, approver: str, decision: str, reason: str,
                 now: datetime, origin: dict[str, Any]) -> bool:
        """False when this approver has already voted on this approval."""
        return add_vote(self.tx, approval_id, approver, decision, reason, now, origin)

    def close(self, approval_id: int, state: str, *, by: str, now: datetime) -> Approval | None:
        """pending -> ``state``, once; None when it was no longer pending."""
        return maybe(Approval, close(self.tx, approval_id, state, by=by, now=now))

    def expired(self, now: datetime) -> list[Approval]:
        """Pending approvals past their deadline (candidates, not locked)."""
        return records(Approval, expired(self.tx, now))
