"""Diagnostic requests and the evidence they gather: claim with a lease, finish, list.

A request moves ``pending -> running -> done``. Claiming is a conditional UPDATE (after
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``),
so two workers never hold one request. A running request whose lease ran out (its worker died)
may be claimed again: checks are read-only, so running them twice is harmless, and only the
lease holder may mark the request done and store its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository, maybe, records


@dataclass(frozen=True)
class EvidenceRequest:
    """A request for an incident's diagnostics: ``pending -> running -> done``."""

    id: int
    incident_id: int
    reason: str
    requested_by: str
    state: str
    requested_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Evidence:
    """What one check found for an incident."""

    id: int
    incident_id: int
    request_id: int | None
    check_name: str
    kind: str
    ok: bool
    summary: str
    detail: dict[str, Any]
    started_at: datetime
    duration_ms: int

    @property
    def outcome(self) -> str:
        """``ok``, ``failed``, ``error``, ``timeout`` or ``refused`` (older evidence without
        one recorded: ``ok`` or ``error``)."""
        detail = self.detail if isinstance(self.detail, dict) else {}
        return str(detail.get("outcome", "ok" if self.ok else "error"))


@dataclass(frozen=True)
class IncidentAlert:
    """What a check is rendered with from one of the incident's alerts."""

    id: int
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]

REQUEST_COLUMNS = (
    "id, incident_id, reason, requested_by, state, requested_at, lease_owner,"
    " lease_expires_at, finished_at"
)
EVIDENCE_COLUMNS = (
    "id, incident_id, request_id, check_name, kind, ok, summary, detail, started_at, duration_ms"
)
_CLAIMABLE = "(state = 'pending' OR (state = 'running' AND lease_expires_at < :now))"


def claim(tx: Tx, *, worker: str, now: datetime, lease: timedelta) -> Row | None:
    """Lease the oldest claimable request to ``worker``; None when there is none."""
    pick = tx.lock_row("diagnostic_requests", _CLAIMABLE, {"now": now}, order_by="id", limit=1,
                       skip_locked=True)
    if pick is None:
        return None
    return tx.fetchone(
        f"UPDATE diagnostic_requests SET state = 'running', lease_owner = :worker,"  # noqa: S608 - fixed fragments
        f" lease_expires_at = :until WHERE id = :id AND {_CLAIMABLE}"
        f" RETURNING {REQUEST_COLUMNS}",
        {"id": pick["id"], "worker": worker, "until": now + lease, "now": now},
    )


def finish(tx: Tx, request_id: int, *, worker: str, now: datetime) -> bool:
    """Mark a request done, only while ``worker`` still holds its lease."""
    row = tx.fetchone(
        "UPDATE diagnostic_requests SET state = 'done', finished_at = :now, lease_expires_at = NULL"
        " WHERE id = :id AND state = 'running' AND lease_owner = :worker RETURNING id",
        {"id": request_id, "worker": worker, "now": now},
    )
    return row is not None


def pending_for(tx: Tx, incident_id: int) -> Row | None:
    """The incident's request that has not started yet, if any."""
    return tx.fetchone(
        f"SELECT {REQUEST_COLUMNS} FROM diagnostic_requests"  # noqa: S608 - constant columns
        " WHERE incident_id = :inc AND state = 'pending' ORDER BY id LIMIT 1",
        {"inc": incident_id},
    )


def insert_request(
    tx: Tx, *, incident_id: int, reason: str, requested_by: str, now: datetime
) -> int:
    row = tx.fetchone(
        "INSERT INTO diagnostic_requests (incident_id, reason, requested_by, state, requested_at)"
        " VALUES (:inc, :reason, :by, 'pending', :now) RETURNING id",
        {"inc": incident_id, "reason": reason, "by": requested_by, "now": now},
    )
    assert row is not None  # noqa: S101 - INSERT ... RETURNING always returns the row
    return int(row["id"])


def requests_for(tx: Tx, incident_id: int) -> list[Row]:
    return tx.fetchall(
        f"SELECT {REQUEST_COLUMNS} FROM diagnostic_requests"  # noqa: S608 - constant columns
        " WHERE incident_id = :inc ORDER BY id",
        {"inc": incident_id},
    )


def insert_evidence(
    tx: Tx,
    *,
    incident_id: int,
    request_id: int | None,
    check_name: str,
    kind: str,
    ok: bool,
    summary: str,
    detail: dict[str, Any],
    started_at: datetime,
    duration_ms: int,
) -> None:
    tx.execute(
        "INSERT INTO evidence (incident_id, request_id, check_name, kind, ok, summary, detail,"
        " started_at, duration_ms) VALUES (:inc, :req, :name, :kind, :ok, :summary, :detail,"
        " :started, :ms)",
        {"inc": incident_id, "req": request_id, "name": check_name, "kind": kind,
         "ok": int(ok), "summary": summary, "detail": tx.json(detail), "started": started_at,
         "ms": duration_ms},
    )


def evidence_for(tx: Tx, incident_id: int) -> list[Row]:
    rows = tx.fetchall(
        f"SELECT {EVIDENCE_COLUMNS} FROM evidence"  # noqa: S608 - constant columns
        " WHERE incident_id = :inc ORDER BY id",
        {"inc": incident_id},
    )
    for row in rows:
        row["ok"] = bool(row["ok"])
    return rows


def incident_alerts(tx: Tx, incident_id: int) -> list[Row] | None:
    """The labels, annotations and status of an incident's alerts, firing first; None when
    there is no such incident."""
    if tx.fetchone("SELECT id FROM incidents WHERE id = :id", {"id": incident_id}) is None:
        return None
    return tx.fetchall(
        "SELECT id, status, labels, annotations FROM alerts WHERE incident_id = :id"
        " ORDER BY CASE WHEN status = 'firing' THEN 0 ELSE 1 END, id",
        {"id": incident_id},
    )


class EvidenceRepository(Repository):
    """Diagnostics requests and the evidence they gathered."""

    def claim(self, *, worker: str, now: datetime, lease: timedelta) -> EvidenceRequest | None:
        """Lease the oldest claimable request to ``worker``; None when there is none."""
        return maybe(EvidenceRequest, claim(self.tx, worker=worker, now=now, lease=lease))

    def finish(self, request_id: int, *, worker: str, now: datetime) -> bool:
        """Mark a request done, only while ``worker`` still holds its lease."""
        return finish(self.tx, request_id, worker=worker, now=now)

    def pending_for(self, incident_id: int) -> EvidenceRequest | None:
        return maybe(EvidenceRequest, pending_for(self.tx, incident_id))

    def add_request(self, *, incident_id: int, reason: str, requested_by: str,
                    now: datetime) -> int:
        """A new pending request; its id."""
        return insert_request(self.tx, incident_id=incident_id, reason=reason,
                              requested_by=requested_by, now=now)

    def requests_for(self, incident_id: int) -> list[EvidenceRequest]:
        return records(EvidenceRequest, requests_for(self.tx, incident_id))

    def add(self, *, incident_id: int, request_id: int | None, check_name: str, kind: str,
            ok: bool, summary: str, detail: dict[str, Any], started_at: datetime,
            duration_ms: int) -> None:
        """Store what one check found."""
        insert_evidence(self.tx, incident_id=incident_id, request_id=request_id,
                        check_name=check_name, kind=kind, ok=ok, summary=summary,
                        detail=detail, started_at=started_at, duration_ms=duration_ms)

    def for_incident(self, incident_id: int) -> list[Evidence]:
        """The incident's evidence, oldest first."""
        return records(Evidence, evidence_for(self.tx, incident_id))

    def incident_alerts(self, incident_id: int) -> list[IncidentAlert] | None:
        """The incident's alerts, firing first; None when there is no such incident."""
        rows = incident_alerts(self.tx, incident_id)
        return None if rows is None else records(IncidentAlert, rows)
