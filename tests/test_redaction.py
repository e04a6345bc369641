"""Every configured secret is redacted from evidence, timeline, audit entries, API and page
bodies, error bodies, notifications and logs, wherever it appears.

The secrets are planted where a real deployment would meet them: in the body of a real local
HTTP server probed by an HTTP diagnostic, in the text of a real long-running PostgreSQL query
seen by the PostgreSQL diagnostic, in alert annotations, in an operator's note, in error
details and in log lines; then every sink is read back."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.comms.notify import Message, deliver_due
from receiver.config import Config
from receiver.diagnostics import run_due
from receiver.errors import ConfigError
from receiver.runtime.logs import configure_logging
from receiver.secrets import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Redactor,
    derived_forms,
    redactor_for,
)
from receiver.store import Store
from receiver.web.errors import ApiError
from tests.conftest import PASSWORD, PG_DSN, Clock, make_config, people
from tests.factories import make_alert, make_notification
from tests.support import wait_until


def _token(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _with_password(dsn: str, password: str) -> str:
    scheme, _, rest = dsn.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}"


class Secrets:
    """One value per kind of configured secret, set in the environment for env: refs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.webhook = _token("whk")
        self.basic = _token("basicpw")
        self.api = _token("apitok")
        self.key = _token("skey")
        self.store_pw = _token("storepw")
        self.pg_pw = _token("pgpw")
        self.redis_pw = _token("redispw")
        self.notify = _token("ntok1")
        self.audit = _token("akey")
        self.env = {
            "RMRED_WEBHOOK": self.webhook,
            "RMRED_BASIC": self.basic,
            "RMRED_API": self.api,
            "RMRED_KEY": self.key,
            "RMRED_STORE": _with_password(PG_DSN, self.store_pw),
            "RMRED_PG": _with_password(PG_DSN, self.pg_pw),
            "RMRED_REDIS": f"redis://:{self.redis_pw}@127.0.0.1:63790/0",
            "RMRED_NOTIFY": f"json://127.0.0.1:9/hook/{self.notify}",
            "RMRED_AUDIT": self.audit,
        }
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        self.basic_pair = base64.b64encode(f"am:{self.basic}".encode()).decode()

    @property
    def values(self) -> list[str]:
        """The secret values themselves: none may appear anywhere."""
        return [self.webhook, self.basic, self.api, self.key, self.store_pw, self.pg_pw,
                self.redis_pw, self.notify, self.audit]

    @property
    def forbidden(self) -> list[str]:
        """Every value, its percent-encoded form, and the basic-auth header value."""
        return [*self.values, *(quote(v, safe="") for v in self.values), self.basic_pair,
                self.env["RMRED_PG"], self.env["RMRED_REDIS"], self.env["RMRED_NOTIFY"]]

    def planted(self) -> str:
        """Text that carries every secret: raw, percent-encoded, and as Basic credentials."""
        return " ".join([*self.values, f"dsn={self.env['RMRED_PG']}",
                         f"q={quote(self.webhook, safe='')}", f"auth={self.basic_pair}"])

    def config(self, data_dir: Path, checks: list[dict[str, Any]]) -> Config:
        people_cfg = people()
        people_cfg["api_tokens"] = {
            "ops": {"token": "env:RMRED_API", "user": "alice", "scope": "operator"}}
        extra: dict[str, Any] = {}
        if "audit" in Config.model_fields:
            extra["audit"] = {"key": "env:RMRED_AUDIT"}
        return make_config(
            data_dir=str(data_dir),
            auth={"bearer_token": "env:RMRED_WEBHOOK",
                  "basic": {"username": "am", "password": "env:RMRED_BASIC"}},
            server={"secret_key": "env:RMRED_KEY", "secure_cookies": False},
            store={"url": "env:RMRED_STORE"},
            people=people_cfg,
            targets={"http": {"hosts": ["127.0.0.1:*"]},
                     "postgres": {"main": {"dsn": "env:RMRED_PG", "databases": ["*"]}},
                     "redis": {"cache": {"url": "env:RMRED_REDIS", "dbs": [0]}}},
            diagnostics={"checks": checks},
            notifications={"channels": {"chat": {"url": "env:RMRED_NOTIFY",
                                                 "events": ["opened"]}},
                           "link_base": "https://remediator.example.test"},
            **extra,
        )


class EchoServer:
    """A real HTTP server on loopback whose body is the given text."""

    def __init__(self, body: str) -> None:
        data = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def long_query(text: str) -> Iterator[int]:
    """A real ``SELECT pg_sleep(30), '<text>'`` running on another connection; its pid."""
    sleeper = psycopg.connect(PG_DSN, autocommit=True, application_name="rmred-sleeper")
    admin = psycopg.connect(PG_DSN, autocommit=True)
    pid = sleeper.info.backend_pid

    def run() -> None:
        with contextlib.suppress(psycopg.Error):
            sleeper.execute(f"SELECT pg_sleep(30), '{text}'")  # noqa: S608 - test literal

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
            " AND query LIKE %s", (pid, "%pg_sleep%")).fetchone(), 10, "the long query")
        yield pid
    finally:
        admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)
        sleeper.close()
        admin.close()


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    saved = structlog.get_config()
    yield capsys
    structlog.configure(**saved)


def _dump(rows: Any) -> str:
    return json.dumps(rows, default=str, ensure_ascii=False)


def _login(client: Any) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:300]
    r = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                    "csrf_token": token.group(1)})
    assert r.status_code in (302, 303), r.status_code


def test_planted_secrets_appear_in_no_sink(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    captured_logs: pytest.CaptureFixture[str],
) -> None:
    """Each configured secret, planted in a probed HTTP body, a running query's text, alert
    annotations, a note, error details and log lines, is in no evidence row, timeline event,
    outbox row, audit entry, API or page body, error body, notification or log line."""
    secrets = Secrets(monkeypatch)
    planted = secrets.planted()
    echo = EchoServer(f"status=degraded {planted}")
    config = secrets.config(tmp_path / "data", [
        {"name": "echo", "http": {"url": echo.url}},
        {"name": "db", "postgres": {"target": "main"}},
    ])
    configure_logging("debug", "json", redactor_for(config))
    app = create_app(config, store=store, clock=clock)

    @app.get("/test-only/api-error")
    def _api_error() -> Any:
        raise ApiError(400, "bad_value", f"the value {secrets.api} is not allowed")

    @app.get("/test-only/crash")
    def _crash() -> Any:
        raise RuntimeError(f"could not reach {secrets.env['RMRED_PG']}")

    client = app.test_client()
    ops = {"Authorization": f"Bearer {secrets.api}"}
    alert = make_alert(alertname=f"AppDown {secrets.webhook}", labels={"instance": "web1"},
                       annotations={"summary": f"db down {secrets.pg_pw}", "description": planted})
    try:
        with long_query(planted[:280]) as pid:
            r = client.post("/api/v1/alerts", json=make_notification([alert], group_key="g-red"),
                            headers={"Authorization": f"Bearer {secrets.webhook}"})
            assert r.status_code == 200, r.get_data(as_text=True)
            [incident] = client.get("/api/v1/incidents", headers=ops).get_json()["incidents"]
            inc = incident["id"]
            assert run_due(store, config, clock=clock, worker_id="w1") == 1
    finally:
        echo.close()
    r = client.post(f"/api/v1/incidents/{inc}/actions", headers=ops,
                    json={"action": "note", "text": f"rotated {planted}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    sent: list[tuple[str, Message]] = []
    deliver_due(store, config, clock=clock, worker_id="w1",
                send=lambda name, _ch, msg: sent.append((name, msg)))
    structlog.get_logger("test").warning("probe_failed", detail=f"answer: {planted}",
                                         nested={"urls": [secrets.env["RMRED_REDIS"]]})

    bodies: dict[str, str] = {}
    for path in (f"/api/v1/incidents/{inc}", "/api/v1/incidents", "/api/v1/audit?limit=500",
                 f"/api/v1/incidents/{inc}/postmortem.md", "/test-only/api-error",
                 "/test-only/crash"):
        resp = client.get(path, headers=ops)
        bodies[path] = resp.get_data(as_text=True)
        assert resp.status_code < 500 or path.endswith("crash"), (path, resp.status_code)
    browser = app.test_client()
    _login(browser)
    bodies["page"] = browser.get(f"/incidents/{inc}").get_data(as_text=True)
    with store.db.transaction(write=False) as tx:
        sinks = {name: _dump(tx.fetchall(f"SELECT * FROM {name}"))  # noqa: S608 - fixed names
                 for name in ("evidence", "incident_events", "outbox", "audit_log")}
    sinks |= {f"http {k}": v for k, v in bodies.items()}
    sinks["notifications"] = _dump([[m.title, m.body] for _, m in sent])
    sinks["logs"] = captured_logs.readouterr().err

    for sink, text in sinks.items():
        for secret in secrets.forbidden:
            assert secret not in text, f"{secret!r} leaked into {sink}"

    # The secrets did reach each sink, and were cut there.
    evidence = {e["check_name"]: e for e in
                client.get(f"/api/v1/incidents/{inc}", headers=ops).get_json()["evidence"]}
    assert evidence["echo"]["detail"]["body_excerpt"].count(REDACTED) >= len(secrets.values)
    [mine] = [q for q in evidence["db"]["detail"]["longest_queries"] if q["pid"] == pid]
    assert "pg_sleep(30)" in mine["query"] and REDACTED in mine["query"]
    detail = client.get(f"/api/v1/incidents/{inc}", headers=ops).get_json()
    assert REDACTED in detail["alerts"][0]["annotations"]["description"]
    assert any(REDACTED in e["message"] for e in detail["timeline"] if e["kind"] == "note")
    assert REDACTED in bodies["/test-only/api-error"] and REDACTED in bodies["page"]
    assert sent and REDACTED in sent[0][1].title
    assert REDACTED in sinks["logs"] and "could not reach" in sinks["logs"]


def test_a_secret_shorter_than_the_minimum_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A secret too short to redact without destroying text stops the config from loading,
    with the field named."""
    monkeypatch.setenv("RMRED_SHORT", "x" * (MIN_SECRET_LENGTH - 1))
    with pytest.raises(ConfigError) as err:
        make_config(auth={"bearer_token": "env:RMRED_SHORT"})
    assert "auth.bearer_token" in str(err.value) and "shorter than" in str(err.value)
    monkeypatch.setenv("RMRED_SHORT", "x" * MIN_SECRET_LENGTH)
    assert make_config(auth={"bearer_token": "env:RMRED_SHORT"}).auth.configured


def test_the_redactor_knows_every_secret_and_its_derived_forms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """Passwords inside DSNs and URLs, encoded forms, basic credentials and the token parts
    of a notification URL are redacted; a plain word in that URL, a short DSN password and
    the non-secret store URL are not, and the short one is reported."""
    secrets = Secrets(monkeypatch)
    monkeypatch.setenv("RMRED_NOTIFY", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7?to=oncall")
    monkeypatch.setenv("RMRED_PG", _with_password(PG_DSN, "pw"))
    config = secrets.config(tmp_path, [])
    redactor = redactor_for(config)
    assert redactor_for(config) is redactor  # built once per config
    assert redactor.too_short == ("targets.postgres.main.dsn",)
    text = redactor.text(" ".join([
        secrets.store_pw, quote(secrets.redis_pw, safe=""), secrets.key,
        base64.b64encode(secrets.api.encode()).decode(), secrets.basic_pair,
        "T1JJ3T3L2", "TIiajkdnlazkcOXrIdevi7", "oncall", "pw", "remediator.db",
    ]))
    assert text.split() == [REDACTED] * 7 + ["oncall", "pw", "remediator.db"]
    odd = 'pa"ss\\wörd<&>'
    forms = Redactor(derived_forms(odd))
    for shown in (json.dumps(odd), json.dumps(odd, ensure_ascii=False), html.escape(odd),
                  quote(odd, safe=""), quote_plus(odd)):
        assert forms.text(f"x{shown}y").count(REDACTED) == 1, shown
    nested = redactor({secrets.webhook: [("x", secrets.webhook)], "n": 1, "t": None})
    assert nested == {REDACTED: [("x", REDACTED)], "n": 1, "t": None}


@settings(max_examples=300, deadline=None)
@given(secret=st.text(min_size=MIN_SECRET_LENGTH, max_size=40),
       before=st.text(max_size=30), after=st.text(max_size=30))
@example(secret="ted]ab", before="", after="ab")  # the marker next to a secret re-forms it
@example(secret="aaaaaa", before="a", after="aaaaa")
def test_no_secret_survives_redaction_whatever_surrounds_it(
    secret: str, before: str, after: str
) -> None:
    """For any secret and any text around it, the redacted text no longer holds it."""
    redactor = Redactor([secret])
    out = redactor.text(before + secret + after)
    assert secret not in out
    assert REDACTED in out
    assert redactor({"k": [before + secret + after]})["k"][0] == out


def _walked(redactor: Redactor, value: Any) -> Any:
    """The redaction of a JSON value, string by string (the oracle for the one-scan path)."""
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, dict):
        return {_walked(redactor, k): _walked(redactor, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walked(redactor, v) for v in value]
    return value


_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=12)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(secret=st.text(min_size=MIN_SECRET_LENGTH, max_size=16), value=_JSON_VALUES,
       plant=st.booleans(), as_key=st.booleans(), around=st.text(max_size=4))
@example(secret='"quote"', value={"a": ['x"quote"y']}, plant=False, as_key=False, around="")
@example(secret="line\nbreak", value=["line\nbreak"], plant=False, as_key=False, around="")
@example(secret="tab\there", value={"tab\there": 1}, plant=False, as_key=False, around="")
def test_structured_values_are_redacted_like_each_of_their_strings(
    secret: str, value: Any, plant: bool, as_key: bool, around: str
) -> None:
    """A dict or list of plain JSON, with or without a secret in a key or a value (quotes,
    backslashes and control characters included), comes out exactly as redacting each of
    its strings would make it; one that holds no secret comes out unchanged."""
    if plant:
        planted = around + secret + around
        value = {planted: value} if as_key else [value, planted]
    redactor = Redactor([secret])
    out = redactor(value)
    assert out == _walked(redactor, value)
    if isinstance(out, dict | list):
        assert secret not in json.dumps(out, ensure_ascii=False)
        assert json.dumps(secret, ensure_ascii=False)[1:-1] not in json.dumps(
            out, ensure_ascii=False)
    if plant:
        assert REDACTED in json.dumps(out, ensure_ascii=False)


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=MIN_SECRET_LENGTH, max_size=16), value=_JSON_VALUES,
       around=st.text(max_size=4))
@example(secret="pässwörd-é", value=None, around="")
@example(secret="\U0001f511-key-\u2028", value=[1], around="x")
def test_json_bodies_never_carry_a_secret_ascii_escaped_or_not(
    secret: str, value: Any, around: str
) -> None:
    """Every JSON body the app writes (Flask escapes non-ASCII as \\uXXXX) goes without the
    secret, whether it sits in a key or a value; a body without one is dumped unchanged."""
    from flask import Flask

    from receiver.app import _JSON

    provider = _JSON(Flask("json-bodies"), Redactor([secret]))
    planted = {"k": value, around + secret + around: [around + secret]}
    body = provider.dumps(planted)
    assert secret not in json.loads(body) and secret not in json.dumps(json.loads(body))
    assert all(secret not in k for k in json.loads(body))
    clean = {"k": value}
    if not Redactor([secret]).found_in_json(json.dumps(clean)):
        assert json.loads(provider.dumps(clean)) == json.loads(json.dumps(clean))


def test_structured_values_that_json_cannot_dump_are_still_redacted() -> None:
    """Tuples as keys, datetimes and dataclasses inside a dict take the string-by-string
    walk: the secret goes all the same."""
    secret = "s3cr3t-value"
    redactor = Redactor([secret])
    out = redactor({("k", 1): secret, "when": datetime(2026, 1, 1, tzinfo=UTC),
                    "record": Message(title=f"about {secret}", body="b")})
    assert out[("k", 1)] == REDACTED
    assert out["when"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert secret not in repr(out)


def test_standard_library_log_records_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's and apprise's loggers are the standard library's: a configured secret in
    a record's message, its arguments or its exception never reaches a handler's output."""
    import io
    import logging

    secret = "stdlib-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("REMEDIATOR_TEST_STDLIB_SECRET", secret)
    config = make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_STDLIB_SECRET"})
    before = logging.getLogRecordFactory()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    log = logging.getLogger("gunicorn.error.redaction-test")
    log.addHandler(handler)
    log.propagate = False
    try:
        configure_logging("info", "json", redactor_for(config))
        configure_logging("info", "json", redactor_for(config))  # twice: wrapped once
        log.error("token %s seen", secret)
        log.warning(f"inline {secret} and bearer Authorization: Bearer {secret}")
        try:
            raise RuntimeError(f"connect failed with {secret}")
        except RuntimeError:
            log.exception("worker crashed")
    finally:
        log.removeHandler(handler)
        logging.setLogRecordFactory(before)
    text = out.getvalue()
    assert "seen" in text and "worker crashed" in text and "RuntimeError" in text
    assert secret not in text
    assert text.count(REDACTED) >= 4
