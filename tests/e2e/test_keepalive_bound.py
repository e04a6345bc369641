"""Kept-alive connections are bounded: a real ``remediator serve`` answers a connection's
``server.keepalive_requests``-th request, or its first request past
``server.keepalive_lifetime``, with ``Connection: close`` and closes it, and the client's
next request, on a new connection, is answered as usual."""

from __future__ import annotations

import http.client as httpclient
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Remediator, Stack

pytestmark = pytest.mark.slow


def _serve(stack: Stack, **server: object) -> Remediator:
    config = stack.receiver_config(stack.database(), rules=[], targets={})
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["server"].update(server)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return stack.serve(Path(config), worker=False)


def _connection(rcv: Remediator) -> httpclient.HTTPConnection:
    host, port = rcv.url.removeprefix("http://").split(":")
    return httpclient.HTTPConnection(host, int(port), timeout=10)


def _get(conn: httpclient.HTTPConnection, path: str = "/healthz") -> tuple[int, str, int]:
    """(status, Connection header, the client's local port for this request)."""
    conn.request("GET", path)
    assert conn.sock is not None
    port = conn.sock.getsockname()[1]
    resp = conn.getresponse()
    resp.read()
    return resp.status, (resp.getheader("Connection") or "").lower(), port


def _webhook(conn: httpclient.HTTPConnection, token: str) -> int:
    name = f"KeepAlive{uuid.uuid4().hex[:6]}"
    alert = {"status": "firing", "labels": {"alertname": name, "severity": "warning"},
             "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090",
             "fingerprint": "00000000000000aa"}
    body = json.dumps({"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}',
                       "truncatedAlerts": 0, "status": "firing", "receiver": "remediator",
                       "groupLabels": {"alertname": name}, "commonLabels": {"alertname": name},
                       "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
                       "alerts": [alert]})
    conn.request("POST", "/api/v1/alerts", body=body.encode(),
                 headers={"Authorization": f"Bearer {token}",
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_connection_is_closed_with_its_last_allowed_response(stack: Stack) -> None:
    """The third response of a connection (keepalive_requests: 3) says Connection: close,
    the server closes it, and the next request gets its answer on a new connection."""
    rcv = _serve(stack, keepalive_requests=3, keepalive_lifetime="10m")
    conn = _connection(rcv)
    try:
        answers = [_get(conn) for _ in range(3)]
        assert [a[0] for a in answers] == [200, 200, 200]
        assert [a[1] == "close" for a in answers] == [False, False, True]
        assert len({a[2] for a in answers}) == 1, "the first three share one connection"
        assert conn.sock is None, "http.client closes a connection the server said it closes"
        assert _webhook(conn, rcv.token) == 200
        assert conn.sock is not None
        after = _get(conn)
        assert after[0] == 200 and after[2] != answers[0][2], "a new connection"
    finally:
        conn.close()


def test_server_closes_the_socket_after_the_bound(stack: Stack) -> None:
    """A client that ignores Connection: close finds the socket closed by the server."""
    rcv = _serve(stack, keepalive_requests=1, keepalive_lifetime="10m")
    host, port = rcv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        assert b"connection: close" in data.lower()


def test_connection_is_closed_once_older_than_its_lifetime(stack: Stack) -> None:
    """A connection older than keepalive_lifetime is closed with its next response, not
    while idle: the request sent after the lifetime passed is answered."""
    rcv = _serve(stack, keepalive_requests=1000, keepalive_lifetime="1s")
    conn = _connection(rcv)
    try:
        first = _get(conn)
        assert first[0] == 200 and first[1] != "close"
        time.sleep(1.3)
        late = _get(conn)
        assert late[0] == 200 and late[1] == "close" and late[2] == first[2]
        again = _get(conn)
        assert again[0] == 200 and again[2] != first[2]
    finally:
        conn.close()
