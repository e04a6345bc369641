"""Incident rooms on a real Matrix homeserver: one room per incident (name, topic, pinned
summary, invitations), the timeline in order, status updates, closing, and messages that
wait while the homeserver is down."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.comms.chat.matrix import MatrixBackend
from receiver.intake.engine import utcnow
from tests.e2e.matrix.conftest import (
    PEERS,
    PUBLIC_URL,
    Env,
    People,
    disk_full,
    ready_room,
)
from tests.support import wait_until
from tests.synapse import Synapse

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("env", ["sqlite", "postgres"], indirect=True)
def test_one_room_per_incident_from_three_peers_and_three_workers(env: Env,
                                                                   matrix: People) -> None:
    """The same notification from three Alertmanager peers at once, delivered by three
    workers at once, makes one room: the configured name, a topic and a pinned summary with
    severity, SLA deadline, incident link, runbook and service, and the approvers invited."""
    before = matrix.bot.joined_rooms()
    env.fire(disk_full(summary="Disk full on billing-db <b>now</b> @room"), peers=PEERS)
    env.deliver(replicas=3)
    env.deliver(replicas=3)
    rooms = env.rooms()
    assert len(rooms) == 1
    room = rooms[0]
    assert room.state == "ready"
    made = matrix.bot.joined_rooms() - before
    assert made == {room.room_id}
    today = utcnow().strftime("%Y-%m-%d")
    assert room.name.startswith(f"incident-{today}-diskfull-disk-full-on-billing-db-b-now-b")
    assert len(room.name) <= 80
    assert matrix.bot.resolve(room.name) == room.room_id
    assert matrix.bot.state(room.room_id, "m.room.name")["name"] == f"#{room.name}"

    topic = matrix.bot.state(room.room_id, "m.room.topic")["topic"]
    incident_link = f"{PUBLIC_URL}/incidents/{room.incident_id}"
    for part in ("P1", "SLA: acknowledge by", incident_link, "services: billing-db",
                 "runbook: https://runbooks.example/disk-full"):
        assert part in topic, (part, topic)

    pinned = matrix.bot.state(room.room_id, "m.room.pinned_events")["pinned"]
    assert len(pinned) == 1
    content = matrix.bot.event(room.room_id, pinned[0])["content"]
    assert content["msgtype"] == "m.text"
    assert "format" not in content and "formatted_body" not in content
    assert content["m.mentions"] == {}
    body = content["body"]
    for part in ("Severity: P1", "SLA: acknowledge by", f"Incident page: {incident_link}",
                 "Runbook: https://runbooks.example/disk-full", "Services: billing-db"):
        assert part in body, (part, body)
    assert "<b>now</b>" in body  # the alert's text, as text
    assert "@room" not in body  # and no room-wide ping hidden in it

    assert matrix.bot.members(room.room_id, "invite") == {matrix.alice.user_id,
                                                         matrix.bob.user_id}

def test_events_posted_in_order(env: Env, matrix: People) -> None:
    """The timeline is posted in the room in the order it happened: each event once."""
    env.fire(disk_full())
    room = ready_room(env)
    while env.worker.run_once():
        pass
    env.deliver()
    with env.store.unit(write=False) as uow:
        wanted = uow.chat.events_to_post(["opened", "job_awaiting_approval"],
                                          ended_after=utcnow())
    assert wanted == []  # every event of the room has its message
    queued = env.messages(room.incident_id)
    assert all(m.state == "sent" for m in queued)
    kinds = [m.kind for m in queued]
    assert kinds == ["opened", "job_enqueued", "job_awaiting_approval"], kinds
    with env.store.unit(write=False) as uow:
        sources = [m.source_event_id for m in uow.chat.messages(room.incident_id)]
    assert sources == sorted(sources)
    matrix.alice.join(room.room_id)
    seen = [m for m in matrix.alice.messages(room.room_id)
            if m["sender"] == matrix.bot.user_id]
    assert [m["content"]["body"] for m in seen[1:]] == [m.body for m in queued]
    assert [m["event_id"] for m in seen[1:]] == [m.event_id for m in queued]

def test_messages_wait_while_the_homeserver_is_down(env: Env, matrix: People,
                                                    synapse: Synapse) -> None:
    """With the homeserver stopped, messages wait in the store; once it is back each is
    delivered once, in order, and a send repeated with its transaction id (a lost answer)
    is still one message."""
    env.fire(disk_full())
    room = ready_room(env)
    env.deliver()
    before = [m for m in env.messages(room.incident_id) if m.state == "sent"]
    assert before, "the opening was posted before the stop"
    synapse.stop()
    try:
        while env.worker.run_once():
            pass
        env.deliver()
        env.deliver()
        waiting = [m for m in env.messages(room.incident_id) if m.state == "pending"]
        assert waiting, "the job's events wait for the homeserver"
        assert env.rooms()[0].last_error
    finally:
        synapse.start()
    wait_until(lambda: env.deliver() or all(m.state == "sent"
                                            for m in env.messages(room.incident_id)),
               30, "the waiting messages to go out")
    sent = env.messages(room.incident_id)
    backend = MatrixBackend(env.config.chat.matrix)  # type: ignore[arg-type]
    # A lost answer: the same send again, once for a message from before the restart and
    # once for one after it, is the same event.
    assert backend.send_text(room.room_id, before[0].txn_id, before[0].body) == before[0].event_id
    assert backend.send_text(room.room_id, sent[-1].txn_id, sent[-1].body) == sent[-1].event_id
    assert len(sent) > len(before)
    matrix.alice.join(room.room_id)
    bodies = [m["content"]["body"] for m in matrix.alice.messages(room.room_id)
              if m["sender"] == matrix.bot.user_id][1:]
    assert bodies == [m.body for m in sent]

def test_reminders_are_posted_as_status_updates(env: Env, matrix: People) -> None:
    """While a P1 is unresolved, each reminder of sla.reminders (every 30m) is posted as a
    status update: state, SLA, commander, done and pending jobs."""
    from datetime import timedelta

    from receiver.incidents import timers

    env.fire(disk_full())
    room = ready_room(env)
    while env.worker.run_once():
        pass
    assert timers.run_due(env.store, env.config, now=utcnow() + timedelta(minutes=31)) >= 1
    env.deliver()
    updates = [m for m in env.messages(room.incident_id) if m.kind == "reminder"]
    assert len(updates) == 1 and updates[0].state == "sent"
    body = updates[0].body
    assert body.startswith(f"[status update] Status of incident #{room.incident_id}: open (P1)")
    assert "Pending: #1 fake_action awaiting approval" in body
    matrix.alice.join(room.room_id)
    assert body in [m["content"]["body"] for m in matrix.alice.messages(room.room_id)]

def test_a_closed_incident_marks_its_room_closed(env_with: Any, matrix: People) -> None:
    """With chat.archive_on_close, a false alarm's room topic starts with [closed]."""
    from receiver.incidents import lifecycle

    env = env_with(archive_on_close=True)
    env.fire(disk_full())
    room = ready_room(env)
    lifecycle.act(env.store, env.config, room.incident_id, "false_alarm", user="alice",
                  now=utcnow(), text="test alert")
    env.deliver()
    topic = matrix.bot.state(room.room_id, "m.room.topic")["topic"]
    assert topic.startswith("[closed] P1 ")


def test_a_configured_secret_in_an_alert_never_reaches_the_room(env: Env,
                                                                 matrix: People) -> None:
    """An alert whose summary and labels carry a configured secret (here the bot's own
    token) gives a room whose name, topic, pinned summary and messages do not hold it."""
    secret = matrix.bot.token
    env.fire(disk_full(service=f"db-{secret}", summary=f"leaked {secret} here"))
    room = ready_room(env)
    env.deliver()
    assert secret.lower() not in room.name and secret not in room.name
    topic = matrix.bot.state(room.room_id, "m.room.topic")["topic"]
    matrix.alice.join(room.room_id)
    bodies = [m["content"]["body"] for m in matrix.alice.messages(room.room_id)]
    assert len(bodies) >= 2
    for shown in (topic, *bodies, matrix.bot.state(room.room_id, "m.room.name")["name"]):
        assert secret not in shown and secret.lower() not in shown.lower(), shown
    assert "[redacted]" in topic and any("[redacted]" in b for b in bodies)
