"""Incident rooms on a real Matrix homeserver: how long a room takes, and a chat approval.

    python bench/chat.py [--incidents 20] [--approvals 10] [--poll-interval 1s]
                         [--store-url URL]

A Synapse homeserver (``matrix-synapse``, SQLite, loopback; the harness of tests/synapse.py)
is started in a temporary directory, with the bot, alice and bob registered through its
shared-secret admin API. In this process: the receiver's Flask app (the webhook), a store
(SQLite in the temporary directory unless ``--store-url`` names one) and a remediation
worker running its real loops (``Worker.run_forever``, which runs the chat service); the
rule needs approval from the ``oncall`` group (alice and bob, both mapped to their Matrix
ids) and runs a test playbook that only records its call.

  webhook_to_room     POST /api/v1/alerts (one new P1 incident each, one at a time) until
                      the homeserver shows the room with alice and bob invited: the room's
                      row is ready in the store, then the invitations are read back from
                      Synapse's members API;
  reaction_to_start   alice's ✅ on the approval request (the PUT of the reaction) until the
                      job's ``job_started`` event is in the store.

Both include the chat service's poll (``chat.poll_interval``, default 1s, for the room) and
the worker's wake-up after the decision. Prints JSON (p50, p90, max per figure).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _figures(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(_pct(values, 0.9) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}


def _wait(check: Any, timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--approvals", type=int, default=10)
    parser.add_argument("--poll-interval", default="1s")
    parser.add_argument("--store-url", default=None)
    args = parser.parse_args()

    from tests.synapse import Synapse

    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    synapse = Synapse(tmp / "synapse")
    started = time.monotonic()
    try:
        synapse.start()
    except BaseException:
        synapse.stop()
        raise
    synapse_start = time.monotonic() - started
    try:
        _run(args, synapse, synapse_start, tmp)
    finally:
        synapse.stop()


def _run(args: argparse.Namespace, synapse: Any, synapse_start: float, tmp: Path) -> None:
    from receiver.app import create_app
    from receiver.config import parse_config
    from receiver.remediation.worker import Worker
    from receiver.runtime.logs import configure_logging
    from receiver.store import open_store
    from tests.engine_kit import FakeAction
    from tests.factories import make_alert, make_notification

    bot, alice, bob = (synapse.register(n) for n in ("remediator", "alice", "bob"))
    os.environ["BENCH_MATRIX_TOKEN"] = bot.token
    os.environ["BENCH_WEBHOOK_TOKEN"] = webhook_token = secrets.token_hex(16)
    playbook = FakeAction()
    config = parse_config({
        "data_dir": str(tmp / "data"),
        "auth": {"bearer_token": "env:BENCH_WEBHOOK_TOKEN"},
        "server": {"secure_cookies": False, "public_url": "https://remediator.example"},
        "people": {"users": {"alice": {"groups": ["oncall"], "matrix": alice.user_id},
                             "bob": {"groups": ["oncall"], "matrix": bob.user_id}}},
        "rules": [{"name": "poke", "matchers": ['alertname="DiskFull"'],
                   "playbook": playbook.name, "params": {"target": "{{ labels.service }}"},
                   "approval": {"mode": "required", "groups": ["oncall"]},
                   "guards": {"cooldown": "0s"}}],
        "remediation": {"poll_interval": "1s"},
        "chat": {"matrix": {"homeserver": synapse.url, "user_id": bot.user_id,
                            "access_token": "env:BENCH_MATRIX_TOKEN"},
                 "poll_interval": args.poll_interval},
    }, registry={playbook.name: playbook})
    configure_logging("warning", "console")
    store = open_store(args.store_url or f"sqlite:///{tmp}/remediator.db", pool_max=8)
    store.migrate()
    app = create_app(config, store=store)
    client = app.test_client()
    worker = Worker(config, store, worker_id="bench", registry={playbook.name: playbook})
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    loop.start()

    def room_of(incident_id: int) -> Any:
        with store.unit(write=False) as uow:
            room = uow.chat.room(incident_id)
        return room if room is not None and room.state == "ready" else None

    to_room: list[float] = []
    rooms: list[Any] = []
    try:
        for i in range(args.incidents):
            alert = make_alert(alertname="DiskFull", labels={"service": f"svc-{i}"},
                               annotations={"summary": f"Disk full on svc-{i}",
                                            "runbook_url": "https://runbooks.example/disk"})
            body = make_notification([alert], group_key=f'{{}}:{{service="svc-{i}"}}')
            t0 = time.monotonic()
            answer = client.post("/api/v1/alerts", json=body,
                                 headers={"Authorization": f"Bearer {webhook_token}"})
            if answer.status_code != 200:
                raise SystemExit(f"webhook answered {answer.status_code}: {answer.data!r}")
            incident_id = int(answer.get_json()["incident_id"])
            room = _wait(lambda iid=incident_id: room_of(iid), 30, "the room")
            _wait(lambda r=room: {alice.user_id, bob.user_id} <= bot.members(r.room_id, "invite"),
                  10, "the invitations")
            to_room.append(time.monotonic() - t0)
            rooms.append(room)

        to_start: list[float] = []
        for room in rooms[: args.approvals]:
            def request(r: Any = room) -> Any:
                with store.unit(write=False) as uow:
                    found = [m for m in uow.chat.messages(r.incident_id)
                             if m.kind == "job_awaiting_approval" and m.event_id]
                return found[0] if found else None

            message = _wait(request, 30, "the approval request")
            alice.join(room.room_id)
            t0 = time.monotonic()
            alice.react(room.room_id, message.event_id, "\u2705")

            def started(iid: int = room.incident_id) -> bool:
                incident = store.get_incident(iid) or {}
                return any(e["kind"] == "job_started" for e in incident.get("timeline", []))

            _wait(started, 30, "the job to start")
            to_start.append(time.monotonic() - t0)
    finally:
        stop.set()
        loop.join(timeout=15)
        store.close()

    print(json.dumps({
        "homeserver": "synapse (sqlite, loopback)",
        "synapse_start_s": round(synapse_start, 2),
        "chat_poll_interval": args.poll_interval,
        "store": "postgresql" if args.store_url and args.store_url.startswith("postgres")
        else "sqlite",
        "webhook_to_room_with_members_invited": _figures(to_room),
        "reaction_to_job_started": _figures(to_start),
        "playbook_calls": len(playbook.calls),
    }, indent=2))


if __name__ == "__main__":
    main()
