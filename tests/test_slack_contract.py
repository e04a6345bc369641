"""Slack contract tests. No Slack server can run here, so these tests check remediator
against Slack's published contract only, and their names say so (``test_contract_...``):

- the request signature against the example values of Slack's "Verifying requests from
  Slack" page, and wrong, expired and replayed signatures;
- the Web API calls against :class:`SlackApi`, a local HTTP server on 127.0.0.1 that checks
  each request against the method's documented shape (POST to ``/api/<method>``, the
  bot token as ``Authorization: Bearer``, the content type, the required arguments) and
  answers like Slack (``{"ok": true, ...}`` / ``{"ok": false, "error": ...}``), with
  outages on demand (HTTP 500, ``ratelimited`` with ``Retry-After``, or an answer lost
  after the call took effect).

They prove the shapes remediator sends and reads, not Slack's behaviour.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.comms.chat import ChatService, inbound
from receiver.comms.chat.base import Inbound
from receiver.comms.chat.slack import APPROVE_ACTION, DENY_ACTION, SlackBackend, mrkdwn_escape
from receiver.config import Config, parse_config
from receiver.errors import ConfigError
from receiver.incidents import lifecycle
from receiver.intake.engine import utcnow
from receiver.intake.severity import Severity
from receiver.remediation.worker import Worker
from receiver.store import AuditFilter, Store, open_store
from receiver.web.errors import ApiError
from receiver.web.slack import signature, verify
from tests.conftest import TOKEN
from tests.engine_kit import FakeAction
from tests.factories import make_alert, make_notification
from tests.support import free_port, wait_until

BOT_TOKEN = "xoxb-test-0123456789-abcdefABCDEF"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
PUBLIC_URL = "https://remediator.example"
# Slack's published example ("Verifying requests from Slack", api.slack.com)
EXAMPLE_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
EXAMPLE_TIMESTAMP = "1531420618"
EXAMPLE_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
    b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d1"
    b"0d2c447fce8b6703c")
EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

ALICE, BOB, EVE, MALLORY = "U0ALICE", "U0BOB", "U0EVE", "U0MALLORY"

# -- the local Slack Web API -------------------------------------------------------------------

REQUIRED = {  # method -> (content type, required arguments), per api.slack.com/methods
    "conversations.create": ("json", ("name",)),
    "conversations.setPurpose": ("json", ("channel", "purpose")),
    "conversations.setTopic": ("json", ("channel", "topic")),
    "conversations.invite": ("json", ("channel", "users")),
    "conversations.archive": ("json", ("channel",)),
    "conversations.history": ("form", ("channel",)),
    "conversations.list": ("form", ()),
    "chat.postMessage": ("json", ("channel",)),
    "chat.postEphemeral": ("json", ("channel", "user", "text")),
    "pins.add": ("json", ("channel", "timestamp")),
}


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool
    purpose: str = ""
    topic: str = ""
    members: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    archived: bool = False


class SlackApi:
    """Slack's Web API as documented, in memory, on 127.0.0.1."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.channels: dict[str, Channel] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.violations: list[str] = []
        self.outages: list[str] = []
        """What the next calls meet: ``500``, ``ratelimited``, ``lost`` (done, answer 500)."""
        self.ephemeral: list[dict[str, Any]] = []
        self._ts = 1_700_000_000_000
        self.port = free_port()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                api.violations.append(f"GET {self.path}")
                self._send(405, {"ok": False, "error": "method_not_allowed"})

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer, headers = api.handle(self.path, dict(self.headers), raw)
                self._send(status, answer, headers)

            def _send(self, status: int, answer: Any, headers: dict[str, str] | None = None
                      ) -> None:
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(answer, bytes)
                                 else "application/json; charset=utf-8")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def handle(self, path: str, headers: dict[str, str], raw: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        method = path.removeprefix("/api/")
        if not path.startswith("/api/") or method not in REQUIRED:
            self.violations.append(f"unknown method {path}")
            return 404, {"ok": False, "error": "unknown_method"}, {}
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        kind, required = REQUIRED[method]
        if auth != f"Bearer {BOT_TOKEN}":
            self.violations.append(f"{method}: Authorization {auth[:12]!r}")
            return 200, {"ok": False, "error": "not_authed"}, {}
        if kind == "json":
            if not ctype.startswith("application/json"):
                self.violations.append(f"{method}: content type {ctype}")
                return 200, {"ok": False, "error": "invalid_form_data"}, {}
            args = json.loads(raw or b"{}")
        else:
            if not ctype.startswith("application/x-www-form-urlencoded"):
                self.violations.append(f"{method}: content type {ctype}")
                return 200, {"ok": False, "error": "invalid_form_data"}, {}
            args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        missing = [a for a in required if not args.get(a)]
        if method == "chat.postMessage" and not (args.get("text") or args.get("blocks")):
            missing.append("text")
        if missing:
            self.violations.append(f"{method}: missing {missing}")
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        with self.lock:
            self.calls.append((method, args))
            outage = self.outages.pop(0) if self.outages else ""
            if outage == "500":
                return 500, b"Internal Server Error", {}
            if outage == "ratelimited":
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
            answer = self._apply(method, args)
        if outage == "lost":  # it took effect, and the answer never arrives
            return 500, b"upstream timed out", {}
        return 200, answer, {}

    def _next_ts(self) -> str:
        self._ts += 1
        return f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"

    def _apply(self, method: str, a: dict[str, Any]) -> dict[str, Any]:
        if method == "conversations.create":
            if any(c.name == a["name"] for c in self.channels.values()):
                return {"ok": False, "error": "name_taken"}
            cid = f"C{len(self.channels) + 1:08d}"
            self.channels[cid] = Channel(cid, a["name"], bool(a.get("is_private")))
            return {"ok": True, "channel": {"id": cid, "name": a["name"]}}
        if method == "conversations.list":
            return {"ok": True, "channels": [
                {"id": c.id, "name": c.name, "purpose": {"value": c.purpose}}
                for c in self.channels.values() if not c.archived],
                "response_metadata": {"next_cursor": ""}}
        channel = self.channels.get(str(a.get("channel")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if method == "conversations.setPurpose":
            channel.purpose = a["purpose"]
        elif method == "conversations.setTopic":
            if len(a["topic"]) > 250:
                return {"ok": False, "error": "too_long"}
            channel.topic = a["topic"]
        elif method == "conversations.invite":
            users = str(a["users"]).split(",")
            if all(u in channel.members for u in users):
                return {"ok": False, "error": "already_in_channel"}
            channel.members += [u for u in users if u not in channel.members]
        elif method == "conversations.archive":
            if channel.archived:
                return {"ok": False, "error": "already_archived"}
            channel.archived = True
        elif method == "conversations.history":
            return {"ok": True, "messages": list(reversed(channel.messages))[
                :int(a.get("limit") or 100)], "has_more": False}
        elif method == "chat.postMessage":
            if channel.archived:
                return {"ok": False, "error": "is_archived"}
            ts = self._next_ts()
            message = {"type": "message", "ts": ts, "text": a.get("text", ""),
                       "blocks": a.get("blocks") or []}
            if a.get("metadata"):
                message["metadata"] = a["metadata"]
            channel.messages.append(message)
            return {"ok": True, "channel": channel.id, "ts": ts, "message": message}
        elif method == "chat.postEphemeral":
            self.ephemeral.append(a)
            return {"ok": True, "message_ts": self._next_ts()}
        elif method == "pins.add":
            if a["timestamp"] in channel.pins:
                return {"ok": False, "error": "already_pinned"}
            channel.pins.append(a["timestamp"])
        return {"ok": True}

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


@pytest.fixture
def slack_api() -> Iterator[SlackApi]:
    api = SlackApi()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


# -- the receiver, wired to it ----------------------------------------------------------------

@pytest.fixture(autouse=True)
def _slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_SLACK_SECRET", SIGNING_SECRET)


def slack_section(url: str, **over: Any) -> dict[str, Any]:
    return {"bot_token": "env:REMEDIATOR_TEST_SLACK_TOKEN",
            "signing_secret": "env:REMEDIATOR_TEST_SLACK_SECRET", "api_url": url,
            "bot_user_id": "U0BOT", "timeout": "2s"} | over


@dataclass
class Env:
    config: Config
    store: Store
    app: Any
    worker: Worker
    playbook: FakeAction
    api: SlackApi

    def fire(self, alert: dict[str, Any], peers: int = 1) -> None:
        barrier = threading.Barrier(peers)
        answers: list[int] = []

        def post(n: int) -> None:
            client = self.app.test_client()
            body = make_notification([alert], external_url=f"http://am-{n}.example:9093")
            barrier.wait()
            answers.append(client.post("/api/v1/alerts", json=body, headers={
                "Authorization": f"Bearer {TOKEN}"}).status_code)

        threads = [threading.Thread(target=post, args=(n,)) for n in range(peers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200] * peers

    def deliver(self, replicas: int = 1) -> bool:
        """Run the chat delivery of ``replicas`` workers at the same instant (False, so that
        ``env.deliver() or check`` polls)."""
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
        return False

    def rooms(self) -> list[Any]:
        with self.store.unit(write=False) as uow:
            return uow.chat.rooms()

    def messages(self, incident_id: int) -> list[Any]:
        with self.store.unit(write=False) as uow:
            return uow.chat.messages(incident_id)

    def click(self, user: str, action_id: str, channel: str, ts: str, job_id: int,
              *, at: float | None = None, secret: str = SIGNING_SECRET) -> Any:
        body = self.click_body(user, action_id, channel, ts, job_id)
        return self.post_signed(body, at=at, secret=secret)

    def click_body(self, user: str, action_id: str, channel: str, ts: str, job_id: int
                   ) -> bytes:
        """A block_actions form body as Slack sends it for one button."""
        payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()},
                   "team": {"id": "T0TEAM"}, "channel": {"id": channel, "name": "incident"},
                   "container": {"type": "message", "message_ts": ts, "channel_id": channel},
                   "actions": [{"type": "button", "action_id": action_id,
                                "block_id": f"remediator_decide_{job_id}",
                                "value": str(job_id), "action_ts": f"{time.time():.6f}"}],
                   "trigger_id": "1.2.3", "response_url": "https://hooks.slack.com/actions/x"}
        return urlencode({"payload": json.dumps(payload)}).encode()

    def post_signed(self, body: bytes, *, at: float | None = None,
                    secret: str = SIGNING_SECRET, headers: dict[str, str] | None = None) -> Any:
        stamp = str(int(at if at is not None else time.time()))
        return self.app.test_client().post(
            "/slack/interactivity", data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "X-Slack-Request-Timestamp": stamp,
                     "X-Slack-Signature": signature(secret, stamp, body)} | (headers or {}))


def make_env(tmp_path: Path, api: SlackApi, url: str | None = None, **chat: Any) -> Env:
    store = open_store(url or f"sqlite:///{tmp_path}/remediator.db", pool_min=1, pool_max=8)
    store.migrate()
    playbook = FakeAction()
    cfg = parse_config({
        "data_dir": str(tmp_path / "data"),
        "auth": {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
        "server": {"secure_cookies": False, "public_url": PUBLIC_URL},
        "people": {"users": {
            "alice": {"groups": ["oncall"], "slack": ALICE},
            "bob": {"groups": ["oncall"], "slack": BOB},
            "eve": {"groups": ["web"], "slack": EVE},
        }},
        "rules": [{
            "name": "poke-after-approval", "matchers": ['alertname="DiskFull"'],
            "playbook": playbook.name, "params": {"target": "{{ labels.service }}"},
            "approval": {"mode": "required", "groups": ["oncall"]},
            "guards": {"cooldown": "0s"},
        }],
        "status_page": {"enabled": True},
        "chat": {"slack": slack_section(api.url), "archive_on_close": True,
                 "retry": {"backoff_initial": "50ms", "backoff_max": "200ms"}, **chat},
    }, registry={playbook.name: playbook})
    app = create_app(cfg, store=store)
    worker = Worker(cfg, store, worker_id="w-test", registry={playbook.name: playbook},
                    sleep=lambda _s: None)
    return Env(cfg, store, app, worker, playbook, api)


@pytest.fixture
def env(tmp_path: Path, slack_api: SlackApi) -> Iterator[Env]:
    made = make_env(tmp_path, slack_api)
    yield made
    made.store.close()


@pytest.fixture
def env_both(tmp_path: Path, slack_api: SlackApi, store_url: str) -> Iterator[Env]:
    """An Env on each store (SQLite and PostgreSQL)."""
    made = make_env(tmp_path, slack_api, store_url)
    yield made
    made.store.close()


def disk_full(service: str = "billing-db") -> dict[str, Any]:
    return make_alert(alertname="DiskFull", labels={"service": service},
                      annotations={"summary": f"Disk full on {service} <!channel> & <@U0X>",
                                   "runbook_url": "https://runbooks.example/disk-full"})


def ready_room(env: Env) -> Any:
    room = wait_until(lambda: (env.deliver() or [r for r in env.rooms() if r.state == "ready"]),
                      20, "the channel to be ready")[0]
    assert room.room_id
    return room


def awaiting(env: Env) -> tuple[Any, Any]:
    env.fire(disk_full())
    room = ready_room(env)
    while env.worker.run_once():
        pass
    env.deliver()
    request = next(m for m in env.messages(room.incident_id)
                   if m.kind == "job_awaiting_approval")
    assert request.state == "sent" and request.job_id is not None
    return room, request


def audit(env: Env, action: str) -> list[dict[str, Any]]:
    return [dict(e) if isinstance(e, dict) else vars(e)
            for e in env.store.audit(AuditFilter(action=action))]


def note(env: Env, incident_id: int, text: str) -> None:
    lifecycle.act(env.store, env.config, incident_id, "note", user="bob", now=utcnow(),
                  text=text)


def job_state(env: Env, job_id: int) -> str:
    with env.store.unit(write=False) as uow:
        job = uow.jobs.get(job_id)
    assert job is not None
    return str(job.state)


# -- the signature ------------------------------------------------------------------------------

def test_contract_signature_matches_slacks_published_example() -> None:
    """Contract (no Slack server): the v0 signature of Slack's published example request
    is Slack's published signature, and it verifies within five minutes of its time."""
    assert signature(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == EXAMPLE_SIGNATURE
    verify(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY,
           now=int(EXAMPLE_TIMESTAMP) + 299)


@pytest.mark.parametrize(("secret", "stamp", "sent", "body", "now"), [
    ("another-secret", EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY + b"&x=1", 0),
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE.upper(), EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE[:-1] + "4", EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY, 301),  # expired
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY, -301),  # future
    (EXAMPLE_SECRET, "1531420619", EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, "", EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, "soon", EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0),
    (EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, "", EXAMPLE_BODY, 0),
])
def test_contract_wrong_or_expired_signatures_are_refused(
        secret: str, stamp: str, sent: str, body: bytes, now: int) -> None:
    """Contract (no Slack server): another secret, another body, another timestamp, a
    changed signature or a timestamp more than five minutes away is a 401."""
    with pytest.raises(ApiError) as err:
        verify(secret, stamp, sent, body, now=int(EXAMPLE_TIMESTAMP) + now)
    assert err.value.status == 401 and err.value.code == "bad_signature"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=300))
def test_contract_a_signature_holds_for_its_own_body_only(body: bytes, other: bytes) -> None:
    """Contract (no Slack server): whatever the body, its signature verifies it and no other
    body (generated)."""
    sent = signature(SIGNING_SECRET, EXAMPLE_TIMESTAMP, body)
    verify(SIGNING_SECRET, EXAMPLE_TIMESTAMP, sent, body, now=int(EXAMPLE_TIMESTAMP))
    if other != body:
        with pytest.raises(ApiError):
            verify(SIGNING_SECRET, EXAMPLE_TIMESTAMP, sent, other, now=int(EXAMPLE_TIMESTAMP))


# -- config ---------------------------------------------------------------------------------

def test_contract_slack_config_keeps_its_secrets_and_refuses_clear_text_remotes() -> None:
    """Contract (no Slack server): the token and the signing secret are secret references
    that never print; the API URL is https, or http on loopback only; a Slack id is one
    person; chat.update_interval sets how often P0/P1 get a status update."""
    chat = parse_config({"chat": {"slack": slack_section("http://127.0.0.1:9/api")}}).chat
    assert chat.enabled and chat.slack is not None
    assert chat.slack.api_url == "http://127.0.0.1:9/api/"
    assert BOT_TOKEN not in repr(chat) and SIGNING_SECRET not in repr(chat)
    assert parse_config({"chat": {"slack": {
        "bot_token": "env:REMEDIATOR_TEST_SLACK_TOKEN",
        "signing_secret": "env:REMEDIATOR_TEST_SLACK_SECRET"}}}
    ).chat.slack.api_url == "https://slack.com/api/"  # type: ignore[union-attr]
    for bad in ("http://slack.example.com/api/", "https://u:p@slack.com/api/", "ftp://x/"):
        with pytest.raises(ConfigError) as err:
            parse_config({"chat": {"slack": slack_section(bad)}})
        assert "chat.slack.api_url" in dict(err.value.problems)
    with pytest.raises(ConfigError) as err:
        parse_config({"chat": {"slack": slack_section("https://slack.com/api/",
                                                      bot_token=BOT_TOKEN)}})
    assert "chat.slack.bot_token" in dict(err.value.problems)
    with pytest.raises(ConfigError):
        parse_config({"people": {"users": {"a": {"slack": ALICE}, "b": {"slack": ALICE}}}})
    reminders = parse_config({}).sla.reminders
    assert parse_config({}).chat.update_intervals(reminders) == reminders
    every = parse_config({"chat": {"update_interval": "20m"}}).chat.update_intervals(reminders)
    assert every[Severity.P0] == every[Severity.P1] == timedelta(minutes=20)


def test_contract_text_cannot_ping_or_link_in_slack() -> None:
    """Contract (no Slack server): Slack's three control characters are escaped, so alert
    text cannot write <!channel> or <@U…> mentions."""
    assert mrkdwn_escape("<!channel> & <@U1|x>") == "&lt;!channel&gt; &amp; &lt;@U1|x&gt;"


# -- the Web API ------------------------------------------------------------------------------

def test_contract_web_api_calls_have_the_documented_shape(env: Env) -> None:
    """Contract (local server checking Slack's documented shapes): an incident at P1 gets a
    private channel named by the template, its purpose keyed, its topic (at most 250
    characters), the approvers invited, a pinned summary; the approval request carries the
    plan with Approve / Deny buttons; no message can ping; every request is well formed."""
    room, request = awaiting(env)
    api = env.api
    assert api.violations == []
    channel = api.channels[room.room_id]
    assert channel.is_private and channel.name == room.name
    assert channel.name.startswith("incident-") and "diskfull" in channel.name
    assert channel.purpose.startswith("remediator room key: ")
    assert "P1" in channel.topic and len(channel.topic) <= 250
    assert sorted(channel.members) == [ALICE, BOB]
    assert len(channel.pins) == 1 and channel.pins[0] == channel.messages[0]["ts"]
    assert "<!channel>" not in json.dumps([m["text"] for m in channel.messages])
    ask = next(m for m in channel.messages if m["ts"] == request.event_id)
    buttons = ask["blocks"][1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (APPROVE_ACTION, str(request.job_id)), (DENY_ACTION, str(request.job_id))]
    assert ask["blocks"][0]["text"]["type"] == "plain_text"
    assert "Playbook: fake_action" in ask["blocks"][0]["text"]["text"]
    assert "billing-db" in ask["blocks"][0]["text"]["text"]
    assert "Approve or Deny with the buttons" in ask["text"]


@pytest.mark.slow
def test_contract_one_channel_per_incident_with_three_concurrent_deliveries(env_both: Env
                                                                            ) -> None:
    """Contract (local server): the same notification from three Alertmanager peers at once,
    delivered by three workers at once, makes one channel, one summary and one pin (on
    each store)."""
    env = env_both
    env.fire(disk_full(), peers=3)
    for _ in range(3):
        env.deliver(replicas=3)
    assert len(env.rooms()) == 1
    assert env.api.count("conversations.create") == 1
    assert len(env.api.channels) == 1
    channel = next(iter(env.api.channels.values()))
    assert len(channel.pins) == 1
    texts = [m["text"] for m in channel.messages]
    assert len(texts) == len(set(texts)), texts
    assert env.api.violations == []


def test_contract_events_are_posted_in_order(env: Env) -> None:
    """Contract (local server): the timeline reaches the channel in the timeline's order."""
    room, request = awaiting(env)
    for n in range(5):
        note(env, room.incident_id, f"note {n}")
    env.deliver()
    channel = env.api.channels[room.room_id]
    notes = [m["text"] for m in channel.messages if "note " in m["text"]]
    assert [n[-6:] for n in notes] == [f"note {n}" for n in range(5)]
    ours = [m.event_id for m in env.messages(room.incident_id) if m.event_id]
    posted = [m["ts"] for m in channel.messages[1:]]
    assert ours == posted


@pytest.mark.slow
def test_contract_an_outage_delays_but_never_loses_or_duplicates(env: Env) -> None:
    """Contract (local server): Slack answering 500, ratelimited with Retry-After, and an
    answer lost after the message was posted: the messages wait, then each is in the
    channel once, in order; the room's next try honours Retry-After."""
    room, request = awaiting(env)
    env.api.outages += ["500", "ratelimited"]
    note(env, room.incident_id, "one")
    started = time.monotonic()
    env.deliver()
    assert [m.state for m in env.messages(room.incident_id)][-1] == "pending"
    time.sleep(0.3)  # past the backoff of the first failure
    env.deliver()  # the ratelimited answer
    with env.store.unit(write=False) as uow:
        waiting = uow.chat.room(room.incident_id)
    assert waiting is not None and waiting.attempts == 2
    assert (waiting.next_attempt_at - utcnow()).total_seconds() > 0.5  # Retry-After: 1
    env.api.outages += ["lost"]  # posted, then the answer is lost
    note(env, room.incident_id, "two")
    wait_until(lambda: env.deliver() or all(
        m.state == "sent" for m in env.messages(room.incident_id)), 20, "all to be sent")
    assert time.monotonic() - started >= 1.0
    texts = [m["text"] for m in env.api.channels[room.room_id].messages]
    assert sum(t.endswith("one") for t in texts) == 1
    assert sum(t.endswith("two") for t in texts) == 1
    assert texts.index(next(t for t in texts if t.endswith("one"))) < texts.index(
        next(t for t in texts if t.endswith("two")))
    assert env.api.count("chat.postMessage") > len(texts) - 1  # a retry went through
    assert env.api.violations == []


# -- the interactivity endpoint ---------------------------------------------------------------

def test_contract_alice_approves_with_the_button_and_the_job_runs_once(env_both: Env) -> None:
    """Contract (signed request as Slack signs it): alice's Approve click decides through
    the approval code, the job runs once, she is told; the same signed request again is a
    401 replay; a second click decides nothing new (on each store)."""
    env = env_both
    room, request = awaiting(env)
    at = time.time()
    body = env.click_body(ALICE, APPROVE_ACTION, room.room_id, request.event_id,
                          request.job_id)
    answer = env.post_signed(body, at=at)
    assert answer.status_code == 200, answer.get_json()
    replayed = env.post_signed(body, at=at)
    assert replayed.status_code == 401 and replayed.get_json()["error"] == "replayed"
    assert answer.get_json()["outcome"] == "approved"
    assert env.api.ephemeral[-1]["user"] == ALICE
    assert "approved by alice" in env.api.ephemeral[-1]["text"]
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]
    entries = audit(env, "job.approved")
    assert len(entries) == 1 and entries[0]["actor"] == "user:alice"
    assert entries[0]["origin"]["chat_user"] == ALICE
    assert entries[0]["origin"]["action_id"] == APPROVE_ACTION
    again = env.click(BOB, APPROVE_ACTION, room.room_id, request.event_id, request.job_id)
    assert again.get_json()["outcome"].startswith("refused:")
    while env.worker.run_once():
        pass
    assert env.playbook.calls == ["billing-db"]


def test_contract_replayed_requests_are_refused(env: Env) -> None:
    """Contract: one signed request counts once (401 ``replayed`` the second time)."""
    room, request = awaiting(env)
    body = urlencode({"payload": json.dumps({
        "type": "block_actions", "user": {"id": MALLORY}, "channel": {"id": room.room_id},
        "container": {"message_ts": request.event_id},
        "actions": [{"action_id": "other", "value": "x"}]})}).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": signature(SIGNING_SECRET, stamp, body)}
    client = env.app.test_client()
    assert client.post("/slack/interactivity", data=body, headers=headers).status_code == 200
    second = client.post("/slack/interactivity", data=body, headers=headers)
    assert second.status_code == 401 and second.get_json()["error"] == "replayed"


def test_contract_mallory_and_eve_are_refused_and_audited(env: Env) -> None:
    """Contract: a click by a Slack user mapped to nobody (mallory) and by a person outside
    the approving group (eve) decide nothing; each refusal is audited with the Slack user
    id and the action id, and each clicker is told."""
    room, request = awaiting(env)
    by_mallory = env.click(MALLORY, APPROVE_ACTION, room.room_id, request.event_id,
                           request.job_id)
    by_eve = env.click(EVE, DENY_ACTION, room.room_id, request.event_id, request.job_id)
    assert by_mallory.get_json()["outcome"] == "refused:unknown_chat_identity"
    assert by_eve.get_json()["outcome"] == "refused:not_allowed"
    assert job_state(env, request.job_id) == "awaiting_approval"
    refused = {e["origin"]["chat_user"]: e for e in audit(env, "approval.refused")}
    assert set(refused) == {MALLORY, EVE}
    assert refused[MALLORY]["actor"] == f"chat:{MALLORY}"
    assert refused[MALLORY]["origin"]["action_id"] == APPROVE_ACTION
    assert refused[EVE]["actor"] == "user:eve"
    assert refused[EVE]["origin"]["action_id"] == DENY_ACTION
    assert {e["user"] for e in env.api.ephemeral} == {MALLORY, EVE}


def test_contract_bad_requests_get_a_4xx_naming_the_field(env: Env) -> None:
    """Contract: an unsigned, stale or wrongly signed request is a 401 JSON; a wrong content
    type 415; a signed body without a payload or with a bad one 400 naming the field."""
    room, request = awaiting(env)
    stale = env.click(ALICE, APPROVE_ACTION, room.room_id, request.event_id, request.job_id,
                      at=time.time() - 301)
    assert stale.status_code == 401 and stale.get_json()["error"] == "bad_signature"
    forged = env.click(ALICE, APPROVE_ACTION, room.room_id, request.event_id, request.job_id,
                       secret="guessed")
    assert forged.status_code == 401
    unsigned = env.app.test_client().post("/slack/interactivity", data=b"payload=%7B%7D",
                                          content_type="application/x-www-form-urlencoded")
    assert unsigned.status_code == 401 and unsigned.get_json()["error"] == "bad_signature"
    as_json = env.post_signed(b"{}", headers={"Content-Type": "application/json"})
    assert as_json.status_code == 415
    empty = env.post_signed(b"token=1")
    assert empty.status_code == 400 and empty.get_json()["detail"][0]["field"] == "payload"
    bad = env.post_signed(urlencode({"payload": json.dumps({
        "type": "block_actions", "user": {"id": "not an id"}, "channel": {"id": "C1"},
        "container": {"message_ts": "1.2"}, "actions": [{"action_id": "a"}]})}).encode())
    assert bad.status_code == 400
    assert bad.get_json()["detail"][0]["field"] == "payload.user.id"
    assert job_state(env, request.job_id) == "awaiting_approval"


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=400))
def test_contract_any_signed_payload_is_answered_below_500(payload: str) -> None:
    """Contract: whatever a signed payload holds (generated), the answer is never a 5xx."""
    assert _shared_env is not None
    answer = _shared_env.post_signed(urlencode({"payload": payload}).encode())
    assert answer.status_code < 500, answer.get_json()


_shared_env: Env | None = None


@pytest.fixture(autouse=True)
def _shared(request: pytest.FixtureRequest, tmp_path: Path, _slack_env: None) -> Iterator[None]:
    global _shared_env  # noqa: PLW0603 - the hypothesis test's one app
    if request.node.name.startswith("test_contract_any_signed_payload"):
        api = SlackApi()
        api.thread.start()
        _shared_env = make_env(tmp_path, api)
        yield
        _shared_env.store.close()
        api.server.shutdown()
        api.server.server_close()
        _shared_env = None
    else:
        yield


# -- !public in the room ----------------------------------------------------------------------

def test_contract_public_in_the_room_posts_a_status_update_as_the_person(env: Env) -> None:
    """Contract: ``!public <title> | <text>`` by a mapped person publishes a status-page
    update through the page's code; by a Slack identity mapped to nobody it is refused
    and audited; the first update without a title is refused with a hint."""
    room, _ = awaiting(env)
    backend = SlackBackend(env.config.chat.slack)  # type: ignore[arg-type]

    def say(user: str, body: str, n: int) -> str | None:
        return inbound.handle(env.store, env.config, backend,
                              Inbound(room.room_id, f"Ev{n}", user, "text", body=body),
                              utcnow())

    assert say(ALICE, "!public We are looking into it", 1) == "refused:invalid"
    assert say(MALLORY, "!public Billing | Broken", 2) == "refused:unknown_chat_identity"
    assert say(ALICE, "!public identified Billing slow | We found the cause", 3) == "published"
    status = env.app.test_client().get("/status.json").get_json()
    assert [i["name"] for i in status["incidents"]] == ["Billing slow"]
    assert status["incidents"][0]["incident_updates"][0]["body"] == "We found the cause"
    assert status["incidents"][0]["status"] == "identified"
    assert [e["actor"] for e in audit(env, "chat.refused")] == [f"chat:{MALLORY}"]


def test_contract_a_closed_incident_archives_its_channel(env: Env) -> None:
    """Contract (local server): with chat.archive_on_close, an incident ended as a false
    alarm gets the topic [closed] and its channel archived (``conversations.archive``),
    once; a note after that is dropped, not retried for ever."""
    room, _ = awaiting(env)
    lifecycle.act(env.store, env.config, room.incident_id, "false_alarm", user="alice",
                  now=utcnow(), text="noise")
    env.deliver()
    channel = env.api.channels[room.room_id]
    assert channel.archived and channel.topic.startswith("[closed] ")
    assert env.api.count("conversations.archive") == 1
    note(env, room.incident_id, "after the end")
    env.deliver()
    assert all(m.state == "sent" for m in env.messages(room.incident_id))
    assert env.api.count("conversations.archive") == 1
    assert env.api.violations == []
