"""Incoming: approvals decided in an incident's room, bound to a person.

One worker at a time reads the rooms (a lease on the backend's ``chat_sync`` row, which also
keeps the sync position, saved after the batch is handled). A decision attempt is

- a reaction ✅ (approve) or ❌ (deny) to remediator's approval request message, or
- ``!approve <job>`` / ``!deny <job> <reason>`` written in the job's incident room.

The sender's chat identity must be the ``matrix`` id of a ``people.users`` entry; the
decision then goes through :func:`receiver.people.approvals.decide_job`, the code of the
approval page, so single use, N distinct approvers, the approving groups and expiry apply as
there (and the guards, pause and maintenance windows are re-checked when the job runs). A
sender that maps to nobody is refused and audited (``approval.refused`` by
``chat:<identity>``); a mapped person that may not decide is refused and audited by
``decide_job``. Either entry's origin names the chat identity, the event id and the room.
Each chat event is handled once (``chat_inbound``); remediator's own events are skipped,
and reactions that are no decision (other emoji, other messages) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from receiver.comms.chat import text
from receiver.comms.chat.base import ChatBackend, Inbound
from receiver.config import Config
from receiver.errors import DecisionError
from receiver.people import approvals
from receiver.store import Store

log = structlog.get_logger(__name__)


def _attempt(store: Store, event: Inbound) -> tuple[int, bool, str] | None:
    """(job id, approve, reason) when the event is a decision attempt in its job's room."""
    with store.unit(write=False) as uow:
        room = uow.chat.room_by_room_id(event.room_id)
        if room is None:
            return None
        if event.kind == "reaction":
            decision = text.reaction_decision(event.key)
            target = uow.chat.message_by_event(event.relates_to or "")
            if (decision is None or target is None or target.job_id is None
                    or target.kind != "job_awaiting_approval"
                    or target.incident_id != room.incident_id):
                return None
            reason = f"{'approved' if decision else 'denied'} in chat"
            return target.job_id, decision, reason
        command = text.parse_command(event.body)
        if command is None:
            return None
        approve, job_id, reason = command
        if uow.chat.job_incident(job_id) != room.incident_id:
            return None  # a job of another incident is decided in its own room
        return job_id, approve, reason or f"{'approved' if approve else 'denied'} in chat"


def handle(store: Store, config: Config, backend: ChatBackend, event: Inbound,
           now: datetime) -> str | None:
    """Act on one chat event; the outcome recorded, or None when it was no decision."""
    if event.sender == backend.user_id:
        return None
    attempt = _attempt(store, event)
    if attempt is None:
        return None
    job_id, approve, reason = attempt
    with store.unit(write=False) as uow:
        if uow.chat.inbound_seen(event.event_id):
            return None
        incident_id = uow.chat.job_incident(job_id)
    origin = {"via": backend.name, "chat_user": event.sender, "event_id": event.event_id,
              "room_id": event.room_id}
    action = "approve" if approve else "deny"
    person = config.people.person_of_matrix(event.sender)
    bound = log.bind(job_id=job_id, chat_user=event.sender, event_id=event.event_id)
    if person is None:
        outcome = "refused:unknown_chat_identity"
        with store.unit() as uow:
            if uow.chat.record_inbound(event.event_id, room_id=event.room_id,
                                       sender=event.sender, job_id=job_id, action=action,
                                       outcome=outcome, now=now):
                uow.chat.refuse(chat_user=event.sender, job_id=job_id,
                                incident_id=incident_id, code="unknown_chat_identity",
                                message=f"{event.sender} is not mapped to any person",
                                origin=origin, now=now)
        bound.warning("chat_decision_refused", code="unknown_chat_identity")
        return outcome
    try:
        approvals.decide_job(store, config, job_id, approve=approve, user=person,
                             reason=reason, now=now, origin=origin)
        outcome = "approved" if approve else "denied"
        bound.info("chat_decision", user=person, decision=action)
    except DecisionError as exc:  # refused and audited by decide_job
        outcome = f"refused:{exc.code}"
        bound.warning("chat_decision_refused", user=person, code=exc.code)
    with store.unit() as uow:
        uow.chat.record_inbound(event.event_id, room_id=event.room_id, sender=event.sender,
                                job_id=job_id, action=action, outcome=outcome, now=now)
    return outcome


def sync_once(store: Store, config: Config, backend: ChatBackend, *,
              clock: Callable[[], datetime], worker_id: str, timeout: float) -> int | None:
    """Read the rooms once (waiting up to ``timeout`` s for an event) and act on what came;
    the number of decision attempts, or None when another worker holds the reading."""
    now = clock()
    lease = timedelta(seconds=timeout) + timedelta(seconds=60)
    with store.unit() as uow:
        held, since = uow.chat.take_sync(backend.name, worker=worker_id, now=now,
                                         until=now + lease)
    if not held:
        return None
    batch = backend.sync(since, timeout)
    handled = 0
    for event in batch.events:
        if handle(store, config, backend, event, clock()) is not None:
            handled += 1
    with store.unit() as uow:
        uow.chat.save_sync(backend.name, batch.next_batch, worker=worker_id)
    return handled
