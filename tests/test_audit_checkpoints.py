"""Signed audit checkpoints written by real processes: a `remediator worker` writes one at
start, at least every checkpoint_interval, and at stop; `remediator serve` at start and stop;
copies reach a webhook (a real local HTTP server) and syslog (a real UDP socket)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.audit.chain import open_checkpoint
from receiver.audit.checkpoints import audit_key, read_checkpoints, store_options
from receiver.config import load_config
from receiver.store import audit as audit_store
from receiver.store import open_store
from tests.support import free_port, wait_until

SINK_TOKEN = "sink-token-0123456789abcdef"


class Sink:
    """A loopback HTTP server that keeps every POSTed body and its Authorization header."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.received.append((self.headers.get("Authorization", ""), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reasons(self) -> list[str]:
        return [body["reason"] for _, body in self.received]


@pytest.fixture(autouse=True)
def _sink_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_TEST_SINK_TOKEN", SINK_TOKEN)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def syslog() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def write_config(tmp_path: Path, store_url: str, **audit: Any) -> Path:
    cfg = {"store": {"url": store_url}, "data_dir": str(tmp_path / "data"),
           "remediation": {"poll_interval": "0.1s"}, "logging": {"level": "warning"},
           "auth": {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, "audit": audit}
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "receiver", *argv], env=dict(os.environ),  # noqa: S603 - our own module
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return err.decode(errors="replace")


@pytest.mark.slow
def test_worker_writes_checkpoints_at_start_periodically_and_at_stop(
        store_url: str, tmp_path: Path, sink: Sink, syslog: socket.socket) -> None:
    """A real worker signs the head at start, every checkpoint_interval (following new
    entries) and at stop; the webhook gets each signed JSON with its bearer token, syslog a
    copy; the files verify and the chain verifies against them."""
    host, port = syslog.getsockname()
    path = write_config(
        tmp_path, store_url, checkpoint_interval="0.3s",
        sinks=[{"kind": "webhook", "url": sink.url, "bearer_token": "env:REMEDIATOR_TEST_SINK_TOKEN"},
               {"kind": "syslog", "address": f"{host}:{port}"}])
    config = load_config(path)
    proc = spawn(["worker", "-c", str(path)])
    try:
        wait_until(lambda: "start" in sink.reasons(), 30, "the start checkpoint")
        wait_until(lambda: sink.reasons().count("interval") >= 2, 15, "two interval checkpoints")
        store = open_store(store_url, **store_options(config))
        with store.db.transaction() as tx:
            audit_store.append(tx, at=datetime.now(UTC), actor="user:alice", action="test.x",
                               subject="thing:1")
        head = store.audit_head()
        wait_until(lambda: any(b["seq"] == head.seq and b["reason"] == "interval"
                               for _, b in sink.received), 15, "a checkpoint of the new head")
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err
    assert sink.reasons()[-1] == "stop", sink.reasons()
    key = audit_key(config, create=False)
    for auth, body in sink.received:
        assert auth == f"Bearer {SINK_TOKEN}"
        cp = open_checkpoint(key, body)
        assert cp.process.startswith("worker ")
    assert sink.received[-1][1]["seq"] == head.seq
    message = syslog.recv(65536).decode()
    assert "remediator-audit-checkpoint: " in message
    open_checkpoint(key, json.loads(message.split("remediator-audit-checkpoint: ", 1)[1]
                                    .rstrip("\x00")))
    directory = tmp_path / "data" / "audit-checkpoints"
    found = read_checkpoints(directory, key)
    assert found.problems == () and max(c.seq for c in found.checkpoints) == head.seq
    newest = max(found.checkpoints, key=lambda c: (c.seq, c.at))
    assert newest.reason == "stop"
    r = store.verify_audit()
    store.close()
    assert r.ok and r.checkpoint is not None and r.checkpoint.seq == head.seq, r.problems


@pytest.mark.slow
def test_serve_writes_checkpoints_at_start_and_stop(tmp_path: Path, sink: Sink) -> None:
    """`remediator serve` (SQLite, no embedded worker) signs the head when it starts and
    when it stops."""
    url = f"sqlite:///{tmp_path}/serve.db"
    path = write_config(tmp_path, url, sinks=[{"kind": "webhook", "url": sink.url}])
    port = free_port()
    proc = spawn(["serve", "-c", str(path), "--no-worker", "--bind", f"127.0.0.1:{port}",
                  "--workers", "1"])
    try:
        wait_until(lambda: "start" in sink.reasons(), 30, "the start checkpoint")
        start = sink.received[0][1]
        assert start["seq"] >= 1 and start["process"].startswith("serve ")  # config.loaded
    finally:
        err = stop(proc)
    wait_until(lambda: "stop" in sink.reasons(), 5, f"the stop checkpoint; stderr: {err}")
    key = audit_key(load_config(path), create=False)
    assert [open_checkpoint(key, b).reason for _, b in sink.received] == ["start", "stop"]


def test_unreachable_sink_does_not_stop_the_checkpoint(store_url: str, tmp_path: Path) -> None:
    """A webhook sink that refuses connections is logged; the file is written anyway."""
    from receiver.audit.checkpoints import write_checkpoint

    path = write_config(tmp_path, store_url, sinks=[
        {"kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/x", "timeout": "1s"}])
    config = load_config(path)
    store = open_store(store_url, **store_options(config))
    try:
        body = write_checkpoint(store, config, reason="start", process="pytest")
    finally:
        store.close()
    assert body is not None
    files = list((tmp_path / "data" / "audit-checkpoints").glob("*.json"))
    assert [json.loads(f.read_text())["mac"] for f in files] == [body["mac"]]
