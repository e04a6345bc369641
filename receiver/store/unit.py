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
from receiver.store.autonomy import AutonomyRepository
from receiver.store.chat import ChatRepository
from receiver.store.controls import ControlRepository
from receiver.store.db import Tx
from receiver.store.events import EventRepository
from receiver.store.evidence import EvidenceRepository
from receiver.store.gamedays import GameDayRepository
from receiver.store.health import HealthRepository
from receiver.store.inbox import InboxRepository
from receiver.store.incidents import IncidentRepository
from receiver.store.ingest import NotificationRepository
from receiver.store.jobs import JobRepository
from receiver.store.locks import TargetRepository
from receiver.store.oncall import OncallRepository
from receiver.store.outbox import OutboxRepository
from receiver.store.people import SessionRepository
from receiver.store.reports import ReportRepository
from receiver.store.silences import SilenceRepository
from receiver.store.similar import SimilarRepository
from receiver.store.status import StatusRepository
from receiver.store.undos import UndoRepository


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
    def inbox(self) -> InboxRepository:
        return InboxRepository(self.tx)

    @cached_property
    def jobs(self) -> JobRepository:
        return JobRepository(self.tx)

    @cached_property
    def targets(self) -> TargetRepository:
        return TargetRepository(self.tx)

    @cached_property
    def controls(self) -> ControlRepository:
        return ControlRepository(self.tx)

    @cached_property
    def approvals(self) -> ApprovalRepository:
        return ApprovalRepository(self.tx)

    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.tx)

    @cached_property
    def oncall(self) -> OncallRepository:
        return OncallRepository(self.tx)

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

    @cached_property
    def health(self) -> HealthRepository:
        return HealthRepository(self.tx)

    @cached_property
    def status(self) -> StatusRepository:
        return StatusRepository(self.tx)

    @cached_property
    def chat(self) -> ChatRepository:
        return ChatRepository(self.tx)

    @cached_property
    def silences(self) -> SilenceRepository:
        return SilenceRepository(self.tx)

    @cached_property
    def gamedays(self) -> GameDayRepository:
        return GameDayRepository(self.tx)

    @cached_property
    def undos(self) -> UndoRepository:
        return UndoRepository(self.tx)

    @cached_property
    def autonomy(self) -> AutonomyRepository:
        return AutonomyRepository(self.tx)

    @cached_property
    def similar(self) -> SimilarRepository:
        return SimilarRepository(self.tx)
