"""The interface of a chat backend: what the room logic asks of a chat server.

A backend is a small, synchronous client of one chat server. Every call either returns or
raises :class:`~receiver.errors.DeliveryFailed` (the server is down, refused, or rate
limited us), never leaving a half-known state that a retry could not repair:

- :meth:`ChatBackend.create_room` is made repeatable by the room's alias and its ``key``: a
  retry after a lost answer finds the room it made; an alias held by a room that is not ours
  answers None (the caller picks another name);
- :meth:`ChatBackend.send_text` takes a transaction id, so the same message sent twice is one
  message in the room (Matrix keeps transaction ids; Slack looks for it in the channel's
  newest messages when ``maybe_sent``);
- :meth:`ChatBackend.pin` and :meth:`ChatBackend.invite` are idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class RoomSpec:
    alias: str
    """The local part of the room's address (``incident-2026-03-02-appdown``)."""
    name: str
    topic: str
    key: str
    """Written into the room's creation content: how a retry recognises its own room."""


@dataclass(frozen=True)
class Inbound:
    """One event read from a room: a reaction to a message, or a text message."""

    room_id: str
    event_id: str
    sender: str
    kind: Literal["reaction", "text"]
    relates_to: str | None = None
    key: str = ""
    body: str = ""


@dataclass(frozen=True)
class SyncBatch:
    next_batch: str
    events: tuple[Inbound, ...]


class ChatBackend(Protocol):
    name: str
    user_id: str
    """The bot's own identity: its events are never taken as anyone's decision."""

    def create_room(self, spec: RoomSpec) -> str | None:
        """The room id of the room with ``spec.alias``, made now or by an earlier try of
        ours; None when the alias belongs to a room that is not ours."""
        ...

    def invite(self, room_id: str, user_id: str) -> None: ...

    def send_text(self, room_id: str, txn_id: str, body: str, *, maybe_sent: bool = False,
                  approval_job: int | None = None) -> str:
        """Post plain text; the event id ("" when the room is archived and takes no more
        messages: the message is dropped). The same ``txn_id`` again posts nothing new
        (``maybe_sent``: an earlier try may have posted it; a backend without transaction
        ids looks first). ``approval_job``: the message asks for that job's decision (a
        backend with buttons adds them)."""
        ...

    def pin(self, room_id: str, event_ids: list[str]) -> None: ...

    def set_topic(self, room_id: str, topic: str) -> None: ...

    def archive(self, room_id: str) -> None:
        """Archive the room where the backend can; a no-op elsewhere."""
        ...

    def sync(self, since: str | None, timeout: float) -> SyncBatch:
        """The events of our rooms after ``since`` (waiting up to ``timeout`` s for one)."""
        ...
