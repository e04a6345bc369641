"""Slack Events API contract tests (``POST /slack/events``). No Slack server can run here, so
these tests send the payloads of Slack's Events API documentation (``url_verification``,
``event_callback`` with a ``message`` event), signed as Slack signs them, and check
remediator's answers and effects; their names say so (``test_contract_...``). They prove the
shapes remediator reads, not Slack's behaviour.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.web.slack import signature
from receiver.web.slack_events import command_text
from tests.conftest import TOKEN
from tests.test_slack_contract import (
    ALICE,
    BOB,
    BOT_TOKEN,
    EVE,
    MALLORY,
    SIGNING_SECRET,
    Env,
    SlackApi,
    audit,
    awaiting,
    disk_full,
    job_state,
    make_env,
    ready_room,
)

# Slack's documented url_verification example (Events API, "URL verification")
CHALLENGE = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
             "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
             "type": "url_verification"}


@pytest.fixture(autouse=True)
def _slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_SECRET", SIGNING_SECRET)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    api = SlackApi()
    api.thread.start()
    made = make_env(tmp_path, api)
    yield made
    made.store.close()
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def env_both(tmp_path: Path, store_url: str) -> Iterator[Env]:
    """An Env on each store (SQLite and PostgreSQL)."""
    api = SlackApi()
    api.thread.start()
    made = make_env(tmp_path, api, store_url)
    yield made
    made.store.close()
    api.server.shutdown()
    api.server.server_close()


def callback(event_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """An event_callback envelope as Slack's documentation shows it."""
    return {"token": "XXYYZZ", "team_id": "T0TEAM", "api_app_id": "A0APP",
            "event": event, "type": "event_callback", "event_id": event_id,
            "event_time": int(time.time()), "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ",
            "authorizations": [{"team_id": "T0TEAM", "user_id": "U0BOT", "is_bot": True}],
            "is_ext_shared_channel": False}


def message(channel: str, user: str, text: str, **over: Any) -> dict[str, Any]:
    """A ``message`` event (message.groups: a private channel) as Slack documents it."""
    return {"type": "message", "channel": channel, "user": user, "text": text,
            "ts": f"{time.time():.6f}", "event_ts": f"{time.time():.6f}",
            "channel_type": "group", "team": "T0TEAM"} | over


def post(env: Env, payload: Any, *, raw: bytes | None = None, secret: str = SIGNING_SECRET,
         at: float | None = None, headers: dict[str, str] | None = None) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    stamp = str(int(at if at is not None else time.time()))
    return env.app.test_client().post("/slack/events", data=body, headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature(secret, stamp, body)} | (headers or {}))


def incident(env: Env, incident_id: int) -> Any:
    with env.store.unit(write=False) as uow:
        return uow.incidents.get(incident_id)


def test_contract_url_verification_is_answered_with_the_challenge(env: Env) -> None:
    """Contract (Slack's documented handshake, no Slack server): a signed url_verification
    is answered 200 with its challenge; unsigned, it is a 401; without a challenge, a 400
    naming the field."""
    answer = post(env, CHALLENGE)
    assert answer.status_code == 200 and answer.get_json() == {
        "challenge": CHALLENGE["challenge"]}
    unsigned = env.app.test_client().post("/slack/events", json=CHALLENGE)
    assert unsigned.status_code == 401 and unsigned.get_json()["error"] == "bad_signature"
    bad = post(env, {"type": "url_verification"})
    assert bad.status_code == 400 and bad.get_json()["detail"][0]["field"] == "challenge"


def test_contract_alice_acks_in_the_channel_once_and_a_retry_does_nothing(env_both: Env
                                                                        ) -> None:
    """Contract (Slack's message event shape, no Slack server): ``!ack`` by alice in the
    incident's channel acknowledges it as alice (commander, audited with the Slack user and
    event id); Slack's retry of the same event_id (new signature, X-Slack-Retry-Num) does
    nothing; the same text outside an incident channel is ignored (on each store)."""
    env = env_both
    env.fire(disk_full())
    room = ready_room(env)
    assert incident(env, room.incident_id).acknowledged_at is None
    event = callback("Ev0ACK0001", message(room.room_id, ALICE, "!ack on it"))
    answer = post(env, event)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["outcome"] == "done"
    after = incident(env, room.incident_id)
    assert after.acknowledged_at is not None and after.assignee == "alice"
    acked = audit(env, "incident.acknowledged")
    assert len(acked) == 1 and acked[0]["actor"] == "user:alice"
    assert acked[0]["origin"]["chat_user"] == ALICE
    assert acked[0]["origin"]["event_id"] == "Ev0ACK0001"
    retry = post(env, event, at=time.time() + 1, headers={"X-Slack-Retry-Num": "1",
                                                          "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200 and retry.get_json()["outcome"] == "duplicate"
    assert len(audit(env, "incident.acknowledged")) == 1
    elsewhere = post(env, callback("Ev0ACK0002", message("C0GENERAL", ALICE, "!ack")))
    assert elsewhere.get_json()["outcome"] == "ignored"
    # Slack's retries reaching four workers at the same instant: one note, three duplicates
    note = callback("Ev0NOTE001", message(room.room_id, BOB, "!note disk at 99%"))
    barrier, outcomes = threading.Barrier(4), []

    def deliver(n: int) -> None:
        barrier.wait()
        outcomes.append(post(env, note, at=time.time() + n).get_json()["outcome"])

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["done", "duplicate", "duplicate", "duplicate"]


def test_contract_mallory_is_refused_and_audited_and_eve_may_not_approve(env: Env) -> None:
    """Contract (no Slack server): ``!ack`` by a Slack user mapped to nobody (mallory) is
    refused and audited as ``chat:<id>``; ``!approve <job>`` by mallory and by eve (outside
    the approving group) decides nothing, each refusal audited; alice's ``!approve`` does."""
    room, request = awaiting(env)
    ack = post(env, callback("Ev0MAL0001", message(room.room_id, MALLORY, "!ack")))
    assert ack.status_code == 200
    assert ack.get_json()["outcome"] == "refused:unknown_chat_identity"
    assert incident(env, room.incident_id).acknowledged_at is None
    refused = audit(env, "chat.refused")
    assert [e["actor"] for e in refused] == [f"chat:{MALLORY}"]
    assert refused[0]["origin"]["via"] == "slack"
    assert refused[0]["origin"]["event_id"] == "Ev0MAL0001"
    job = request.job_id
    by_mallory = post(env, callback("Ev0MAL0002", message(room.room_id, MALLORY,
                                                          f"!approve {job}")))
    by_eve = post(env, callback("Ev0EVE0001", message(room.room_id, EVE, f"!approve {job}")))
    assert by_mallory.get_json()["outcome"] == "refused:unknown_chat_identity"
    assert by_eve.get_json()["outcome"] == "refused:not_allowed"
    assert job_state(env, job) == "awaiting_approval"
    assert {e["actor"] for e in audit(env, "approval.refused")} == {
        f"chat:{MALLORY}", "user:eve"}
    by_alice = post(env, callback("Ev0ALI0001", message(room.room_id, ALICE,
                                                        f"!approve {job} looks right")))
    assert by_alice.get_json()["outcome"] == "approved"


def test_contract_assign_by_mention_and_escaped_note_text(env: Env) -> None:
    """Contract (no Slack server): Slack writes a mention as ``<@U…>`` and escapes ``&``,
    ``<`` and ``>``: ``!assign <@bob's id>`` makes bob the commander, and a note keeps the
    characters as written."""
    env.fire(disk_full())
    room = ready_room(env)
    assign = post(env, callback("Ev0ASG0001", message(room.room_id, ALICE,
                                                      f"!assign <@{BOB}|bob>")))
    assert assign.get_json()["outcome"] == "done"
    assert incident(env, room.incident_id).assignee == "bob"
    assert command_text("!note a &lt; b &amp;&amp; c &gt; d", {}) == "!note a < b && c > d"
    assert command_text("!note &amp;lt;", {}) == "!note &lt;"


def test_contract_bad_signatures_are_a_401(env: Env) -> None:
    """Contract (Slack's v0 signing, no Slack server): another secret, a stale timestamp,
    no signature and the same signed request twice are 401 JSON, and nothing is done."""
    env.fire(disk_full())
    room = ready_room(env)
    event = callback("Ev0SIG0001", message(room.room_id, ALICE, "!ack"))
    forged = post(env, event, secret="guessed")
    assert forged.status_code == 401 and forged.get_json()["error"] == "bad_signature"
    stale = post(env, event, at=time.time() - 301)
    assert stale.status_code == 401 and stale.get_json()["error"] == "bad_signature"
    assert env.app.test_client().post("/slack/events", json=event).status_code == 401
    assert incident(env, room.incident_id).acknowledged_at is None
    body, stamp = json.dumps(event).encode(), str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": signature(SIGNING_SECRET, stamp, body)}
    client = env.app.test_client()
    assert client.post("/slack/events", data=body, headers=headers).status_code == 200
    again = client.post("/slack/events", data=body, headers=headers)
    assert again.status_code == 401 and again.get_json()["error"] == "replayed"


def test_contract_bot_messages_edits_and_plain_talk_are_ignored(env: Env) -> None:
    """Contract (Slack's documented subtypes, no Slack server): a ``bot_message``, a message
    of our own bot user, an edit (``message_changed``) whose new text is ``!ack``, a thread
    broadcast and plain talk are acknowledged and ignored: nothing happens."""
    env.fire(disk_full())
    room = ready_room(env)
    cases = [
        message(room.room_id, "U0BOT", "!ack", bot_id="B0BOT"),
        message(room.room_id, "U0BOT", "!ack"),
        {"type": "message", "subtype": "bot_message", "channel": room.room_id,
         "bot_id": "B0OTHER", "text": "!ack", "ts": "1355517523.000005"},
        {"type": "message", "subtype": "message_changed", "channel": room.room_id,
         "hidden": True, "ts": "1358878755.000001",
         "message": {"type": "message", "user": ALICE, "text": "!ack",
                     "ts": "1355517523.000005", "edited": {"user": ALICE, "ts": "1"}}},
        message(room.room_id, ALICE, "!ack", subtype="thread_broadcast"),
        message(room.room_id, ALICE, "we should ack this"),
        {"type": "reaction_added", "user": ALICE, "reaction": "white_check_mark",
         "item": {"type": "message", "channel": room.room_id, "ts": "1.2"}},
    ]
    for n, event in enumerate(cases):
        answer = post(env, callback(f"Ev0IGN{n:04d}", event))
        assert answer.status_code == 200, (n, answer.get_json())
        assert answer.get_json()["outcome"] == "ignored", n
    assert post(env, {"type": "app_rate_limited", "minute_rate_limited": 1}).status_code == 200
    assert incident(env, room.incident_id).acknowledged_at is None
    assert audit(env, "chat.refused") == []


def test_contract_bad_payloads_get_a_4xx_naming_the_field(env: Env) -> None:
    """Contract (no Slack server): a signed body that is not JSON, not an object, without a
    type, without an event_id, with a malformed channel or text, or form-encoded, gets a
    4xx JSON naming the field."""
    cases: list[tuple[bytes, str]] = [
        (b"\xff{", "(body)"), (b"[1]", "(body)"), (b"{}", "type"),
        (json.dumps({"type": "event_callback", "event": {}}).encode(), "event_id"),
        (json.dumps(callback("Ev1", message("not a channel", ALICE, "!ack"))).encode(),
         "event.channel"),
        (json.dumps(callback("Ev2", message("C0X", ALICE, 5))).encode(),  # type: ignore[arg-type]
         "event.text"),
        (json.dumps(callback("Ev3", "x")).encode(), "event"),  # type: ignore[arg-type]
        (b"[" * 100_000, "(body)"),
    ]
    for raw, field in cases:
        answer = post(env, None, raw=raw)
        assert answer.status_code == 400, (raw[:40], answer.get_json())
        assert answer.get_json()["detail"][0]["field"] == field, raw[:40]
    form = post(env, None, raw=b"payload=%7B%7D",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415


# -- generated payloads ---------------------------------------------------------------------

_shared: dict[str, Any] = {}


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
        mp.setenv("REMEDIATOR_TEST_SLACK_TOKEN", BOT_TOKEN)
        mp.setenv("REMEDIATOR_TEST_SLACK_SECRET", SIGNING_SECRET)
        api = SlackApi()
        api.thread.start()
        made = make_env(tmp_path_factory.mktemp("events"), api)
        made.fire(disk_full())
        room = ready_room(made)
        _shared["room"] = room
        yield made
        made.store.close()
        api.server.shutdown()
        api.server.server_close()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_ids = st.sampled_from([ALICE, MALLORY, EVE, "U0BOT", "not an id", ""]) | st.text(max_size=12)
_texts = st.sampled_from(["!ack", "!status", "!note x", "!assign <@U0BOB>", "!approve 1",
                          "!public a | b", "!resolve", "!deny 99 no"]) | st.text(max_size=60)


@st.composite
def _payloads(draw: st.DrawFn) -> Any:
    """A documented envelope and message event, often with one field made hostile."""
    event: dict[str, Any] = {
        "type": "message", "channel": draw(st.sampled_from([_shared["room"].room_id,
                                                            "C0OTHER"])),
        "user": draw(_ids), "text": draw(_texts)}
    if draw(st.booleans()):
        event[draw(st.sampled_from(["type", "channel", "user", "text", "subtype", "bot_id",
                                    "ts"]))] = draw(_json)
    envelope: dict[str, Any] = {"type": "event_callback", "event": event,
                                "event_id": draw(st.from_regex(r"\AEv[A-Z0-9]{1,8}\Z"))}
    if draw(st.booleans()):
        envelope[draw(st.sampled_from(["type", "event_id", "event", "challenge"]))] = draw(
            _json)
    shape = draw(st.integers(0, 5))
    return envelope if shape < 4 else event if shape == 4 else draw(_json)


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(_payloads())
def test_contract_any_signed_event_is_answered_below_500(shared_env: Env, payload: Any
                                                         ) -> None:
    """Contract (no Slack server): whatever a signed JSON body holds (generated event
    shapes, ids and commands), the answer is a 2xx or 4xx JSON, never a 5xx."""
    answer = post(shared_env, payload)
    assert answer.status_code < 500, (payload, answer.get_data()[:300])
    assert answer.is_json


def test_contract_control_characters_in_commands_are_not_a_5xx(env_both: Env) -> None:
    """Contract (no Slack server): NUL and other control characters in a command's text
    (which PostgreSQL refuses in text columns) are handled, never a 5xx, on each store."""
    env = env_both
    env.fire(disk_full())
    room = ready_room(env)
    for n, text in enumerate(["!note a\x00b", "!ack \x00", "!public t\x00 | b\x1b[0m",
                              "!assign \x00bob", "!resolve \x7f\x00", "!status \x00"]):
        answer = post(env, callback(f"Ev0NUL{n:04d}", message(room.room_id, ALICE, text)))
        assert answer.status_code == 200, (text, answer.get_data()[:300])
        assert answer.get_json()["outcome"] != "ignored", text
