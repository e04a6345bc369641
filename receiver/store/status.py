"""The public status page: public incidents, their updates, component overrides.

Every row here is written by an operator (the page form or the API), never by intake: an
incident is public only once an operator has written an update for it, under a title of
their own. Configured secrets are cut from titles and texts before they are stored. Each
change is audited in the transaction that makes it. A first update that waits for
approval is decided by a conditional ``UPDATE ... WHERE state = 'pending' AND
created_by <> :approver``, so it is decided once, and never by its own author.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store import audit
from receiver.store.db import Row
from receiver.store.repository import Repository, maybe, record, records

PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage",
                      "major_outage", "under_maintenance")


@dataclass(frozen=True)
class InternalIncident:
    """What an operator sees of an internal incident when writing about it (never shown on
    the public page: its title comes from the alert)."""

    id: int
    title: str
    severity: str
    state: str
    opened_at: datetime
    status_incident_id: int | None


@dataclass(frozen=True)
class StatusIncident:
    id: int
    incident_id: int
    title: str
    status: str
    severity: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    resolved_at: datetime | None
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusUpdate:
    id: int
    status_incident_id: int
    incident_id: int
    title: str
    status: str
    body: str
    state: str
    created_by: str
    created_at: datetime
    published_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None


@dataclass(frozen=True)
class ComponentOverride:
    component: str
    status: str
    reason: str
    set_by: str
    set_at: datetime


_SI = ("si.id, si.incident_id, si.title, si.status, si.severity, si.created_by, si.created_at,"
       " si.updated_at, si.published_at, si.resolved_at")
_SU = ("su.id, su.status_incident_id, si.incident_id, si.title, su.status, su.body, su.state,"
       " su.created_by, su.created_at, su.published_at, su.decided_by, su.decided_at")
_SU_FROM = "status_updates su JOIN status_incidents si ON si.id = su.status_incident_id"


class StatusRepository(Repository):
    """Public incidents, their updates and the components' overrides."""

    # -- the internal side (read by operators only) ----------------------------------------
    def internal(self, incident_id: int) -> InternalIncident | None:
        return maybe(InternalIncident, self.tx.fetchone(
            "SELECT i.id, i.title, i.severity, i.state, i.opened_at,"
            " si.id AS status_incident_id FROM incidents i"
            " LEFT JOIN status_incidents si ON si.incident_id = i.id WHERE i.id = :id",
            {"id": incident_id}))

    def candidates(self, limit: int = 50) -> list[InternalIncident]:
        """Internal incidents an operator may write about: the ones not closed, and the ones
        already public, newest first."""
        return records(InternalIncident, self.tx.fetchall(
            "SELECT i.id, i.title, i.severity, i.state, i.opened_at,"
            " si.id AS status_incident_id FROM incidents i"
            " LEFT JOIN status_incidents si ON si.incident_id = i.id"
            " WHERE i.state NOT IN ('closed', 'false_alarm')"
            " OR (si.id IS NOT NULL AND si.resolved_at IS NULL)"
            " ORDER BY i.id DESC LIMIT :limit",
            {"limit": limit}))

    def label_sets(self, incident_id: int) -> list[dict[str, str]]:
        """The incident's group labels and each of its alerts' labels, for the components'
        matchers (they decide where an incident is shown, never what is shown)."""
        row = self.tx.fetchone("SELECT group_labels FROM incidents WHERE id = :id",
                               {"id": incident_id})
        sets: list[dict[str, str]] = []
        if row is not None and isinstance(row["group_labels"], dict):
            sets.append({str(k): str(v) for k, v in row["group_labels"].items()})
        for r in self.tx.fetchall("SELECT labels FROM alerts WHERE incident_id = :id"
                                  " ORDER BY id", {"id": incident_id}):
            if isinstance(r["labels"], dict):
                sets.append({str(k): str(v) for k, v in r["labels"].items()})
        return sets

    # -- public incidents ------------------------------------------------------------------
    def _incident(self, row: Row | None) -> StatusIncident | None:
        if row is None:
            return None
        comps = tuple(r["component"] for r in self.tx.fetchall(
            "SELECT component FROM status_incident_components WHERE status_incident_id = :id"
            " ORDER BY component", {"id": row["id"]}))
        return record(StatusIncident, {**row, "components": comps})

    def for_incident(self, incident_id: int, *, lock: bool = False) -> StatusIncident | None:
        if lock:
            self.tx.lock_rows("status_incidents", "incident_id = :id", {"id": incident_id})
        return self._incident(self.tx.fetchone(
            f"SELECT {_SI} FROM status_incidents si WHERE si.incident_id = :id",  # noqa: S608 - constant columns
            {"id": incident_id}))

    def open(self, incident_id: int, *, title: str, severity: str, actor: str,
             now: datetime) -> StatusIncident:
        """The incident's public incident, created (unpublished) if it has none, and
        locked until the transaction ends."""
        self.tx.execute(
            "INSERT INTO status_incidents (incident_id, title, status, severity, created_by,"
            " created_at, updated_at) VALUES (:inc, :title, 'investigating', :sev, :actor,"
            " :now, :now) ON CONFLICT (incident_id) DO NOTHING",
            {"inc": incident_id, "title": self.tx.redactor.text(title), "sev": severity,
             "actor": actor, "now": now})
        found = self.for_incident(incident_id, lock=True)
        assert found is not None  # noqa: S101 - inserted or present just above
        return found

    def published(self, *, resolved_since: datetime) -> list[StatusIncident]:
        """Published incidents not resolved, or resolved at or after ``resolved_since``;
        newest first."""
        rows = self.tx.fetchall(
            f"SELECT {_SI} FROM status_incidents si WHERE si.published_at IS NOT NULL"  # noqa: S608 - constant columns
            " AND (si.resolved_at IS NULL OR si.resolved_at >= :since)"
            " ORDER BY si.published_at DESC, si.id DESC", {"since": resolved_since})
        return [i for i in (self._incident(r) for r in rows) if i is not None]

    # -- updates ---------------------------------------------------------------------------
    def update(self, update_id: int) -> StatusUpdate | None:
        return maybe(StatusUpdate, self.tx.fetchone(
            f"SELECT {_SU} FROM {_SU_FROM} WHERE su.id = :id", {"id": update_id}))  # noqa: S608 - constant fragments

    def updates(self, status_incident_id: int, *, published_only: bool = True
                ) -> list[StatusUpdate]:
        """An incident's updates, newest first."""
        where = " AND su.state = 'published'" if published_only else ""
        return records(StatusUpdate, self.tx.fetchall(
            f"SELECT {_SU} FROM {_SU_FROM} WHERE su.status_incident_id = :id{where}"  # noqa: S608 - constant fragments
            " ORDER BY su.created_at DESC, su.id DESC", {"id": status_incident_id}))

    def recent_updates(self, limit: int) -> list[StatusUpdate]:
        """The latest published updates of all incidents (the Atom feed), newest first."""
        return records(StatusUpdate, self.tx.fetchall(
            f"SELECT {_SU} FROM {_SU_FROM} WHERE su.state = 'published'"  # noqa: S608 - constant fragments
            " ORDER BY su.published_at DESC, su.id DESC LIMIT :limit", {"limit": limit}))

    def pending(self) -> list[StatusUpdate]:
        """Updates waiting for a second operator, oldest first."""
        return records(StatusUpdate, self.tx.fetchall(
            f"SELECT {_SU} FROM {_SU_FROM} WHERE su.state = 'pending'"  # noqa: S608 - constant fragments
            " ORDER BY su.created_at, su.id"))

    def add_update(self, incident: StatusIncident, *, status: str, body: str, state: str,
                   actor: str, now: datetime, origin: dict[str, Any] | None) -> StatusUpdate:
        """Write one update (``published`` or ``pending``), audited as
        ``status.update_published`` or ``status.update_submitted``."""
        row = self.tx.fetchone(
            "INSERT INTO status_updates (status_incident_id, status, body, state, created_by,"
            " created_at, published_at) VALUES (:si, :status, :body, :state, :actor, :now,"
            " :pub) RETURNING id",
            {"si": incident.id, "status": status, "body": self.tx.redactor.text(body),
             "state": state,
             "actor": actor, "now": now, "pub": now if state == "published" else None})
        assert row is not None  # noqa: S101 - INSERT ... RETURNING
        action = "status.update_published" if state == "published" else "status.update_submitted"
        self._audit(action, actor, now, incident.incident_id, origin,
                    {"update_id": row["id"], "status": status, "title": incident.title,
                     "body": body})
        found = self.update(int(row["id"]))
        assert found is not None  # noqa: S101 - inserted just above
        return found

    def retitle(self, incident: StatusIncident, title: str, now: datetime) -> None:
        self.tx.execute("UPDATE status_incidents SET title = :t, updated_at = :now"
                        " WHERE id = :id",
                        {"t": self.tx.redactor.text(title), "now": now, "id": incident.id})

    def publish(self, incident: StatusIncident, *, status: str, severity: str,
                components: list[str], now: datetime) -> None:
        """Make the incident's public state that of its latest published update: status,
        the severity the components follow, the components it affects, resolved or not."""
        self.tx.execute(
            "UPDATE status_incidents SET status = :status, severity = :sev, updated_at = :now,"
            " published_at = COALESCE(published_at, :now),"
            " resolved_at = CASE WHEN :resolving THEN COALESCE(resolved_at, :now)"
            " ELSE NULL END WHERE id = :id",
            {"status": status, "sev": severity, "now": now, "id": incident.id,
             "resolving": status == "resolved"})
        self.tx.execute("DELETE FROM status_incident_components WHERE status_incident_id = :id",
                        {"id": incident.id})
        for name in sorted(set(components)):
            self.tx.execute(
                "INSERT INTO status_incident_components (status_incident_id, component)"
                " VALUES (:id, :c)", {"id": incident.id, "c": name})

    def decide(self, update_id: int, *, approve: bool, approver: str, now: datetime,
               reason: str, origin: dict[str, Any] | None) -> StatusUpdate | None:
        """Publish or reject a pending update, once, by someone other than its author;
        None when it is not pending (or the approver wrote it). Audited."""
        row = self.tx.fetchone(
            "UPDATE status_updates SET state = :state, decided_by = :who, decided_at = :now,"
            " published_at = :pub"
            " WHERE id = :id AND state = 'pending' AND created_by <> :who RETURNING id",
            {"state": "published" if approve else "rejected", "who": approver, "now": now,
             "pub": now if approve else None, "id": update_id})
        if row is None:
            return None
        found = self.update(update_id)
        assert found is not None  # noqa: S101 - updated just above
        self._audit("status.update_approved" if approve else "status.update_rejected",
                    approver, now, found.incident_id, origin,
                    {"update_id": update_id, "author": found.created_by, "reason": reason,
                     "status": found.status, "title": found.title, "body": found.body})
        return found

    # -- overrides -------------------------------------------------------------------------
    def overrides(self) -> list[ComponentOverride]:
        return records(ComponentOverride, self.tx.fetchall(
            "SELECT component, status, reason, set_by, set_at FROM status_overrides"
            " ORDER BY component"))

    def set_override(self, component: str, status: str, *, reason: str, actor: str,
                     now: datetime, origin: dict[str, Any] | None) -> None:
        self.tx.execute(
            "INSERT INTO status_overrides (component, status, reason, set_by, set_at)"
            " VALUES (:c, :s, :r, :a, :now) ON CONFLICT (component) DO UPDATE SET"
            " status = excluded.status, reason = excluded.reason, set_by = excluded.set_by,"
            " set_at = excluded.set_at",
            {"c": component, "s": status, "r": reason, "a": actor, "now": now})
        self._audit("status.override_set", actor, now, None, origin,
                    {"component": component, "status": status, "reason": reason},
                    subject=f"component:{component}")

    def clear_override(self, component: str, *, reason: str, actor: str, now: datetime,
                       origin: dict[str, Any] | None) -> bool:
        row = self.tx.fetchone("DELETE FROM status_overrides WHERE component = :c"
                               " RETURNING status", {"c": component})
        if row is None:
            return False
        self._audit("status.override_cleared", actor, now, None, origin,
                    {"component": component, "was": row["status"], "reason": reason},
                    subject=f"component:{component}")
        return True

    def _audit(self, action: str, actor: str, now: datetime, incident_id: int | None,
               origin: dict[str, Any] | None, details: dict[str, Any],
               subject: str | None = None) -> None:
        audit.append(self.tx, at=now, actor=f"user:{actor}", action=action,
                     subject=(subject or f"incident:{incident_id}")[:120],
                     incident_id=incident_id, details=details, origin=origin)
