"""Which events of a Matrix room's timeline remediator reads as a decision or a command.

An edit (``m.relates_to`` ``rel_type: m.replace``) is a new event whose body any client
renders as a change of an earlier message: ``!approve 12`` written into an old "hello"
would otherwise approve now, in the name of a message that said nothing of the kind when
it was sent. Edits are never read as commands, nor as reactions. The homeserver here is a
real local HTTP server answering ``/sync`` with the given timeline.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.comms.chat import text
from receiver.comms.chat.matrix import MatrixBackend
from receiver.config import parse_config

TOKEN_ENV = "REMEDIATOR_TEST_MATRIX_TOKEN"
ROOM = "!room:example.org"


class _Sync(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server: Any = self.server
        body = json.dumps({"next_batch": "s2", "rooms": {"join": {ROOM: {"timeline": {
            "events": server.events, "limited": False}}}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _homeserver() -> Iterator[Any]:
    srv: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sync)
    srv.events = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def homeserver() -> Iterator[tuple[Any, MatrixBackend]]:
    with _homeserver() as srv, pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, "syt_bot_token_0123456789")
        config = parse_config({"chat": {"matrix": {
            "homeserver": f"http://127.0.0.1:{srv.server_address[1]}",
            "user_id": "@remediator:example.org", "access_token": f"env:{TOKEN_ENV}"}}})
        assert config.chat.matrix is not None
        yield srv, MatrixBackend(config.chat.matrix)


def _read(homeserver: tuple[Any, MatrixBackend], events: list[dict[str, Any]]) -> list[Any]:
    srv, backend = homeserver
    srv.events = events
    return list(backend.sync("s1", 0).events)


def _edit(body: str, new_body: str, n: int = 1) -> dict[str, Any]:
    return {"type": "m.room.message", "event_id": f"$edit{n}", "sender": "@alice:example.org",
            "content": {"msgtype": "m.text", "body": body,
                        "m.new_content": {"msgtype": "m.text", "body": new_body},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": "$old"}}}


def test_a_plain_command_is_read(homeserver: Any) -> None:
    """The baseline: a new message ``!approve 12`` is read as the text it is."""
    events = _read(homeserver, [{"type": "m.room.message", "event_id": "$m1",
                                 "sender": "@alice:example.org",
                                 "content": {"msgtype": "m.text", "body": "!approve 12"}}])
    assert [(e.kind, e.body) for e in events] == [("text", "!approve 12")]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=st.integers(min_value=1, max_value=2**31),
       prefix=st.sampled_from(["", "* ", " "]),
       command=st.sampled_from(["approve", "deny", "ack", "resolve", "note x", "status"]))
@example(job=12, prefix="", command="approve")
def test_an_edit_is_never_a_decision_or_a_command(homeserver: Any, job: int, prefix: str,
                                                   command: str) -> None:
    """Whatever an edit's body and new content say, it is not read at all (while the same
    text as a new message would be a command)."""
    body = f"!{command} {job}" if command in ("approve", "deny") else f"!{command}"
    assert text.parse_command(body) is not None
    events = _read(homeserver, [_edit(prefix + body, body)])
    assert events == []
