"""Incoming: decisions and commands written in an incident's room, bound to a person.

One worker at a time reads the rooms (a lease on the backend's ``chat_sync`` row, which also
keeps the sync position, saved after the batch is handled). What counts:

- a reaction ✅ (approve) or ❌ (deny) to remediator's approval request message, or
  ``!approve <job>`` / ``!deny <job> <reason>`` written in the job's incident room;
- ``!ack [text]``, ``!assign <user>`` / ``!commander <user>``, ``!note <text>``,
  ``!resolve [reason]``: the incident page's actions; ``!status``: a status message;
  ``!public [status] [title |] <text>``: a public status-page update (as the page's form).

The sender's chat identity must be the ``matrix`` (or, from ``POST /slack/events``,
``slack``) id of a ``people.users`` entry, and then
acts as that person through the code the pages use: a decision through
:func:`receiver.people.approvals.decide_job` (single use, N distinct approvers, the
approving groups and expiry apply as on the approval page; the guards, pause and
maintenance windows are re-checked when the job runs), an action through
:func:`receiver.incidents.lifecycle.act`. A sender that maps to nobody is refused and
audited (``approval.refused`` or ``chat.refused`` by ``chat:<identity>``); a mapped person
that may not decide is refused and audited by ``decide_job``. The entries' origin names the
chat identity, the event id and the room. Each chat event is handled once
(``chat_inbound``); remediator's own events are skipped, and what is no decision or command
(other emoji, other messages, reactions to other messages) is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from receiver.comms import status as status_page
from receiver.comms.chat import rooms, text
from receiver.comms.chat.base import ChatBackend, Inbound
from receiver.config import Config
from receiver.errors import ActionError, DecisionError
from receiver.incidents import lifecycle
from receiver.people import approvals
from receiver.store import Store

log = structlog.get_logger(__name__)

ACTIONS = {"ack": "acknowledge", "assign": "assign", "commander": "assign", "note": "note",
           "resolve": "resolve"}
"""Room commands and the incident page action each one runs."""


@dataclass(frozen=True)
class _Attempt:
    incident_id: int
    command: text.Command


def _attempt(store: Store, event: Inbound) -> _Attempt | None:
    """What the event asks for, when it is a decision or a command in an incident's room."""
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
            name = "approve" if decision else "deny"
            return _Attempt(room.incident_id, text.Command(name, target.job_id))
        command = text.parse_command(event.body)
        if command is None:
            return None
        if command.job_id is not None and uow.chat.job_incident(command.job_id) != \
                room.incident_id:
            return None  # a job of another incident is decided in its own room
        return _Attempt(room.incident_id, command)


def _reply(store: Store, incident_id: int, event: Inbound, body: str, now: datetime) -> None:
    key = hashlib.sha256(event.event_id.encode()).hexdigest()[:24]
    with store.unit() as uow:
        uow.chat.add_message(incident_id, kind="reply", body=body,
                             txn_id=f"remediator.reply.{key}", now=now)


def _decide(store: Store, config: Config, attempt: _Attempt, person: str,
            origin: dict[str, Any], now: datetime) -> str:
    command = attempt.command
    assert command.job_id is not None  # noqa: S101 - decisions always name a job
    approve = command.name == "approve"
    reason = command.arg or f"{'approved' if approve else 'denied'} in chat"
    try:
        approvals.decide_job(store, config, command.job_id, approve=approve, user=person,
                             reason=reason, now=now, origin=origin)
    except DecisionError as exc:  # refused and audited by decide_job
        return f"refused:{exc.code}"
    return "approved" if approve else "denied"


def _act(store: Store, config: Config, attempt: _Attempt, event: Inbound, person: str,
         origin: dict[str, Any], now: datetime) -> str:
    command = attempt.command
    if command.name == "status":
        with store.unit(write=False) as uow:
            facts = uow.chat.facts(attempt.incident_id)
            jobs = uow.chat.jobs_of(attempt.incident_id)
        if facts is not None:
            _reply(store, attempt.incident_id, event,
                   text.status(facts, jobs, rooms.incident_url(config, attempt.incident_id)),
                   now)
        return "done"
    if command.name == "public":
        return _public(store, config, attempt, event, person, origin, now)
    action = ACTIONS[command.name]
    try:
        lifecycle.act(store, config, attempt.incident_id, action, user=person, now=now,
                      text="" if action == "assign" else command.arg,
                      value=command.arg if action == "assign" else "", origin=origin)
    except ActionError as exc:
        _reply(store, attempt.incident_id, event,
               f"!{command.name} by {person} refused: {text.chat_text(str(exc), 300)}", now)
        return f"refused:{exc.code}"
    return "done"


def _public(store: Store, config: Config, attempt: _Attempt, event: Inbound, person: str,
            origin: dict[str, Any], now: datetime) -> str:
    """``!public``: a public status-page update by ``person``, through the code of the status
    page's form (the first update of an incident may wait for a second operator)."""
    post = text.parse_public(attempt.command.arg)
    if not config.status_page.enabled:
        _reply(store, attempt.incident_id, event,
               f"!public by {person} refused: the status page is not enabled", now)
        return "refused:not_enabled"
    try:
        result = status_page.post_update(store, config, attempt.incident_id,
                                         status=post.status, body=post.body,
                                         title=post.title, user=person, now=now,
                                         origin=origin)
    except ActionError as exc:
        hint = " (write !public <title> | <text>)" if "title" in str(exc) else ""
        _reply(store, attempt.incident_id, event,
               f"!public by {person} refused: {text.chat_text(str(exc), 300)}{hint}", now)
        return f"refused:{exc.code}"
    _reply(store, attempt.incident_id, event,
           f"Public update by {person} "
           + ("published" if result.published else "waits for a second operator's approval"),
           now)
    return "published" if result.published else "pending"


def handle(store: Store, config: Config, backend: ChatBackend, event: Inbound,
           now: datetime) -> str | None:
    """Act on one chat event; the outcome recorded, or None when it asked for nothing."""
    if event.sender == backend.user_id:
        return None
    attempt = _attempt(store, event)
    if attempt is None:
        return None
    with store.unit(write=False) as uow:
        if uow.chat.inbound_seen(event.event_id):
            return None
    command = attempt.command
    decision = command.name in ("approve", "deny")
    origin = {"via": backend.name, "chat_user": event.sender, "event_id": event.event_id,
              "room_id": event.room_id}
    person = config.people.person_of_chat(backend.name, event.sender)
    bound = log.bind(incident_id=attempt.incident_id, job_id=command.job_id,
                     command=command.name, chat_user=event.sender, event_id=event.event_id)
    if person is None:
        outcome = "refused:unknown_chat_identity"
        with store.unit() as uow:
            if uow.chat.record_inbound(event.event_id, room_id=event.room_id,
                                       sender=event.sender, job_id=command.job_id,
                                       action=command.name, outcome=outcome, now=now):
                uow.chat.refuse(
                    chat_user=event.sender,
                    action="approval.refused" if decision else "chat.refused",
                    subject=(f"job:{command.job_id}" if decision
                             else f"incident:{attempt.incident_id}"),
                    incident_id=attempt.incident_id, code="unknown_chat_identity",
                    message=f"{event.sender} is not mapped to any person (!{command.name})",
                    origin=origin, now=now)
        bound.warning("chat_command_refused", code="unknown_chat_identity")
        return outcome
    if decision:
        outcome = _decide(store, config, attempt, person, origin, now)
    else:
        outcome = _act(store, config, attempt, event, person, origin, now)
    bound.info("chat_command", user=person, outcome=outcome)
    with store.unit() as uow:
        uow.chat.record_inbound(event.event_id, room_id=event.room_id, sender=event.sender,
                                job_id=command.job_id, action=command.name, outcome=outcome,
                                now=now)
    return outcome


def sync_once(store: Store, config: Config, backend: ChatBackend, *,
              clock: Callable[[], datetime], worker_id: str, timeout: float) -> int | None:
    """Read the rooms once (waiting up to ``timeout`` s for an event) and act on what came;
    the number of decisions and commands, or None when another worker holds the reading."""
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
