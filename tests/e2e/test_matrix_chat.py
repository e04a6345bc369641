"""Incident rooms on a real Matrix homeserver (Synapse on loopback, started by the tests).

The receiver's webhook (the Flask app), the store, the remediation worker and the chat
service run in this process; Synapse is the real one, and what the tests assert about the
rooms is read back from it through the client-server API, as the people in them see it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from receiver.app import create_app
from receiver.comms.chat import ChatService
from receiver.comms.chat.matrix import MatrixBackend
from receiver.config import Config, parse_config
from receiver.intake.engine import utcnow
from receiver.remediation.worker import Worker
from receiver.store import AuditFilter, Store, open_store
from tests.conftest import TOKEN
from tests.engine_kit import FakeAction
from tests.factories import make_alert, make_notification
from tests.support import wait_until
from tests.synapse import MatrixUser, Synapse

pytestmark = pytest.mark.slow

PEERS = ("http://alertmanager-0.example:9093", "http://alertmanager-1.example:9093",
         "http://alertmanager-2.example:9093")
PUBLIC_URL = "https://remediator.example"


@dataclass
class People:
    bot: MatrixUser
    alice: MatrixUser
    bob: MatrixUser
    eve: MatrixUser
    mallory: MatrixUser


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def matrix(synapse: Synapse) -> People:
    return People(*(synapse.register(n) for n in ("remediator", "alice", "bob", "eve",
                                                  "mallory")))


@dataclass
class Env:
    config: Config
    store: Store
    app: Any
    worker: Worker
    chat: ChatService
    playbook: FakeAction

    def fire(self, alert: dict[str, Any], peers: tuple[str, ...] = PEERS[:1]) -> None:
        """The same notification from each of ``peers`` at once (HA Alertmanagers)."""
        barrier = threading.Barrier(len(peers))
        answers: list[int] = []

        def post(peer: str) -> None:
            client = self.app.test_client()
            body = make_notification([alert], external_url=peer)
            barrier.wait()
            answers.append(client.post("/api/v1/alerts", json=body,
                                       headers={"Authorization": f"Bearer {TOKEN}"}).status_code)

        threads = [threading.Thread(target=post, args=(p,)) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200] * len(peers)

    def deliver(self, replicas: int = 1) -> None:
        """Run the chat delivery of ``replicas`` workers at the same instant."""
        services = [ChatService(self.config, self.store, clock=utcnow, worker_id=f"w{i}")
                    for i in range(replicas)]
        barrier = threading.Barrier(replicas)
        errors: list[BaseException] = []

        def run(service: ChatService) -> None:
            barrier.wait()
            try:
                service.deliver()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    def rooms(self) -> list[Any]:
        with self.store.unit(write=False) as uow:
            return uow.chat.rooms()

    def messages(self, incident_id: int) -> list[Any]:
        with self.store.unit(write=False) as uow:
            return uow.chat.messages(incident_id)


def chat_config(synapse: Synapse, people: People, tmp_path: Path,
                playbook: FakeAction, *, approval: dict[str, Any] | None = None,
                **chat: Any) -> Config:
    return parse_config({
        "data_dir": str(tmp_path / "data"),
        "auth": {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
        "server": {"secure_cookies": False, "public_url": PUBLIC_URL},
        "people": {"users": {
            "alice": {"groups": ["oncall"], "matrix": people.alice.user_id},
            "bob": {"groups": ["oncall"], "matrix": people.bob.user_id},
            "eve": {"groups": ["web"], "matrix": people.eve.user_id},
        }},
        "rules": [{
            "name": "poke-after-approval",
            "matchers": ['alertname="DiskFull"'],
            "playbook": playbook.name,
            "params": {"target": "{{ labels.service }}"},
            "approval": {"mode": "required", "groups": ["oncall"], **(approval or {})},
            "guards": {"cooldown": "0s"},
        }],
        "chat": {"matrix": {"homeserver": synapse.url, "user_id": people.bot.user_id,
                            "access_token": "env:REMEDIATOR_TEST_MATRIX_TOKEN"},
                 "retry": {"backoff_initial": "50ms", "backoff_max": "200ms"}, **chat},
    }, registry={playbook.name: playbook})


def make_env(synapse: Synapse, matrix: People, tmp_path: Path, url: str,
             **config: Any) -> Env:
    store = open_store(url, pool_min=1, pool_max=8)
    store.migrate()
    playbook = FakeAction()
    cfg = chat_config(synapse, matrix, tmp_path, playbook, **config)
    app = create_app(cfg, store=store)
    worker = Worker(cfg, store, worker_id="w-test", registry={playbook.name: playbook},
                    sleep=lambda _s: None)
    chat = ChatService(cfg, store, clock=utcnow, worker_id="w-chat")
    return Env(cfg, store, app, worker, chat, playbook)


@pytest.fixture
def env(synapse: Synapse, matrix: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> Iterator[Env]:
    monkeypatch.setenv("REMEDIATOR_TEST_MATRIX_TOKEN", matrix.bot.token)
    backend = getattr(request, "param", "sqlite")
    url = (request.getfixturevalue("store_url_pg") if backend == "postgres"
           else f"sqlite:///{tmp_path}/remediator.db")
    made = make_env(synapse, matrix, tmp_path, url)
    yield made
    made.store.close()


@pytest.fixture
def env_with(synapse: Synapse, matrix: People, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Builds an Env with other rule approval settings (on SQLite)."""
    monkeypatch.setenv("REMEDIATOR_TEST_MATRIX_TOKEN", matrix.bot.token)
    made: list[Env] = []

    def build(**config: Any) -> Env:
        made.append(make_env(synapse, matrix, tmp_path, f"sqlite:///{tmp_path}/r.db", **config))
        return made[-1]

    yield build
    for e in made:
        e.store.close()


@pytest.fixture
def store_url_pg(pg_template: str) -> Iterator[str]:
    from tests.conftest import drop_pg_database, new_pg_database, pg_url

    name = new_pg_database(pg_template)
    yield pg_url(name)
    drop_pg_database(name)


def disk_full(service: str = "billing-db", **annotations: str) -> dict[str, Any]:
    return make_alert(alertname="DiskFull", labels={"service": service},
                      annotations={"summary": f"Disk full on {service}",
                                   "runbook_url": "https://runbooks.example/disk-full",
                                   **annotations})


def ready_room(env: Env) -> Any:
    room = wait_until(lambda: (env.deliver() or [r for r in env.rooms() if r.state == "ready"]),
                      20, "the room to be ready")[0]
    assert room.room_id
    return room


# -- tests ---------------------------------------------------------------------------------

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


def _awaiting(env: Env, matrix: People, service: str = "billing-db") -> tuple[Any, Any]:
    env.fire(disk_full(service))
    room = ready_room(env)
    while env.worker.run_once():
        pass
    env.deliver()
    request = next(m for m in env.messages(room.incident_id)
                   if m.kind == "job_awaiting_approval")
    assert request.state == "sent" and request.job_id is not None
    assert f"!approve {request.job_id}" in request.body
    matrix.alice.join(room.room_id)
    return room, request


def _audit(env: Env, action: str) -> list[dict[str, Any]]:
    """The audit entries of ``action`` as plain mappings."""
    out = []
    for entry in env.store.audit(AuditFilter(action=action)):
        out.append(dict(entry) if isinstance(entry, dict) else vars(entry))
    return out


def _job_state(env: Env, job_id: int) -> str:
    with env.store.unit(write=False) as uow:
        return str(uow.tx.fetchone("SELECT state FROM jobs WHERE id = :j", {"j": job_id})["state"])


def test_alice_approves_with_a_reaction_and_the_job_runs_once(env: Env, matrix: People) -> None:
    """alice (mapped, in the approving group) reacts ✅: the approval is hers, through the
    approval code, and the job runs once; a second ✅ and a repeated sync change nothing."""
    room, request = _awaiting(env, matrix)
    reaction = matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) and _job_state(env, request.job_id) == "queued",
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
    entries = _audit(env, "job.approved")
    assert len(entries) == 1
    assert entries[0]["actor"] == "user:alice"
    assert entries[0]["origin"]["chat_user"] == matrix.alice.user_id
    assert entries[0]["origin"]["event_id"] == reaction


def test_mallory_and_eve_are_refused_and_audited(env: Env, matrix: People) -> None:
    """A reaction from an identity mapped to nobody (mallory), and one from a person outside
    the approving group (eve), decide nothing; each refusal is audited with the chat
    identity and the event id. A ✅ on a message that is no approval request is ignored."""
    room, request = _awaiting(env, matrix)
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
        _audit(env, "approval.refused")) >= 2, 20, "two refusals")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert _job_state(env, request.job_id) == "awaiting_approval"
    refused = {e["origin"]["event_id"]: e for e in _audit(env, "approval.refused")}
    assert set(refused) == {by_mallory, by_eve}
    assert refused[by_mallory]["actor"] == f"chat:{matrix.mallory.user_id}"
    assert refused[by_mallory]["details"]["code"] == "unknown_chat_identity"
    assert refused[by_mallory]["origin"]["chat_user"] == matrix.mallory.user_id
    assert refused[by_eve]["actor"] == "user:eve"
    assert refused[by_eve]["details"]["code"] == "not_allowed"
    assert refused[by_eve]["origin"]["chat_user"] == matrix.eve.user_id


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
    wait_until(lambda: env.chat.sync(timeout=1) is not None and _audit(env, "chat.refused"),
               20, "mallory's refusal")
    env.chat.sync(timeout=0)
    incident = env.store.get_incident(room.incident_id)
    assert incident is not None
    assert incident["state"] == "acknowledged" and incident["assignee"] == "eve"
    actors = {(e["kind"], e["actor"]) for e in incident["timeline"]}
    assert {("acknowledged", "user:alice"), ("note", "user:alice"),
            ("assigned", "user:alice")} <= actors
    assert not any(e["kind"] == "resolved" for e in incident["timeline"])
    refused = _audit(env, "chat.refused")
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


def test_a_reaction_buried_under_many_messages_still_counts(env: Env, matrix: People) -> None:
    """A ✅ followed by more messages than one sync answer holds (its timeline is limited)
    is read back from the gap and decides the job."""
    room, request = _awaiting(env, matrix)
    env.chat.sync(timeout=0)  # the reading position is now
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    matrix.bob.join(room.room_id)
    for i in range(130):
        matrix.bob.say(room.room_id, f"chatter {i}")
    env.chat.sync(timeout=0)
    assert _job_state(env, request.job_id) == "queued"
    entries = _audit(env, "job.approved")
    assert len(entries) == 1 and entries[0]["actor"] == "user:alice"


def test_two_approvers_are_two_people(env_with: Any, matrix: People) -> None:
    """With two approvers required, alice's ✅ twice (two reactions) is one vote and the job
    waits; bob's ✅ is the second, and the job runs once."""
    env = env_with(approval={"approvers": 2})
    room, request = _awaiting(env, matrix)
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    matrix.alice.react(room.room_id, request.event_id, "\u2705\ufe0f")
    matrix.alice.say(room.room_id, f"!approve {request.job_id}")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and len(
        _audit(env, "approval.refused")) >= 2, 20, "alice's repeated votes refused")
    while env.worker.run_once():
        pass
    assert _job_state(env, request.job_id) == "awaiting_approval"
    assert {e["details"]["code"] for e in _audit(env, "approval.refused")} == {"already_voted"}
    matrix.bob.join(room.room_id)
    matrix.bob.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and _job_state(
        env, request.job_id) == "queued", 20, "bob's vote")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]


def test_an_expired_approval_cannot_be_decided_from_chat(env_with: Any, matrix: People) -> None:
    """A ✅ after the approval expired decides nothing: the job never runs."""
    import time

    env = env_with(approval={"expires": "2s"})
    room, request = _awaiting(env, matrix)
    time.sleep(2.5)
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and _audit(env, "approval.refused"),
               20, "the refusal")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert _audit(env, "approval.refused")[0]["details"]["code"] in ("expired", "not_waiting")


def test_a_pause_still_wins_over_a_chat_approval(env: Env, matrix: People) -> None:
    """Remediation paused: alice's ✅ approves, and the job still does not run."""
    from receiver.remediation import controls

    room, request = _awaiting(env, matrix)
    controls.pause(env.store, actor="user:alice", reason="freeze", now=utcnow())
    matrix.alice.react(room.room_id, request.event_id, "\u2705")
    wait_until(lambda: env.chat.sync(timeout=1) is not None and _audit(env, "job.approved"),
               20, "the approval")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == []
    assert _job_state(env, request.job_id) != "succeeded"


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
