"""Outgoing: a room for each incident at a chat severity, and its timeline posted in order.

:func:`deliver_due` is called by every worker, as often as ``chat.poll_interval``:

1. **plan** (one transaction): each active incident at one of ``chat.severities`` without a
   room gets its ``chat_rooms`` row (the incident id is the primary key: one room, whatever
   the number of workers and Alertmanager peers); each timeline event of a kind in
   ``chat.events``, on an incident with a room, gets its ``chat_messages`` row (unique per
   event) with the text rendered once;
2. **send**: a room with work is leased to one worker (a conditional UPDATE). The worker
   creates the room if it has none (name, alias, topic), invites the people, posts and
   pins the summary, then posts the room's pending messages oldest first. Each step that
   succeeds is written at once; the first failure stops the room's work and schedules the
   next try (``chat.retry``), so a homeserver that is down delays the messages, in order,
   and loses none. A send repeated after a lost answer carries the same transaction id and
   is one message in the room.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from receiver.comms.chat import text
from receiver.comms.chat.base import ChatBackend, RoomSpec
from receiver.config import Config
from receiver.errors import DeliveryFailed
from receiver.incidents import context
from receiver.incidents.states import ACTIVE
from receiver.people import roster
from receiver.secrets import redactor_for
from receiver.store import Store
from receiver.store.chat import ChatRoom, PostableEvent
from receiver.store.oncall import Override
from receiver.store.unit import UnitOfWork

log = structlog.get_logger(__name__)

BATCH = 20
"""Messages posted per lease of a room (the next lease goes on at once)."""
INVITE, TOPIC, ARCHIVE = "invite", "topic", "archive"
"""Kinds of chat_messages rows that change the room instead of posting (the body is the
user id to invite, or the new topic; an archive has none: backends that cannot archive a
room, Matrix, leave the [closed] topic as the mark)."""
FOLLOW_ENDED = timedelta(days=1)
"""How long after an incident's last change its room still gets its timeline (notes and
the post-mortem after the resolution)."""


def incident_url(config: Config, incident_id: int) -> str:
    base = (config.notifications.link_base or config.server.public_url).rstrip("/")
    return f"{base}/incidents/{incident_id}"


def _wanted_groups(config: Config) -> set[str]:
    groups = config.chat.invite_groups
    return set(groups) if groups is not None else {
        g for rule in config.rules for g in rule.approval.groups}


def invitees(config: Config, at: datetime | None = None,
             overrides: Sequence[Override] = (), backend: str = "matrix") -> list[str]:
    """The chat ids (Matrix or Slack, per ``backend``) of the people in the invited groups
    (``chat.invite_groups``, default: the groups that any rule's approval names); an
    ``oncall:<role>`` group is whoever is on duty ``at`` (default now)."""
    at = at or datetime.now(UTC)
    people: set[str] = set()
    for group in _wanted_groups(config):
        people |= roster.members(config, group, at, overrides)
    found = {p.chat_id(backend) for name, p in config.people.users.items() if name in people}
    return sorted(i for i in found if i)


def _invite_backups(uow: UnitOfWork, config: Config, now: datetime, backend: str) -> int:
    """Invite an invited role's backup to the room of an incident that its primary has not
    acknowledged within ``oncall.backup_after`` (once per incident and role)."""
    roles = sorted(g for g in _wanted_groups(config) if g.startswith(roster.ROLE_GROUP_PREFIX))
    if not roles:
        return 0
    added = 0
    overrides = uow.oncall.overrides(live_at=now)
    for room in uow.chat.rooms():
        if room.state != "ready":
            continue
        facts = uow.chat.facts(room.incident_id)
        if facts is None or facts.acknowledged_at is not None or facts.state not in ACTIVE:
            continue
        for group in roles:
            role = group.removeprefix(roster.ROLE_GROUP_PREFIX)
            if role not in config.oncall.roles:
                continue
            duty = roster.on_duty(config.oncall, role, now, overrides)
            called = roster.called(duty, opened_at=facts.opened_at, acknowledged_at=None,
                                   now=now, backup_after=config.oncall.backup_after)
            for name in called[1:]:  # the primary was invited with the room
                person = config.people.users.get(name)
                chat_id = person.chat_id(backend) if person is not None else None
                if not chat_id:
                    continue
                added += uow.chat.add_message(
                    room.incident_id, kind=INVITE, body=chat_id,
                    txn_id=f"remediator.oncall.{room.incident_id}.{name}", now=now)
    return added


def backoff(attempts: int, config: Config) -> timedelta:
    retry = config.chat.retry
    initial, cap = retry.backoff_initial.total_seconds(), retry.backoff_max.total_seconds()
    return timedelta(seconds=min(cap, initial * 2.0 ** min(max(attempts - 1, 0), 30)))


def plan(store: Store, config: Config, backend: str, now: datetime) -> int:
    """Rows for the rooms and messages now wanted; how many were added (one transaction)."""
    chat = config.chat
    added = 0
    with store.unit() as uow:
        for cand in uow.chat.rooms_to_open([s.value for s in chat.severities]):
            facts = uow.chat.facts(cand.incident_id)
            if facts is None:
                continue
            uow.chat.open_room(cand.incident_id, backend=backend,
                               name=text.room_name(chat.room_name, facts),
                               room_key=secrets.token_hex(8), now=now)
            added += 1
        for event in uow.chat.events_to_post([k.value for k in chat.events],
                                             ended_after=now - FOLLOW_ENDED):
            body = text.event_body(event, backend)
            if event.kind == "reminder":  # the periodic status update of sla.reminders
                facts = uow.chat.facts(event.incident_id)
                if facts is not None:
                    body = "[status update] " + text.status(
                        facts, uow.chat.jobs_of(event.incident_id),
                        incident_url(config, event.incident_id))
                    body += context.chat_similar(uow, config, event.incident_id, now)
            _follow_ups(uow, config, event, now, backend)
            uow.chat.add_message(event.incident_id, kind=event.kind, body=body,
                                 txn_id=f"remediator.{event.incident_id}.{event.id}."
                                        f"{secrets.token_hex(4)}",
                                 source_event_id=event.id, job_id=event.job_id, now=now)
            added += 1
        added += _invite_backups(uow, config, now, backend)
    return added


def _follow_ups(uow: UnitOfWork, config: Config, event: PostableEvent, now: datetime,
                backend: str) -> None:
    """What an event changes in the room besides its message: the new commander is invited;
    with ``chat.archive_on_close``, a closed incident's topic starts with [closed] and the
    room is archived where the backend can (Slack)."""
    def chat_id(name: str) -> str | None:
        person = config.people.users.get(name)
        return person.chat_id(backend) if person is not None else None

    if event.kind == "assigned":
        commander = chat_id(str(event.detail.get("assignee") or ""))
        if commander:
            uow.chat.add_message(event.incident_id, kind=INVITE, body=commander,
                                 txn_id=f"remediator.invite.{event.id}", now=now)
    if event.kind in ("sla_breached", "escalated"):  # the on-call people the level calls
        paged = event.detail.get("oncall") or {}
        for name in sorted(set(paged.values()) if isinstance(paged, dict) else ()):
            paged_id = chat_id(str(name))
            if paged_id:
                uow.chat.add_message(event.incident_id, kind=INVITE, body=paged_id,
                                     txn_id=f"remediator.oncall.{event.incident_id}.{name}",
                                     now=now)
    if (event.kind == "state_changed" and config.chat.archive_on_close
            and event.detail.get("to") in ("closed", "false_alarm")):
        facts = uow.chat.facts(event.incident_id)
        if facts is not None:
            uow.chat.add_message(event.incident_id, kind=TOPIC,
                                 body="[closed] " + text.topic(
                                     facts, incident_url(config, event.incident_id)),
                                 txn_id=f"remediator.topic.{event.id}", now=now)
            uow.chat.add_message(event.incident_id, kind=ARCHIVE, body="",
                                 txn_id=f"remediator.archive.{event.id}", now=now)


def _set_up(store: Store, config: Config, backend: ChatBackend, room: ChatRoom,
            worker: str, now: datetime) -> ChatRoom | None:
    """Create the room (or find the one an earlier try made), invite, post and pin the
    summary; the room after it, or None when its name had to change (tried again soon)."""
    with store.unit(write=False) as uow:
        facts = uow.chat.facts(room.incident_id)
    if facts is None:
        raise DeliveryFailed(f"incident {room.incident_id} is gone")
    link = incident_url(config, room.incident_id)
    clean = redactor_for(config).text  # no configured secret in what the room shows
    room_id = room.room_id
    if room_id is None:
        room_id = backend.create_room(RoomSpec(alias=room.name, name=f"#{room.name}",
                                               topic=clean(text.topic(facts, link)),
                                               key=room.room_key))
        with store.unit() as uow:
            if room_id is None:
                renamed = uow.chat.rename(room.incident_id, worker=worker)
                log.warning("chat_room_alias_taken", incident_id=room.incident_id,
                            name=room.name, renamed=renamed.name if renamed else None)
                uow.chat.release(room.incident_id, worker=worker)
                return None
            uow.chat.room_created(room.incident_id, room_id, worker=worker)
    with store.unit(write=False) as uow:
        overrides = uow.oncall.overrides(live_at=now)
    for user in invitees(config, now, overrides, backend.name):
        try:
            backend.invite(room_id, user)
        except DeliveryFailed as exc:  # one person who cannot be invited stops nobody else
            log.warning("chat_invite_failed", incident_id=room.incident_id, user=user,
                        error=str(exc))
    pinned = backend.send_text(room_id, f"remediator.{room.room_key}.summary",
                               clean(text.summary(facts, link)), maybe_sent=room.attempts > 0)
    backend.pin(room_id, [pinned])
    with store.unit() as uow:
        uow.chat.room_ready(room.incident_id, worker=worker, now=now)
        return uow.chat.room(room.incident_id)


def _work(store: Store, config: Config, backend: ChatBackend, room: ChatRoom, worker: str,
          clock: Callable[[], datetime]) -> int:
    """Bring one leased room up to date; the number of messages posted."""
    current: ChatRoom | None = room
    if room.state == "pending":
        current = _set_up(store, config, backend, room, worker, clock())
        if current is None:
            return 0
    assert current is not None and current.room_id is not None  # noqa: S101 - ready rooms have an id
    sent = 0
    with store.unit(write=False) as uow:
        pending = uow.chat.pending_messages(room.incident_id, limit=BATCH)
    for n, message in enumerate(pending):
        event_id: str | None = None
        if message.kind == INVITE:
            try:
                backend.invite(current.room_id, message.body)
            except DeliveryFailed as exc:  # already in the room, or no such user: logged
                log.warning("chat_invite_failed", incident_id=room.incident_id,
                            user=message.body, error=str(exc))
        elif message.kind == TOPIC:
            backend.set_topic(current.room_id, message.body)
        elif message.kind == ARCHIVE:
            backend.archive(current.room_id)
        else:  # the first of a lease may have been sent by a try that ended before its record
            event_id = backend.send_text(
                current.room_id, message.txn_id, message.body, maybe_sent=n == 0,
                approval_job=message.job_id if message.kind == "job_awaiting_approval"
                else None) or None  # "": dropped by an archived room
        with store.unit() as uow:
            if uow.chat.message_sent(message.id, event_id, now=clock()):
                sent += 1
    with store.unit() as uow:
        uow.chat.release(room.incident_id, worker=worker)
    return sent


def deliver_due(store: Store, config: Config, backend: ChatBackend, *,
                clock: Callable[[], datetime], worker_id: str, limit: int = 50) -> int:
    """Plan, then work on up to ``limit`` due rooms; how much was done (rows planned, rooms
    worked on, messages posted: 0 when there was nothing to do). Safe to run from any
    number of threads and processes at once."""
    done = plan(store, config, backend.name, clock())
    lease = max(timedelta(seconds=60), config.chat.timeout * (BATCH + 5))
    posted = 0
    for _ in range(limit):
        now = clock()
        with store.unit() as uow:
            room = uow.chat.claim_room(worker=worker_id, now=now, until=now + lease)
        if room is None:
            break
        done += 1
        bound = log.bind(incident_id=room.incident_id, room=room.name, worker=worker_id)
        try:
            posted += _work(store, config, backend, room, worker_id, clock)
        except DeliveryFailed as exc:
            wait = backoff(room.attempts + 1, config)
            if exc.retry_after is not None:  # the server said when (Slack's Retry-After)
                wait = max(wait, timedelta(seconds=exc.retry_after))
            retry_at = clock() + wait
            with store.unit() as uow:
                uow.chat.release(room.incident_id, worker=worker_id, error=str(exc)[:1000],
                                 retry_at=retry_at)
            bound.warning("chat_delivery_failed", error=str(exc), attempts=room.attempts + 1,
                          retry_at=retry_at.isoformat())
    return done + posted
