"""Chat rooms of incidents, the messages to post in them, and what was read from them.

Invariants kept by the schema (migration 0014):

- one room per incident: ``chat_rooms.incident_id`` is the primary key, so two workers, three
  Alertmanager peers and any number of retries insert it once;
- one message per timeline event: ``chat_messages.source_event_id`` is unique;
- one handling per chat event: ``chat_inbound.event_id`` is the primary key.

A room's work (creating it, then posting its messages in order) is leased to one worker at
a time by a conditional UPDATE; the room carries one retry clock, so that a homeserver that
is down delays the room's messages in order instead of reordering them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store import audit
from receiver.store.repository import Repository, maybe, record, records

ROOM_COLUMNS = ("incident_id, backend, name, room_key, room_id, state, attempts,"
                " next_attempt_at, last_error, created_at, ready_at")
MESSAGE_COLUMNS = ("id, incident_id, source_event_id, kind, job_id, body, txn_id, state,"
                   " event_id, sent_at")
NAME_LIMIT = 80


@dataclass(frozen=True)
class ChatRoom:
    incident_id: int
    backend: str
    name: str
    room_key: str
    room_id: str | None
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    ready_at: datetime | None


@dataclass(frozen=True)
class ChatMessage:
    id: int
    incident_id: int
    source_event_id: int | None
    kind: str
    job_id: int | None
    body: str
    txn_id: str
    state: str
    event_id: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class RoomCandidate:
    """An active incident at a chat severity that has no room yet."""

    incident_id: int
    severity: str
    title: str
    opened_at: datetime


@dataclass(frozen=True)
class AlertFacts:
    """One alert of an incident, as the room's topic and pinned summary need it."""

    alertname: str
    labels: dict[str, Any]
    annotations: dict[str, Any]


@dataclass(frozen=True)
class IncidentFacts:
    incident_id: int
    title: str
    severity: str
    state: str
    opened_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    alerts: tuple[AlertFacts, ...]
    assignee: str | None = None


@dataclass(frozen=True)
class PostableEvent:
    """A timeline event of an incident with a room, not yet turned into a message."""

    id: int
    incident_id: int
    kind: str
    message: str
    detail: dict[str, Any]
    job_id: int | None
    at: datetime
    playbook: str | None


def numbered(base: str, n: int, limit: int = NAME_LIMIT) -> str:
    """``base`` for n == 1, else ``base-n``, cut so that the whole stays within ``limit``."""
    if n <= 1:
        return base[:limit]
    suffix = f"-{n}"
    return base[: limit - len(suffix)].rstrip("-") + suffix


class ChatRepository(Repository):
    """Chat rooms, their outgoing messages, and the chat events read from them."""

    # -- rooms ------------------------------------------------------------------------
    def rooms_to_open(self, severities: Sequence[str], *, limit: int = 50) -> list[RoomCandidate]:
        """Active incidents at one of ``severities`` without a room, oldest first."""
        if not severities:
            return []
        marks = ", ".join(f":s{i}" for i in range(len(severities)))
        rows = self.tx.fetchall(
            "SELECT i.id AS incident_id, i.severity, i.title, i.opened_at FROM incidents i"  # noqa: S608 - placeholders only
            f" WHERE i.open_key IS NOT NULL AND i.severity IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM chat_rooms r WHERE r.incident_id = i.id)"
            " ORDER BY i.id LIMIT :limit",
            {**{f"s{i}": s for i, s in enumerate(severities)}, "limit": limit},
        )
        return records(RoomCandidate, rows)

    def open_room(self, incident_id: int, *, backend: str, name: str, room_key: str,
                  now: datetime) -> ChatRoom:
        """The incident's room row: inserted under ``name`` (or ``name-2``, ``name-3``... when
        another incident holds it), or the one that is there already."""
        for n in range(1, 1000):
            self.tx.execute(
                "INSERT INTO chat_rooms (incident_id, backend, name, room_key, state, attempts,"
                " next_attempt_at, created_at) VALUES (:inc, :backend, :name, :key, 'pending',"
                " 0, :now, :now) ON CONFLICT DO NOTHING",
                {"inc": incident_id, "backend": backend, "name": numbered(name, n),
                 "key": room_key, "now": now},
            )
            room = self.room(incident_id)
            if room is not None:
                return room
        raise RuntimeError(f"no free room name for {name!r}")

    def rename(self, incident_id: int, *, worker: str) -> ChatRoom | None:
        """Give the room the next free numbered name (its alias is held by someone else on
        the chat server). Only the lease holder renames."""
        room = self.room(incident_id)
        if room is None:
            return None
        base, _, tail = room.name.rpartition("-")
        start = int(tail) + 1 if base and tail.isdigit() else 2
        base = base if base and tail.isdigit() else room.name
        for n in range(start, start + 1000):
            taken = self.tx.fetchone("SELECT incident_id FROM chat_rooms WHERE name = :n",
                                     {"n": numbered(base, n)})
            if taken is None:
                self.tx.execute(
                    "UPDATE chat_rooms SET name = :n WHERE incident_id = :inc"
                    " AND lease_owner = :w", {"n": numbered(base, n), "inc": incident_id,
                                              "w": worker})
                return self.room(incident_id)
        return room

    def room(self, incident_id: int) -> ChatRoom | None:
        return maybe(ChatRoom, self.tx.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM chat_rooms WHERE incident_id = :i",  # noqa: S608 - constant columns
            {"i": incident_id}))

    def room_by_room_id(self, room_id: str) -> ChatRoom | None:
        return maybe(ChatRoom, self.tx.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM chat_rooms WHERE room_id = :r",  # noqa: S608 - constant columns
            {"r": room_id}))

    def rooms(self) -> list[ChatRoom]:
        return records(ChatRoom, self.tx.fetchall(
            f"SELECT {ROOM_COLUMNS} FROM chat_rooms ORDER BY incident_id"))  # noqa: S608 - constant columns

    def claim_room(self, *, worker: str, now: datetime, until: datetime) -> ChatRoom | None:
        """Lease the due room that has work (to be created, or messages to post) and that
        no live lease holds; None when there is none."""
        for _ in range(3):
            pick = self.tx.lock_row(
                "chat_rooms r",
                "r.next_attempt_at <= :now AND (r.lease_expires_at IS NULL"
                " OR r.lease_expires_at <= :now) AND (r.state = 'pending' OR EXISTS (SELECT 1"
                " FROM chat_messages m WHERE m.incident_id = r.incident_id"
                " AND m.state = 'pending'))",
                {"now": now}, columns="r.incident_id", order_by="r.next_attempt_at, r.incident_id",
                limit=1, skip_locked=True)
            if pick is None:
                return None
            row = self.tx.fetchone(
                "UPDATE chat_rooms SET lease_owner = :w, lease_expires_at = :until"  # noqa: S608 - constant columns
                " WHERE incident_id = :i"
                " AND (lease_expires_at IS NULL OR lease_expires_at <= :now)"
                f" RETURNING {ROOM_COLUMNS}",
                {"w": worker, "until": until, "now": now, "i": pick["incident_id"]})
            if row is not None:
                return record(ChatRoom, row)
        return None

    def room_created(self, incident_id: int, room_id: str, *, worker: str) -> bool:
        row = self.tx.fetchone(
            "UPDATE chat_rooms SET room_id = :r WHERE incident_id = :i AND lease_owner = :w"
            " RETURNING incident_id", {"r": room_id, "i": incident_id, "w": worker})
        return row is not None

    def room_ready(self, incident_id: int, *, worker: str, now: datetime) -> bool:
        row = self.tx.fetchone(
            "UPDATE chat_rooms SET state = 'ready', ready_at = :now WHERE incident_id = :i"
            " AND lease_owner = :w AND room_id IS NOT NULL RETURNING incident_id",
            {"i": incident_id, "w": worker, "now": now})
        return row is not None

    def release(self, incident_id: int, *, worker: str, error: str | None = None,
                retry_at: datetime | None = None) -> bool:
        """Give the room's lease back: with ``error``, one more failed attempt and the next
        try at ``retry_at``; without, the attempts start again from zero."""
        row = self.tx.fetchone(
            "UPDATE chat_rooms SET lease_owner = NULL, lease_expires_at = NULL,"
            " attempts = CASE WHEN :failed = 1 THEN attempts + 1 ELSE 0 END,"
            " last_error = :err, next_attempt_at = COALESCE(:retry, next_attempt_at)"
            " WHERE incident_id = :i AND lease_owner = :w RETURNING incident_id",
            {"i": incident_id, "w": worker, "err": error, "retry": retry_at,
             "failed": 0 if error is None else 1})
        return row is not None

    def facts(self, incident_id: int) -> IncidentFacts | None:
        inc = self.tx.fetchone(
            "SELECT id, title, severity, state, opened_at, ack_due_at, acknowledged_at,"
            " assignee FROM incidents WHERE id = :i", {"i": incident_id})
        if inc is None:
            return None
        alerts = self.tx.fetchall(
            "SELECT alertname, labels, annotations FROM alerts WHERE incident_id = :i"
            " ORDER BY id LIMIT 50", {"i": incident_id})
        cut = self.tx.redactor  # configured secrets never reach a room's name or text
        return IncidentFacts(
            incident_id=inc["id"], title=cut.text(inc["title"]), severity=inc["severity"],
            state=inc["state"], opened_at=inc["opened_at"], ack_due_at=inc["ack_due_at"],
            acknowledged_at=inc["acknowledged_at"], assignee=inc["assignee"],
            alerts=tuple(AlertFacts(cut.text(a["alertname"]), dict(cut(a["labels"] or {})),
                                    dict(cut(a["annotations"] or {}))) for a in alerts))

    # -- messages ---------------------------------------------------------------------
    def events_to_post(self, kinds: Sequence[str], *, ended_after: datetime,
                       limit: int = 500) -> list[PostableEvent]:
        """Timeline events of the given kinds that have no message yet, on incidents with a
        room that are active or ended after ``ended_after``: oldest first."""
        if not kinds:
            return []
        marks = ", ".join(f":k{i}" for i in range(len(kinds)))
        rows = self.tx.fetchall(
            "SELECT e.id, e.incident_id, e.kind, e.message, e.detail, e.job_id, e.at,"  # noqa: S608 - placeholders only
            " j.playbook FROM chat_rooms r"
            " JOIN incidents i ON i.id = r.incident_id"
            " JOIN incident_events e ON e.incident_id = r.incident_id"
            " LEFT JOIN jobs j ON j.id = e.job_id"
            " WHERE (i.open_key IS NOT NULL OR i.updated_at >= :ended)"
            f" AND e.kind IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.source_event_id = e.id)"
            " ORDER BY e.id LIMIT :limit",
            {**{f"k{i}": k for i, k in enumerate(kinds)}, "limit": limit,
             "ended": ended_after})
        return [PostableEvent(id=r["id"], incident_id=r["incident_id"], kind=r["kind"],
                              message=r["message"], detail=dict(r["detail"] or {}),
                              job_id=r["job_id"], at=r["at"], playbook=r["playbook"])
                for r in rows]

    def add_message(self, incident_id: int, *, kind: str, body: str, txn_id: str,
                    now: datetime, source_event_id: int | None = None,
                    job_id: int | None = None) -> bool:
        """Queue one message (a second one for the same event or transaction id is a no-op:
        False); configured secrets are cut from its text, as from the timeline's."""
        return self.tx.fetchone(
            "INSERT INTO chat_messages (incident_id, source_event_id, kind, job_id, body,"
            " txn_id, state, created_at) VALUES (:inc, :src, :kind, :job, :body, :txn,"
            " 'pending', :now) ON CONFLICT DO NOTHING RETURNING id",
            {"inc": incident_id, "src": source_event_id, "kind": kind, "job": job_id,
             "body": self.tx.redactor.text(body), "txn": txn_id, "now": now}) is not None

    def pending_messages(self, incident_id: int, *, limit: int = 100) -> list[ChatMessage]:
        return records(ChatMessage, self.tx.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE incident_id = :i"  # noqa: S608 - constant columns
            " AND state = 'pending' ORDER BY id LIMIT :limit", {"i": incident_id, "limit": limit}))

    def messages(self, incident_id: int) -> list[ChatMessage]:
        return records(ChatMessage, self.tx.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE incident_id = :i ORDER BY id",  # noqa: S608 - constant columns
            {"i": incident_id}))

    def message_sent(self, message_id: int, event_id: str | None, *, now: datetime) -> bool:
        """pending -> sent, with the event id the homeserver gave (None for a room change)."""
        row = self.tx.fetchone(
            "UPDATE chat_messages SET state = 'sent', event_id = :e, sent_at = :now"
            " WHERE id = :id AND state = 'pending' RETURNING id",
            {"id": message_id, "e": event_id, "now": now})
        return row is not None

    def message_by_event(self, event_id: str) -> ChatMessage | None:
        return maybe(ChatMessage, self.tx.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE event_id = :e",  # noqa: S608 - constant columns
            {"e": event_id}))

    # -- reading the rooms ----------------------------------------------------------------
    def jobs_of(self, incident_id: int) -> list[tuple[int, str, str]]:
        """(id, playbook, state) of the incident's jobs, oldest first."""
        return [(r["id"], r["playbook"], r["state"]) for r in self.tx.fetchall(
            "SELECT id, playbook, state FROM jobs WHERE incident_id = :i ORDER BY id LIMIT 50",
            {"i": incident_id})]

    def job_incident(self, job_id: int) -> int | None:
        """The incident a job belongs to (None for no such job)."""
        row = self.tx.fetchone("SELECT incident_id FROM jobs WHERE id = :j", {"j": job_id})
        return None if row is None else int(row["incident_id"])

    def take_sync(self, backend: str, *, worker: str, now: datetime,
                  until: datetime) -> tuple[bool, str | None]:
        """Lease the reading of ``backend``'s rooms: (True, since token) when this worker
        holds it now, (False, None) while another one does."""
        self.tx.execute("INSERT INTO chat_sync (backend) VALUES (:b) ON CONFLICT DO NOTHING",
                        {"b": backend})
        row = self.tx.fetchone(
            "UPDATE chat_sync SET lease_owner = :w, lease_expires_at = :until"
            " WHERE backend = :b AND (lease_owner IS NULL OR lease_owner = :w"
            " OR lease_expires_at <= :now) RETURNING since",
            {"b": backend, "w": worker, "until": until, "now": now})
        return (True, row["since"]) if row is not None else (False, None)

    def save_sync(self, backend: str, since: str, *, worker: str) -> bool:
        row = self.tx.fetchone(
            "UPDATE chat_sync SET since = :s WHERE backend = :b AND lease_owner = :w"
            " RETURNING backend", {"s": since, "b": backend, "w": worker})
        return row is not None

    def inbound_seen(self, event_id: str) -> bool:
        return self.tx.fetchone("SELECT event_id FROM chat_inbound WHERE event_id = :e",
                                {"e": event_id}) is not None

    def record_inbound(self, event_id: str, *, room_id: str, sender: str, job_id: int | None,
                       action: str, outcome: str, now: datetime) -> bool:
        """Note that a chat event was handled; False when it had been already."""
        row = self.tx.fetchone(
            "INSERT INTO chat_inbound (event_id, room_id, sender, job_id, action, outcome,"
            " received_at) VALUES (:e, :r, :s, :j, :a, :o, :now) ON CONFLICT DO NOTHING"
            " RETURNING event_id",
            {"e": event_id, "r": room_id, "s": sender, "j": job_id, "a": action,
             "o": outcome, "now": now})
        return row is not None

    def refuse(self, *, chat_user: str, action: str, subject: str, incident_id: int | None,
               code: str, message: str, origin: dict[str, Any], now: datetime) -> None:
        """Audit an attempt from a chat identity that is no person of ours (``action``:
        ``approval.refused`` for a decision, ``chat.refused`` for a command)."""
        audit.append(self.tx, at=now, actor=f"chat:{chat_user}", action=action,
                     subject=subject, incident_id=incident_id,
                     details={"code": code, "message": message}, origin=origin)
