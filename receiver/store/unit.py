"""The unit of work: one transaction, and one repository per aggregate working inside it.

    with store.unit() as uow:              # a write transaction (write=False: read only)
        job = uow.jobs.lock(job_id)        # a frozen Job record, or None
        uow.incidents.transition(...)
        uow.events.record(...)

Everything the product says to the database goes through a unit of work: nothing outside
``receiver/store/`` opens a transaction or writes SQL. Repositories return frozen records,
never rows; row locks, advisory locks and notifications are capabilities of the transaction
(:class:`~receiver.store.db.Tx`) that the repositories use. The unit commits when the
``with`` block ends normally and rolls back when it raises.
"""

from __future__ import annotations

from functools import cached_property

from receiver.store.approvals import ApprovalRepository
from receiver.store.audit import AuditRepository
from receiver.store.db import Tx
from receiver.store.events import EventRepository
from receiver.store.evidence import EvidenceRepository
from receiver.store.incidents import IncidentRepository
from receiver.store.ingest import NotificationRepository
from receiver.store.jobs import JobRepository
from receiver.store.outbox import OutboxRepository
from receiver.store.people import SessionRepository
from receiver.store.reports import ReportRepository


class UnitOfWork:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    @property
    def dialect(self) -> str:
        return self.tx.dialect

    @cached_property
    def incidents(self) -> IncidentRepository:
        return IncidentRepository(self.tx)

    @cached_property
    def notifications(self) -> NotificationRepository:
        return NotificationRepository(self.tx)

    @cached_property
    def jobs(self) -> JobRepository:
        return JobRepository(self.tx)

    @cached_property
    def approvals(self) -> ApprovalRepository:
        return ApprovalRepository(self.tx)

    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.tx)

    @cached_property
    def outbox(self) -> OutboxRepository:
        return OutboxRepository(self.tx)

    @cached_property
    def evidence(self) -> EvidenceRepository:
        return EvidenceRepository(self.tx)

    @cached_property
    def events(self) -> EventRepository:
        return EventRepository(self.tx)

    @cached_property
    def sessions(self) -> SessionRepository:
        return SessionRepository(self.tx)

    @cached_property
    def reports(self) -> ReportRepository:
        return ReportRepository(self.tx)
