"""Real processes end to end: three clustered Alertmanagers deliver the same group to
``remediator serve`` (gunicorn and its embedded worker, which runs the chat service), and a
real Synapse shows one room for the incident, with the on-call people invited.

The receiver runs from ``remediator.example.yml`` with its data directory, store, people and
``chat.matrix`` set; the Alertmanagers from ``alertmanager.example.yml`` (the helpers of
tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.factories import rfc3339
from tests.integration.conftest import (
    API_TOKEN,
    START_TIMEOUT,
    Receiver,
    _stop,
    example_token,
    wait_until,
)
from tests.integration.test_alertmanager import CLUSTER_FLAGS
from tests.support import free_port, http
from tests.synapse import MatrixUser, Synapse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Synapse, dict[str, MatrixUser]]]:
    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server, {n: server.register(n) for n in ("remediator", "alice", "bob", "carol")}
    finally:
        server.stop()


@pytest.fixture
def chat_receiver(homeserver: tuple[Synapse, dict[str, MatrixUser]],
                  tmp_path: Path) -> Iterator[Receiver]:
    """``remediator serve`` on SQLite with chat on the test homeserver."""
    synapse, users = homeserver
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["store"]["url"] = "sqlite:///remediator.db"
    cfg["people"] = {
        "users": {"alice": {"groups": ["oncall"], "matrix": users["alice"].user_id},
                  "bob": {"groups": ["oncall"], "matrix": users["bob"].user_id},
                  "carol": {"groups": ["web"], "matrix": users["carol"].user_id}},
        "api_tokens": {"tests": {"token": "env:REMEDIATOR_TEST_API_TOKEN",
                                 "user": "alice", "scope": "read"}},
    }
    cfg["chat"] = {**(cfg.get("chat") or {}), "invite_groups": ["oncall"],
                   "poll_interval": "200ms",
                   "matrix": {"homeserver": synapse.url, "user_id": users["remediator"].user_id,
                              "access_token": "env:REMEDIATOR_MATRIX_TOKEN"}}
    config = tmp_path / "remediator.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": example_token(),
           "REMEDIATOR_TEST_API_TOKEN": API_TOKEN,
           "REMEDIATOR_MATRIX_TOKEN": users["remediator"].token}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    log_path = tmp_path / "receiver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["remediator", "serve", "-c", str(config), "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    rcv = Receiver("sqlite", f"http://127.0.0.1:{port}", example_token(), API_TOKEN,
                   f"sqlite:///{tmp_path / 'data' / 'remediator.db'}", log_path, proc)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"remediator serve exited with {proc.returncode}:\n{rcv.log()}")
            try:
                return http("GET", rcv.url + "/readyz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, "the receiver's /readyz")
        yield rcv
    finally:
        _stop(proc)


def test_three_clustered_alertmanagers_make_one_room(
    chat_receiver: Receiver, start_alertmanager: Any,
    homeserver: tuple[Synapse, dict[str, MatrixUser]],
) -> None:
    """The same alerts posted to three clustered Alertmanagers make one incident and one
    room on the homeserver, named incident-<date>-<slug>, with the oncall group invited
    (and nobody else)."""
    _synapse, users = homeserver
    bot = users["remediator"]
    before = bot.joined_rooms()
    ports = [free_port() for _ in range(3)]
    ams = [start_alertmanager(chat_receiver.webhook_url, cluster_port=port,
                              peers=[p for p in ports if p != port], cluster_flags=CLUSTER_FLAGS)
           for port in ports]
    wait_until(lambda: all(s["status"] == "ready" and len(s["peers"]) == 3
                           for s in (am.status()["cluster"] for am in ams)),
               20, "the three Alertmanagers to form a settled cluster")
    starts = datetime.now(UTC).replace(microsecond=0)
    alerts = [{"labels": {"alertname": "CheckoutDown", "severity": "critical",
                          "instance": inst, "service": "checkout"},
               "annotations": {"summary": "checkout is down",
                               "runbook_url": "https://runbooks.example/checkout"},
               "startsAt": rfc3339(starts), "endsAt": rfc3339(starts + timedelta(minutes=10))}
              for inst in ("web1:9100", "web2:9100")]
    for am in ams:
        am.post_alerts(alerts)
    rooms = wait_until(lambda: chat_receiver.query(
        "SELECT room_id, name, state FROM chat_rooms WHERE state = 'ready'"), 60, "the room")
    time.sleep(3)  # every peer has delivered (or skipped) by now, and a second room would show
    assert chat_receiver.query("SELECT count(*) FROM incidents") == [(1,)]
    assert len(chat_receiver.query("SELECT room_id FROM chat_rooms")) == 1
    room_id, name, _state = rooms[0]
    assert bot.joined_rooms() - before == {room_id}
    assert name.startswith(f"incident-{starts:%Y-%m-%d}-checkoutdown-checkout-is-down")
    assert bot.members(room_id, "invite") == {users["alice"].user_id, users["bob"].user_id}
    topic = bot.state(room_id, "m.room.topic")["topic"]
    assert "services: checkout" in topic and "runbook: https://runbooks.example/checkout" in topic
    deliveries = chat_receiver.query("SELECT sum(deliveries) FROM notifications")[0][0]
    print(f"{deliveries} delivery(ies) from 3 peers, one room {name}")
