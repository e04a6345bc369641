"""``POST /slack/interactivity`` from anyone: before its signature is checked, the request
is a stranger's, so whatever its headers say, the answer is a 4xx JSON error, never a 5xx
(and nothing is decided). Runs the real app on SQLite; no Slack server is called."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.config import parse_config
from receiver.store import open_store

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_TOKEN", "xoxb-test-0123456789-abcdef")
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_SECRET", SIGNING_SECRET)
    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    cfg = parse_config({"data_dir": str(tmp_path),
                        "auth": {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, "chat": {"slack": {
        "bot_token": "env:REMEDIATOR_TEST_SLACK_TOKEN",
        "signing_secret": "env:REMEDIATOR_TEST_SLACK_SECRET",
        "api_url": "http://127.0.0.1:9/api/"}}})
    yield create_app(cfg, store=store).test_client()
    store.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timestamp=st.one_of(st.integers().map(str), st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xff), min_size=1, max_size=500)))
@example(timestamp="9" * 400)        # int() takes it; comparing it with a float overflowed
@example(timestamp="-" + "9" * 400)
@example(timestamp="1" * 5000)       # past int()'s digit limit
def test_any_timestamp_header_is_a_401(client: Any, timestamp: str) -> None:
    r = client.post("/slack/interactivity", data=b"payload=%7B%7D",
                    headers={**FORM, "X-Slack-Request-Timestamp": timestamp,
                             "X-Slack-Signature": "v0=" + "0" * 64})
    assert r.status_code == 401, (r.status_code, r.data[:300])
    assert r.json["error"] == "bad_signature"
