"""Incident rooms on a real Matrix homeserver: the fixtures.

A session's Synapse (``tests/synapse.py``: ``matrix-synapse`` on SQLite, loopback) with the
bot, alice, bob (both in ``oncall``, the approving group), eve (``web``) and mallory (mapped
to nobody) registered. Each test gets an :class:`Env`: the receiver's webhook (the Flask
app), a store, a remediation worker with a test playbook, and the chat service, all in this
process; what the tests assert about rooms is read back from Synapse through the
client-server API, as the people in the rooms see it.
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
from receiver.config import Config, parse_config
from receiver.intake.engine import utcnow
from receiver.remediation.worker import Worker
from receiver.store import AuditFilter, Store, open_store
from tests.conftest import TOKEN
from tests.engine_kit import FakeAction
from tests.factories import make_alert, make_notification
from tests.support import wait_until
from tests.synapse import MatrixUser, Synapse

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

def awaiting(env: Env, matrix: People, service: str = "billing-db") -> tuple[Any, Any]:
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

def audit_entries(env: Env, action: str) -> list[dict[str, Any]]:
    """The audit entries of ``action`` as plain mappings."""
    out = []
    for entry in env.store.audit(AuditFilter(action=action)):
        out.append(dict(entry) if isinstance(entry, dict) else vars(entry))
    return out

def job_state(env: Env, job_id: int) -> str:
    with env.store.unit(write=False) as uow:
        return str(uow.tx.fetchone("SELECT state FROM jobs WHERE id = :j", {"j": job_id})["state"])
