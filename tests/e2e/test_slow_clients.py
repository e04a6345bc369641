"""Slow or hostile clients cannot stop the webhook: a real ``remediator serve``, started with
the Dockerfile's CMD (so with serve's defaults), keeps answering ``/healthz`` and an
authenticated webhook POST while 50 sockets trickle headers or bodies at it.

The trickling clients are bounded: each sends a line (or a few bytes) every second for a
few seconds and then stops, so a failing run does not hang.
"""

from __future__ import annotations

import http.client as httpclient
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import Remediator, Stack, wait_for
from tests.support import free_port, http

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 50
ANSWER_BOUND_S = 5.0  # generous; the measured figures are printed (about 10 ms here)


def dockerfile_cmd() -> list[str]:
    """The argv of the Dockerfile's CMD (exec form)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert found, "the Dockerfile has no exec-form CMD"
    argv: list[str] = json.loads(found.group(1))
    return argv


def serve_like_the_image(stack: Stack, config: Path) -> Remediator:
    """The Dockerfile's CMD, with only the bind address moved to a free loopback port and
    the config passed the way the image passes it (``REMEDIATOR_CONFIG``)."""
    argv = dockerfile_cmd()
    assert argv[:2] == ["remediator", "serve"], argv
    port = free_port()
    bind = argv.index("--bind")
    argv[bind + 1] = f"127.0.0.1:{port}"
    env = {**stack._env(config), "REMEDIATOR_CONFIG": str(config)}
    proc = stack.spawn("serve", [sys.executable, "-m", "receiver", *argv[1:]], env)
    rcv = Remediator(f"http://127.0.0.1:{port}", stack.token, stack.api_token,
                     stack._db_urls[config], proc)

    def ready() -> bool:
        if not proc.running():
            raise RuntimeError(f"remediator serve exited:\n{proc.log()[-4000:]}")
        try:
            return http("GET", rcv.url + "/readyz", timeout=1.0)[0] == 200
        except OSError:
            return False

    wait_for(ready, 30.0, "the receiver's /readyz")
    return rcv


def notification(alertname: str) -> bytes:
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{alertname="{alertname}"}}', "status": "firing",
        "receiver": "remediator", "groupLabels": {"alertname": alertname},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example:9093",
        "alerts": [{"status": "firing", "labels": {"alertname": alertname},
                    "annotations": {}, "startsAt": "2024-05-01T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z"}],
    }).encode()


class Trickler:
    """``count`` sockets that each send ``opening`` and then ``drip`` once a second, for at
    most ``seconds``; closed when the block ends."""

    def __init__(self, port: int, opening: bytes, drip: bytes, count: int, seconds: float):
        self.port, self.opening, self.drip = port, opening, drip
        self.count, self.seconds = count, seconds
        self.socks: list[socket.socket] = []
        self._stop = threading.Event()

    @contextmanager
    def running(self) -> Iterator[Trickler]:
        for _ in range(self.count):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(self.opening)
            self.socks.append(s)
        thread = threading.Thread(target=self._drip, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)
            for s in self.socks:
                s.close()

    def _drip(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.wait(1.0) and time.monotonic() < deadline:
            for s in self.socks:
                try:
                    s.sendall(self.drip)
                except OSError:
                    pass

    def still_open(self) -> int:
        """How many of the sockets the server has neither answered nor closed."""
        n = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                data = s.recv(1)
            except BlockingIOError:
                n += 1
                continue
            except OSError:
                continue
            finally:
                s.setblocking(True)
            if data:  # an answer: not what a slow client waiting for one should get yet
                continue
        return n


def timed_answers(rcv: Remediator, alertname: str) -> dict[str, tuple[int, float]]:
    """GET /healthz, then an authenticated webhook POST, each on a new connection."""
    out: dict[str, tuple[int, float]] = {}
    host, port = rcv.url.removeprefix("http://").split(":")
    for name, method, path, body, headers in (
        ("healthz", "GET", "/healthz", None, {}),
        ("webhook", "POST", "/api/v1/alerts", notification(alertname),
         {"Authorization": f"Bearer {rcv.token}", "Content-Type": "application/json"}),
    ):
        conn = httpclient.HTTPConnection(host, int(port), timeout=15)
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            out[name] = (resp.status, time.monotonic() - started)
        except OSError as exc:
            out[name] = (0, time.monotonic() - started)
            print(f"{name}: {exc!r}")
        finally:
            conn.close()
    return out


def _config(stack: Stack, **server: object) -> Path:
    config = stack.receiver_config(stack.database(), rules=[], targets={})
    if server:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        cfg["server"].update(server)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return config


def _assert_answers(rcv: Remediator, trickler: Trickler, what: str) -> None:
    time.sleep(1.5)  # every slow socket has been accepted and sent at least one drip
    answers = timed_answers(rcv, f"SlowClients{uuid.uuid4().hex[:6]}")
    held = trickler.still_open()
    print(f"\n{what}: {held} of {trickler.count} slow sockets open; "
          + ", ".join(f"{k} {s} in {t * 1000:.1f} ms" for k, (s, t) in answers.items()))
    assert held == trickler.count, "the slow sockets must still be open while we measure"
    for name, (status, took) in answers.items():
        assert status == 200, f"{name} answered {status} with {what} open"
        assert took < ANSWER_BOUND_S, f"{name} took {took:.2f}s with {what} open"


def test_slow_headers_do_not_stop_healthz_or_webhook(stack: Stack) -> None:
    """50 sockets sending a header line every second hold no thread: /healthz and an
    authenticated POST both answer 200 at once, with the image's CMD and serve's defaults."""
    rcv = serve_like_the_image(stack, _config(stack))
    port = int(rcv.url.rsplit(":", 1)[1])
    slow = Trickler(port, b"GET /healthz HTTP/1.1\r\nHost: slow\r\n", b"X-Slow: 1\r\n",
                    SLOW_CLIENTS, seconds=6)
    with slow.running():
        _assert_answers(rcv, slow, "50 slowloris sockets")


def test_slow_bodies_do_not_stop_healthz_or_webhook(stack: Stack) -> None:
    """50 clients trickling a body (25 unauthenticated webhook POSTs, 25 login forms, which
    are read before any credential is known) hold no thread either."""
    rcv = serve_like_the_image(stack, _config(stack))
    port = int(rcv.url.rsplit(":", 1)[1])
    webhook = Trickler(
        port,
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500000\r\n\r\n{",
        b" ", SLOW_CLIENTS // 2, seconds=6)
    login = Trickler(
        port,
        b"POST /login HTTP/1.1\r\nHost: slow\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: 100000\r\n\r\nusername=",
        b"a", SLOW_CLIENTS // 2, seconds=6)
    with webhook.running(), login.running():
        time.sleep(1.5)
        answers = timed_answers(rcv, f"SlowBodies{uuid.uuid4().hex[:6]}")
        held = webhook.still_open() + login.still_open()
        print(f"\n50 slow bodies: {held} open; "
              + ", ".join(f"{k} {s} in {t * 1000:.1f} ms" for k, (s, t) in answers.items()))
        assert held == SLOW_CLIENTS
        for name, (status, took) in answers.items():
            assert status == 200, f"{name} answered {status}"
            assert took < ANSWER_BOUND_S, f"{name} took {took:.2f}s"


def test_slow_clients_are_cut_off_at_their_deadlines(stack: Stack) -> None:
    """A client that has not sent its headers within server.header_timeout, or its body
    within server.body_timeout, is disconnected; a prompt client keeps its connection
    alive across requests."""
    rcv = serve_like_the_image(stack, _config(stack, header_timeout="2s", body_timeout="2s"))
    port = int(rcv.url.rsplit(":", 1)[1])
    heads = Trickler(port, b"GET /healthz HTTP/1.1\r\n", b"X-Slow: 1\r\n", 5, seconds=8)
    bodies = Trickler(
        port,
        b"POST /api/v1/alerts HTTP/1.1\r\nHost: slow\r\nAuthorization: Bearer "
        + rcv.token.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{",
        b" ", 5, seconds=8)
    with heads.running(), bodies.running():
        started = time.monotonic()
        wait_for(lambda: heads.still_open() == 0 and bodies.still_open() == 0, 6.0,
                 "the server to close the slow sockets")
        took = time.monotonic() - started
    print(f"\nslow sockets closed after {took:.1f}s (deadlines 2s)")
    assert took >= 1.0, "closed before their deadline"

    host, port_text = rcv.url.removeprefix("http://").split(":")
    conn = httpclient.HTTPConnection(host, int(port_text), timeout=5)
    sockets = set()
    for i in range(3):
        conn.request("POST", "/api/v1/alerts", body=notification(f"KeepAlive{i}"),
                     headers={"Authorization": f"Bearer {rcv.token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("Connection") == "keep-alive"
        sockets.add(id(conn.sock))
        time.sleep(0.5)
    conn.close()
    assert len(sockets) == 1, "the three requests shared one kept-alive connection"
