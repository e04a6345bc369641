"""Approvals and commands from an incident's room on a real Matrix homeserver, bound to the
person mapped to the sender: the approval page's decision code decides, everyone else is
refused and audited."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.intake.engine import utcnow
from tests.e2e.matrix.conftest import (
    Env,
    People,
    audit_entries,
    awaiting,
    disk_full,
    job_state,
    ready_room,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow


def test_alice_approves_with_a_reaction_and_the_job_runs_once(env: Env, matrix: People) -> None:
    """alice (mapped, in the approving group) reacts ✅: the approval is hers, through the
    approval code, and the job runs once; a second ✅ and a repeated sync change nothing."""
    room, request = awaiting(env, matrix)
    reaction = matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) and job_state(env, request.job_id) == "queued",
               20, "the approval to be read")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]
    matrix.alice.react(room.room_id, request.event_id, "\u2705\ufe0f")
    matrix.bob.join(room.room_id)
    matrix.bob.react(room.room_id, request.event_id, "\u2705")
    env.chat.sync(timeout=1)
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]
    env.deliver()
    kinds = [m.kind for m in env.messages(room.incident_id)]
    steps = ["job_awaiting_approval", "job_approved", "job_started", "job_succeeded"]
    assert [k for k in kinds if k in steps] == steps, kinds  # each once, in order
    assert all(m.state == "sent" for m in env.messages(room.incident_id))
    entries = audit_entries(env, "job.approved")
    assert len(entries) == 1
    assert entries[0]["actor"] == "user:alice"
    assert entries[0]["origin"]["chat_user"] == matrix.alice.user_id
    assert entries[0]["origin"]["event_id"] == reaction

def test_mallory_and_eve_are_refused_and_audited(env: Env, matrix: People) -> None:
    """A reaction from an identity mapped to nobody (mallory), and one from a person outside
    the approving group (eve), decide nothing; each refusal is audited with the chat
    identity and the event id. A ✅ on a message that is no approval request is ignored."""
    room, request = awaiting(env, matrix)
    # mallory gets in by an invitation from alice, who can invite in a private_chat room
    matrix.alice.ok("POST", f"/rooms/{room.room_id}/invite", {"user_id": matrix.mallory.user_id})
    matrix.mallory.join(room.room_id)
    matrix.alice.ok("POST", f"/rooms/{room.room_id}/invite", {"user_id": matrix.eve.user_id})
    matrix.eve.join(room.room_id)
    by_mallory = matrix.mallory.react(room.room_id, request.event_id, "\u2705")
    by_eve = matrix.eve.say(room.room_id, f"!approve {request.job_id} trust me")
    opened = env.messages(room.incident_id)[0]
    matrix.alice.react(room.room_id, opened.event_id, "\u2705")  # not an approval request
    wait_until(lambda: env.chat.sync(timeout=1) is not None and len(
        audit_entries(env, "approval.refused")) >= 2, 20, "two refusals")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert job_state(env, request.job_id) == "awaiting_approval"
    refused = {e["origin"]["event_id"]: e for e in audit_entries(env, "approval.refused")}
    assert set(refused) == {by_mallory, by_eve}
    assert refused[by_mallory]["actor"] == f"chat:{matrix.mallory.user_id}"
    assert refused[by_mallory]["details"]["code"] == "unknown_chat_identity"
    assert refused[by_mallory]["origin"]["chat_user"] == matrix.mallory.user_id
    assert refused[by_eve]["actor"] == "user:eve"
    assert refused[by_eve]["details"]["code"] == "not_allowed"
    assert refused[by_eve]["origin"]["chat_user"] == matrix.eve.user_id

def test_a_reaction_buried_under_many_messages_still_counts(env: Env, matrix: People) -> None:
    """A ✅ followed by more messages than one sync answer holds (its timeline is limited)
    is read back from the gap and decides the job."""
    room, request = awaiting(env, matrix)
    env.chat.sync(timeout=0)  # the reading position is now
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    matrix.bob.join(room.room_id)
    for i in range(130):
        matrix.bob.say(room.room_id, f"chatter {i}")
    env.chat.sync(timeout=0)
    assert job_state(env, request.job_id) == "queued"
    entries = audit_entries(env, "job.approved")
    assert len(entries) == 1 and entries[0]["actor"] == "user:alice"

def test_two_approvers_are_two_people(env_with: Any, matrix: People) -> None:
    """With two approvers required, alice's ✅ twice (two reactions) is one vote and the job
    waits; bob's ✅ is the second, and the job runs once."""
    env = env_with(approval={"approvers": 2})
    room, request = awaiting(env, matrix)
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    matrix.alice.react(room.room_id, request.event_id, "\u2705\ufe0f")
    matrix.alice.say(room.room_id, f"!approve {request.job_id}")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and len(
        audit_entries(env, "approval.refused")) >= 2, 20, "alice's repeated votes refused")
    while env.worker.run_once():
        pass
    assert job_state(env, request.job_id) == "awaiting_approval"
    assert {e["details"]["code"] for e in audit_entries(env, "approval.refused")} == {"already_voted"}
    matrix.bob.join(room.room_id)
    matrix.bob.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and job_state(
        env, request.job_id) == "queued", 20, "bob's vote")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]

def test_an_expired_approval_cannot_be_decided_from_chat(env_with: Any, matrix: People) -> None:
    """A ✅ after the approval expired decides nothing: the job never runs."""
    import time

    env = env_with(approval={"expires": "2s"})
    room, request = awaiting(env, matrix)
    time.sleep(2.5)
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and audit_entries(env, "approval.refused"),
               20, "the refusal")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert audit_entries(env, "approval.refused")[0]["details"]["code"] in ("expired", "not_waiting")

def test_a_pause_still_wins_over_a_chat_approval(env: Env, matrix: People) -> None:
    """Remediation paused: alice's ✅ approves, and the job still does not run."""
    from receiver.remediation import controls

    room, request = awaiting(env, matrix)
    controls.pause(env.store, actor="user:alice", reason="freeze", now=utcnow())
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and audit_entries(env, "job.approved"),
               20, "the approval")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert job_state(env, request.job_id) != "succeeded"

def test_room_commands_act_as_the_mapped_person(env: Env, matrix: People) -> None:
    """!ack, !note, !commander and !status from alice act as alice through the incident
    page's code, and their events come back to the room (the new commander is invited);
    mallory's !resolve changes nothing and is audited as refused with her chat identity and
    event id."""
    env.fire(disk_full())
    room = ready_room(env)
    matrix.alice.join(room.room_id)
    matrix.alice.ok("POST", f"/rooms/{room.room_id}/invite", {"user_id": matrix.mallory.user_id})
    matrix.mallory.join(room.room_id)
    for body in ("!ack on it", "!note cleaned /var/log by hand", "!commander eve", "!status"):
        matrix.alice.say(room.room_id, body)
    by_mallory = matrix.mallory.say(room.room_id, "!resolve all good")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and audit_entries(env, "chat.refused"),
               20, "mallory's refusal")
    env.chat.sync(timeout=0)
    incident = env.store.get_incident(room.incident_id)
    assert incident is not None
    assert incident["state"] == "acknowledged" and incident["assignee"] == "eve"
    actors = {(e["kind"], e["actor"]) for e in incident["timeline"]}
    assert {("acknowledged", "user:alice"), ("note", "user:alice"),
            ("assigned", "user:alice")} <= actors
    assert not any(e["kind"] == "resolved" for e in incident["timeline"])
    refused = audit_entries(env, "chat.refused")
    assert [e["origin"]["event_id"] for e in refused] == [by_mallory]
    assert refused[0]["actor"] == f"chat:{matrix.mallory.user_id}"
    env.deliver()
    bodies = [m["content"]["body"] for m in matrix.alice.messages(room.room_id)
              if m["sender"] == matrix.bot.user_id]
    assert any(b.startswith("[note] cleaned /var/log by hand") for b in bodies), bodies
    assert any(b.startswith("[assigned] incident commander: eve") for b in bodies), bodies
    assert matrix.eve.user_id in matrix.bot.members(room.room_id, "invite")  # the commander
    status = [b for b in bodies if b.startswith("Status of incident")]
    assert len(status) == 1, bodies
    assert "acknowledged (P1)" in status[0] and "Commander: eve" in status[0]  # in order
