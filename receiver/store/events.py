"""Timeline events, each written with its audit entry in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.incidents import event_kinds as kinds
from receiver.incidents.event_kinds import EventKind
from receiver.store import audit
from receiver.store.db import Tx
from receiver.store.dialects import PerDialect
from receiver.store.repository import Repository

# What each kind causes besides its timeline row: one table, in receiver.incidents.event_kinds.
AUDITED = kinds.AUDITED
NOTIFY = kinds.NOTIFIED
DIAGNOSE = kinds.DIAGNOSED


_EVENT = ("INSERT INTO incident_events (incident_id, at, kind, actor, message, detail, job_id)"
          " VALUES (:inc, :at, :kind, :actor, :msg, :detail, :job)")
_OUTBOX = ("INSERT INTO outbox (kind, incident_id, job_id, message, detail, created_at)"
           " VALUES (:kind, :inc, :job, :msg, :detail, :at)")
_DIAGNOSE = ("INSERT INTO diagnostic_requests (incident_id, reason, requested_by, state,"
             " requested_at) VALUES (:inc, :reason, :actor, 'pending', :at)")


def _write_pg(tx: Tx, statements: list[str], params: dict[str, Any]) -> None:
    """The inserts as one statement (each but the last a data-modifying CTE)."""
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(statements[:-1]))
    tx.execute(f"WITH {ctes} {statements[-1]}" if ctes else statements[-1], params)


def _write_sqlite(tx: Tx, statements: list[str], params: dict[str, Any]) -> None:
    """One insert after the other (SQLite's CTEs do not write)."""
    for sql in statements:
        tx.execute(sql, params)


_WRITE = PerDialect(postgres=_write_pg, sqlite=_write_sqlite)


def record(
    tx: Tx,
    *,
    incident_id: int,
    at: datetime,
    kind: EventKind | str,
    actor: str,
    message: str,
    detail: dict[str, Any] | None = None,
    job_id: int | None = None,
    origin: dict[str, Any] | None = None,
) -> None:
    """Write one timeline event, and what its kind causes (see
    :mod:`receiver.incidents.event_kinds`): an outbox row, a diagnostics request, an audit
    entry. ValueError for an unknown kind."""
    parsed = EventKind.parse(kind)
    spec, kind = parsed.spec, parsed.value
    # The one place timeline text is written: configured secrets never reach it, nor the
    # outbox and audit entry made from it.
    message = tx.redactor.text(message)
    detail = tx.redactor(detail or {})
    statements = [_EVENT]
    if spec.notified:
        statements.append(_OUTBOX)
    if spec.diagnose:
        statements.append(_DIAGNOSE)
    _WRITE.of(tx)(tx, statements, {
        "inc": incident_id, "at": at, "kind": kind, "actor": actor, "msg": message,
        "detail": tx.json(detail), "job": job_id, "reason": f"incident {kind}"})
    if spec.audited:
        subject = f"job:{job_id}" if job_id is not None else f"incident:{incident_id}"
        audit.append(
            tx,
            at=at,
            actor=actor,
            action=f"{'job' if job_id is not None else 'incident'}.{kind.removeprefix('job_')}",
            subject=subject,
            incident_id=incident_id,
            details={"message": message, **detail},
            origin=origin,
        )


class EventRepository(Repository):
    """Timeline events and what their kind causes."""

    def record(
        self,
        *,
        incident_id: int,
        at: datetime,
        kind: EventKind | str,
        actor: str,
        message: str,
        detail: dict[str, Any] | None = None,
        job_id: int | None = None,
        origin: dict[str, Any] | None = None,
    ) -> None:
        """One timeline event and what its kind causes (see :func:`record`)."""
        record(self.tx, incident_id=incident_id, at=at, kind=kind, actor=actor,
               message=message, detail=detail, job_id=job_id, origin=origin)
