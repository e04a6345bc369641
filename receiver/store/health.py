"""Operational health of a deployment, read for ``/metrics``: the notifications backlog,
jobs stuck past their lease or their approval's expiry, and the runtime controls.

Read-only aggregate queries over tables other aggregates own; each one is served by an
index those tables already have (``outbox_deliveries (state, next_attempt_at)``,
``jobs (state, lease_expires_at)``, ``approvals (state, expires_at)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.store.repository import Repository, record, records


@dataclass(frozen=True)
class Health:
    outbox_undelivered: int
    """Deliveries (message x channel) pending or being sent."""
    oldest_undelivered_at: datetime | None
    """When the oldest message with an undelivered delivery was written (None: no backlog)."""
    jobs_past_lease: int
    """Running jobs whose lease has expired and that no worker has taken back yet."""
    approvals_past_expiry: int
    """Pending approvals whose expiry has passed and that nothing has expired yet."""


@dataclass(frozen=True)
class Control:
    name: str
    value: str
    updated_at: datetime


_UNDELIVERED = """SELECT count(*) AS n, min(o.created_at) AS oldest_at
FROM outbox_deliveries d JOIN outbox o ON o.id = d.outbox_id
WHERE d.state IN ('pending', 'sending')"""

_PAST_LEASE = """SELECT count(*) AS n FROM jobs
WHERE state = 'running' AND lease_expires_at < :now"""

_PAST_EXPIRY = """SELECT count(*) AS n FROM approvals
WHERE state = 'pending' AND expires_at < :now"""


class HealthRepository(Repository):
    """Figures about the deployment itself, for monitoring it."""

    def figures(self, *, now: datetime) -> Health:
        backlog = self.tx.fetchone(_UNDELIVERED) or {}
        lease = self.tx.fetchone(_PAST_LEASE, {"now": now}) or {}
        expiry = self.tx.fetchone(_PAST_EXPIRY, {"now": now}) or {}
        return record(Health, {
            "outbox_undelivered": int(backlog.get("n") or 0),
            "oldest_undelivered_at": backlog.get("oldest_at"),
            "jobs_past_lease": int(lease.get("n") or 0),
            "approvals_past_expiry": int(expiry.get("n") or 0),
        })

    def controls(self) -> list[Control]:
        """Every runtime control (kill switches, breakers, shadow mode), by name."""
        return records(Control, self.tx.fetchall(
            "SELECT name, value, updated_at FROM controls ORDER BY name"))
