"""Notifications: channel matching, backoff, messages, and delivery through real apprise to a
real HTTP server on loopback, on both store backends.

Pure-logic tests inject ``send``; every delivery test of the outbox path as a whole goes
through apprise and the network stack to a ``ThreadingHTTPServer`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog

from receiver.comms.markup import md_text
from receiver.comms.notify import (
    AppriseSender,
    DeliveryFailed,
    Message,
    backoff,
    deliver_due,
    matching_channels,
    next_attempt_at,
)
from receiver.config import NotificationRetry
from receiver.errors import ConfigError
from receiver.people.tokens import read_token, secret_key
from receiver.store import Store, events
from receiver.store import outbox as outbox_store
from tests.conftest import Clock, make_config
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.support import free_port

SECRET = "s3cr3tHookToken4242"
LINK = "https://remediator.example.test"
PEOPLE = {"users": {"alice": {"groups": ["oncall", "dba"]}, "bob": {"groups": ["dba"]},
                    "carol": {"groups": ["web"]}}}
FAST_RETRY = {"max_attempts": 20, "backoff_initial": "5s", "backoff_max": "10m"}


# -- helpers ----------------------------------------------------------------------------
def channels_config(monkeypatch: pytest.MonkeyPatch, channels: dict[str, dict[str, Any]],
                    **over: Any) -> dict[str, Any]:
    """A ``notifications`` section whose channel URLs come from env: references."""
    out: dict[str, Any] = {}
    for i, (name, channel) in enumerate(channels.items()):
        env = f"REMEDIATOR_TEST_NOTIFY_URL_{i}"
        monkeypatch.setenv(env, channel["url"])
        out[name] = {**channel, "url": f"env:{env}"}
    return {"channels": out, "link_base": LINK, "retry": FAST_RETRY, **over}


def make_kit(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
             channels: dict[str, dict[str, Any]], rules: list[dict[str, Any]] | None = None,
             **over: Any) -> Kit:
    return Kit(store, clock, rules or [], people=PEOPLE, data_dir=str(tmp_path),
               notifications=channels_config(monkeypatch, channels, **over))


def open_incident(kit: Kit, container: str = "web1") -> int:
    labels = {"container": container, "instance": container}
    result = kit.fire(make_notification([make_alert(labels=labels)], group_key=f"g-{container}"))
    return int(result.incident_id)


def record(kit: Kit, incident_id: int, kind: str, message: str) -> None:
    with kit.store.db.transaction() as tx:
        events.record(tx, incident_id=incident_id, at=kit.clock(), kind=kind, actor="system",
                      message=message)


def deliveries(store: Store) -> list[dict[str, Any]]:
    with store.db.transaction(write=False) as tx:
        return outbox_store.deliveries(tx)


def outbox_ids(store: Store) -> list[int]:
    with store.db.transaction(write=False) as tx:
        return [r["id"] for r in tx.fetchall("SELECT id FROM outbox ORDER BY id")]


class Recorder:
    """An injected ``send`` that records each message, and fails while ``error`` is set."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.error = error

    def __call__(self, name: str, channel: Any, message: Message) -> None:
        self.sent.append((name, message))
        if self.error is not None:
            raise self.error


class Endpoint:
    """A real HTTP(S) server on 127.0.0.1 that records every POST and answers 200 ``ok``."""

    def __init__(self, port: int, *, delay: float = 0.0, cert: tuple[Path, Path] | None = None):
        self.port, self.delay, self.cert = port, delay, cert
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with endpoint._lock:
                    endpoint.received.append((self.path, body))
                time.sleep(endpoint.delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.cert)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[str]:
        with self._lock:
            return [body.decode() for _path, body in self.received]

    def per_outbox_id(self) -> Counter[int]:
        """How many requests carried each outbox id (the body's ``Notification id: N``)."""
        found = Counter[int]()
        for body in self.bodies():
            ids = re.findall(r"Notification id: (\d+)", body)
            assert len(ids) == 1, body
            found[int(ids[0])] += 1
        return found


def texts(payload: Any) -> str:
    """Every string in a JSON document, one per line (cards nest the text they carry)."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        payload = list(payload.values())
    if isinstance(payload, list):
        return "\n".join(texts(v) for v in payload)
    return ""


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


# -- pure logic -------------------------------------------------------------------------
def test_channels_match_by_event_kind_and_severity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A channel gets an event only when both its kind and the incident severity are listed."""
    config = make_config(notifications=channels_config(monkeypatch, {
        "everything": {"url": "json://127.0.0.1/all"},
        "pager": {"url": "json://127.0.0.1/pager", "severities": ["P0", "P1"],
                  "events": ["opened", "escalated", "sla_breached"]},
        "approvers": {"url": "json://127.0.0.1/approvals", "events": ["job_awaiting_approval"]},
    }))
    settings = config.notifications
    assert settings.channels["everything"].events == sorted(events.NOTIFY - {"state_changed"})
    assert matching_channels(settings, "opened", "P1") == ["everything", "pager"]
    assert matching_channels(settings, "opened", "P2") == ["everything"]
    assert matching_channels(settings, "job_awaiting_approval", "P3") == ["approvers", "everything"]
    assert matching_channels(settings, "resolved", "P0") == ["everything"]
    assert matching_channels(settings, "note", "P0") == []


def test_config_refuses_bad_channels_without_showing_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown event kind or a URL apprise cannot use is refused by path; the URL stays hidden."""
    with pytest.raises(ConfigError) as err:
        make_config(notifications=channels_config(monkeypatch, {
            "ops": {"url": f"nosuchscheme://hooks.example/{SECRET}", "events": ["opened", "lunch"]},
        }))
    paths = dict(err.value.problems)
    assert "notifications.channels.ops.url" in paths
    assert "lunch" in paths["notifications.channels.ops.events"]
    assert SECRET not in str(err.value)


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    """Retry waits are 5s, 10s, 20s... and never exceed backoff_max, however many attempts."""
    retry = NotificationRetry.model_validate({"backoff_initial": "5s", "backoff_max": "10m"})
    waits = [int(backoff(n, retry).total_seconds()) for n in range(1, 11)]
    assert waits == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert backoff(10_000, retry) == timedelta(minutes=10)


def test_gives_up_after_max_attempts(clock: Clock) -> None:
    """After max_attempts failures there is no next attempt."""
    retry = NotificationRetry.model_validate({"max_attempts": 3, "backoff_initial": "5s"})
    assert next_attempt_at(1, retry, clock()) == clock() + timedelta(seconds=5)
    assert next_attempt_at(2, retry, clock()) == clock() + timedelta(seconds=10)
    assert next_attempt_at(3, retry, clock()) is None


# -- the outbox, with an injected sender ------------------------------------------------
def test_outbox_rows_fan_out_to_matching_channels_once(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each outbox row becomes one delivery per matching channel, and only once."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {
        "all": {"url": "json://127.0.0.1/all"},
        "p0": {"url": "json://127.0.0.1/p0", "severities": ["P0"]},
        "escalations": {"url": "json://127.0.0.1/esc", "events": ["escalated"]},
    })
    incident = open_incident(kit)
    record(kit, incident, "escalated", "escalated to a human: test")
    record(kit, incident, "note", "a note is not notified")
    send = Recorder()
    assert deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send) == 3
    assert deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send) == 0
    opened, escalated = outbox_ids(store)
    assert [(d["outbox_id"], d["channel"], d["state"]) for d in deliveries(store)] == [
        (opened, "all", "delivered"), (escalated, "all", "delivered"),
        (escalated, "escalations", "delivered"),
    ]
    assert sorted(name for name, _m in send.sent) == ["all", "all", "escalations"]
    with store.db.transaction(write=False) as tx:
        assert tx.fetchone("SELECT COUNT(*) AS n FROM outbox WHERE expanded_at IS NULL") == {"n": 0}


def test_failed_sends_back_off_then_drop(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A failing channel is retried at 5s then 10s, dropped after max_attempts, never again."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {"ops": {"url": "json://127.0.0.1/x"}},
                   retry={"max_attempts": 3, "backoff_initial": "5s", "backoff_max": "10m"})
    open_incident(kit)
    send = Recorder(DeliveryFailed("HTTP 500 from the hook"))
    t0 = clock()

    def run() -> dict[str, Any]:
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send) == 0
        [row] = deliveries(store)
        return row

    row = run()
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == (
        "pending", 1, t0 + timedelta(seconds=5))
    assert row["last_error"] == "HTTP 500 from the hook"
    run()
    assert len(send.sent) == 1  # not due yet
    clock.advance(seconds=5)
    row = run()
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == (
        "pending", 2, clock() + timedelta(seconds=10))
    clock.advance(seconds=10)
    row = run()
    assert (row["state"], row["attempts"]) == ("dropped", 3)
    clock.advance(hours=1)
    run()
    assert len(send.sent) == 3


def test_message_has_severity_deadline_and_link_and_no_secret(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The title names severity, kind and incident; the body has state, SLA deadline and link."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {
        "plain": {"url": f"json://127.0.0.1/hook/{SECRET}"},
        "md": {"url": f"jsons://user:{SECRET}@127.0.0.1/hook", "format": "markdown"},
    })
    incident = open_incident(kit)
    send = Recorder()
    deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send)
    with store.db.transaction(write=False) as tx:
        inc = tx.fetchone("SELECT title, ack_due_at FROM incidents WHERE id = :id",
                          {"id": incident})
    assert inc is not None
    deadline = inc["ack_due_at"].strftime("%Y-%m-%d %H:%M UTC")
    assert deadline == "2026-03-02 11:00 UTC"  # P1: one hour after the clock's start
    sent = dict(send.sent)
    for name, message in sent.items():
        # apprise may put the title into a Markdown body: it is escaped as Markdown there.
        title = f"[P1] opened: {inc['title']}"
        assert message.title == (md_text(title) if name == "md" else title)
        assert message.notify_type == "warning"
        assert SECRET not in message.title + message.body
    assert sent["plain"].body_format == "text"
    assert "Severity: P1" in sent["plain"].body and "State: open" in sent["plain"].body
    assert f"SLA: acknowledge by {deadline}" in sent["plain"].body
    assert f"Incident: {LINK}/incidents/{incident}" in sent["plain"].body
    assert sent["md"].body_format == "markdown"
    assert "**Severity:** P1" in sent["md"].body
    assert f"[#{incident}]({LINK}/incidents/{incident})" in sent["md"].body


def test_link_base_defaults_to_the_public_url(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without link_base, incident links start with server.public_url."""
    notifications = channels_config(monkeypatch, {"ops": {"url": "json://127.0.0.1/x"}})
    del notifications["link_base"]
    kit = Kit(store, clock, [], data_dir=str(tmp_path), notifications=notifications,
              server={"public_url": "https://oncall.example.test/"})
    incident = open_incident(kit)
    send = Recorder()
    deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send)
    assert f"Incident: https://oncall.example.test/incidents/{incident}" in send.sent[0][1].body


def test_secret_never_reaches_last_error_or_logs(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An error that quotes the channel URL is stored and logged with the URL's secrets cut out."""
    url = f"json://bot:{SECRET}@127.0.0.1:9/hook/{SECRET}x"
    kit = make_kit(store, clock, monkeypatch, tmp_path, {"ops": {"url": url}})
    open_incident(kit)
    send = Recorder(RuntimeError(f"boom while posting to {url}"))
    with structlog.testing.capture_logs() as logs:
        deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send)
    [row] = deliveries(store)
    assert row["last_error"].startswith("RuntimeError: boom while posting to")
    assert SECRET not in row["last_error"]
    assert any(e["event"] == "notification_failed" for e in logs)
    assert SECRET not in repr(logs)


def test_awaiting_approval_message_links_each_eligible_approver(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An approval request carries one signed link per person in the approving groups."""
    kit = make_kit(store, clock, monkeypatch, tmp_path,
                   {"approvals": {"url": "json://127.0.0.1/x", "events": ["job_awaiting_approval"]}},
                   rules=[rule(approval={"mode": "required", "groups": ["dba"]})])
    open_incident(kit)
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["awaiting_approval"]
    send = Recorder()
    assert deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send) == 1
    [(_name, message)] = send.sent
    assert message.title.startswith("[P1] job awaiting approval: ")
    links = dict(re.findall(r"^- (\w+): (\S+)$", message.body, re.M))
    assert sorted(links) == ["alice", "bob"]  # carol is not in dba
    key = secret_key(kit.config)
    for user, url in links.items():
        token = urlsplit(url).path.rsplit("/", 1)[1]
        assert read_token(key, token, now=clock()).approver == user


def test_expired_sending_lease_goes_back_to_pending(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A delivery whose sender died mid-send is sent by another worker once the lease runs out."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {"ops": {"url": "json://127.0.0.1/x"}})
    open_incident(kit)
    send = Recorder()
    deliver_due(store, kit.config, clock=clock, worker_id="w1", send=send, limit=0)  # expand only
    with store.db.transaction() as tx:
        claimed = outbox_store.claim(tx, worker="dead", now=clock(),
                                     until=clock() + timedelta(minutes=1))
    assert claimed is not None and claimed["state"] == "sending"
    assert deliver_due(store, kit.config, clock=clock, worker_id="w2", send=send) == 0
    clock.advance(minutes=2)
    assert deliver_due(store, kit.config, clock=clock, worker_id="w2", send=send) == 1
    [row] = deliveries(store)
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    with store.db.transaction() as tx:  # the dead worker's late word changes nothing
        assert not outbox_store.delivered(tx, row["outbox_id"], "ops", worker="dead",
                                          now=clock())


# -- real apprise, real HTTP ------------------------------------------------------------
def test_real_apprise_retries_until_the_endpoint_is_up_then_delivers_once(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the endpoint down messages wait with an error; once up, each arrives exactly once."""
    port = free_port()
    kit = make_kit(store, clock, monkeypatch, tmp_path, {
        "hook": {"url": f"json://127.0.0.1:{port}/hook/{SECRET}"},
        "pager": {"url": f"json://127.0.0.1:{port}/pager", "severities": ["P0"]},
    }, timeout="2s")
    incident = open_incident(kit)
    record(kit, incident, "escalated", "escalated to a human: nobody acknowledged")
    record(kit, incident, "sla_breached", "acknowledge-by deadline passed")
    ids = outbox_ids(store)
    t0 = clock()

    assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 0
    rows = deliveries(store)
    assert [(r["outbox_id"], r["channel"]) for r in rows] == [(i, "hook") for i in ids]
    for row in rows:
        assert (row["state"], row["attempts"]) == ("pending", 1)
        assert row["next_attempt_at"] == t0 + timedelta(seconds=5)
        assert row["last_error"] and SECRET not in row["last_error"]

    with Endpoint(port) as endpoint:
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 0  # not due yet
        assert endpoint.received == []
        clock.advance(seconds=6)
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 3
        assert endpoint.per_outbox_id() == Counter({i: 1 for i in ids})
        clock.advance(hours=1)
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 0
        assert endpoint.per_outbox_id() == Counter({i: 1 for i in ids})
        first = json.loads(endpoint.received[0][1])
        assert endpoint.received[0][0] == f"/hook/{SECRET}"
    assert {r["state"] for r in deliveries(store)} == {"delivered"}
    assert first["title"].startswith("[P1] opened: ") and first["type"] == "warning"
    assert f"{LINK}/incidents/{incident}" in first["message"]


def test_two_workers_deliver_each_message_once(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two workers sending at the same time deliver every message exactly once between them."""
    port = free_port()
    kit = make_kit(store, clock, monkeypatch, tmp_path,
                   {"hook": {"url": f"json://127.0.0.1:{port}/hook"}})
    incident = open_incident(kit)
    for n in range(11):
        record(kit, incident, "reminder", f"reminder {n}: still open")
    ids = outbox_ids(store)
    assert len(ids) == 12
    start = threading.Barrier(2)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def worker(wid: str) -> None:
        try:
            start.wait(10)
            counts[wid] = deliver_due(store, kit.config, clock=clock, worker_id=wid)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    with Endpoint(port, delay=0.02) as endpoint:
        threads = [threading.Thread(target=worker, args=(w,)) for w in ("w1", "w2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sum(counts.values()) == 12
        assert endpoint.per_outbox_id() == Counter({i: 1 for i in ids})
    assert {r["state"] for r in deliveries(store)} == {"delivered"}


def test_real_apprise_slack_and_teams_formats_reach_loopback(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """apprise's Slack and Teams (Workflows) plugins deliver our message to a local endpoint."""
    from apprise.plugins.slack import NotifySlack

    slack_port, teams_port = free_port(), free_port()
    cert = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert[0]))  # requests verifies against it
    # apprise has no URL option for the Slack host: point the plugin's endpoint at loopback.
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{slack_port}/services")
    kit = make_kit(store, clock, monkeypatch, tmp_path, {
        "slack": {"url": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", "format": "markdown"},
        "teams": {"url": f"workflows://127.0.0.1:{teams_port}/abc123/SIG456"},
    })
    incident = open_incident(kit)
    with Endpoint(slack_port) as slack, Endpoint(teams_port, cert=cert) as teams:
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 2
        [(slack_path, slack_body)] = slack.received
        [(teams_path, teams_body)] = teams.received
    assert slack_path == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    assert teams_path.startswith("/workflows/abc123/")
    for body in (slack_body, teams_body):
        text = texts(json.loads(body)).replace("\\", "")  # apprise may escape for markdown
        assert "[P1] opened: " in text and f"{LINK}/incidents/{incident}" in text


def test_plain_text_reaches_a_text_service_line_for_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A text channel's body reaches a real apprise json:// endpoint with its lines as
    written (no leading space from apprise's HTML-to-text step), markup-looking alert text
    kept literal."""
    port = free_port()
    notifications = make_config(notifications=channels_config(
        monkeypatch, {"hook": {"url": f"json://127.0.0.1:{port}/h"}})).notifications
    body = "Alert <b>x</b> & <http://e|Approve>\n- alice: http://127.0.0.1/approvals/t?a=1&b=2\nend"
    with Endpoint(port) as endpoint:
        AppriseSender(timeout=5)("hook", notifications.channels["hook"],
                                 Message(title="[P1] t", body=body))
        [raw] = endpoint.bodies()
    assert json.loads(raw)["message"].splitlines() == body.splitlines()
