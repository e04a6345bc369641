"""The webhook endpoint: auth, content checks, hostile input, and the store being down.

Every refusal is a 4xx with a JSON body naming the problem, and stores nothing.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config.server import ServerConfig
from receiver.store import Store, open_store
from tests.conftest import TOKEN, make_config
from tests.factories import make_alert, make_notification
from tests.pgserver import PgServer

CAP = ServerConfig.model_fields["max_body_bytes"].default  # the default body cap

def stored(store: Store) -> dict[str, int]:
    with store.db.transaction(write=False) as tx:
        return {
            t: int(tx.fetchone(f"SELECT COUNT(*) AS n FROM {t}")["n"])  # noqa: S608 - fixed names
            for t in ("notifications", "alerts", "incidents", "incident_events", "jobs")
        }


NOTHING = {"notifications": 0, "alerts": 0, "incidents": 0, "incident_events": 0, "jobs": 0}


def post_raw(client: Any, data: bytes, content_type: str = "application/json", **kw: Any) -> Any:
    return client.post("/api/v1/alerts", data=data, content_type=content_type, **kw)


def test_valid_notification_is_accepted_and_committed(client: Any, store: Store) -> None:
    """A valid firing notification answers 200 with the incident id, after it is stored."""
    r = client.post("/api/v1/alerts", json=make_notification())
    assert r.status_code == 200 and r.json["opened"] is True
    assert store.get_incident(r.json["incident_id"])["state"] == "open"


def test_alias_path_accepts_the_same_payload(client: Any, store: Store) -> None:
    """/alertmanager is an alias of /api/v1/alerts."""
    r = client.post("/alertmanager", json=make_notification())
    assert r.status_code == 200 and stored(store)["incidents"] == 1


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", "Bearer ", "Basic " + base64.b64encode(b"a:b").decode(), "Token x"],
)
def test_missing_or_bad_credentials_get_401(client: Any, store: Store, header: str | None) -> None:
    """Without the right bearer token the answer is 401 with a challenge, and nothing is stored."""
    headers = {"Authorization": header} if header is not None else {"Authorization": ""}
    r = client.post("/api/v1/alerts", json=make_notification(), headers=headers)
    assert r.status_code == 401 and r.json["error"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored(store) == NOTHING


def test_basic_auth_is_checked(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic auth accepts the configured user and password only."""
    monkeypatch.setenv("AM_PASS", "s3cret:with:colons")
    app = create_app(make_config(auth={"basic": {"username": "am", "password": "env:AM_PASS"}}),
                     store=store)
    c = app.test_client()

    def basic(user: str, pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    assert c.post("/api/v1/alerts", json=make_notification(), headers=basic("am", "nope")).status_code == 401
    assert c.post("/api/v1/alerts", json=make_notification(), headers=basic("x", "s3cret:with:colons")).status_code == 401
    assert c.post("/api/v1/alerts", json=make_notification(), headers={"Authorization": "Basic !!!"}).status_code == 401
    ok = c.post("/api/v1/alerts", json=make_notification(), headers=basic("am", "s3cret:with:colons"))
    assert ok.status_code == 200


def test_app_refuses_to_start_without_auth(store: Store) -> None:
    """No auth configured and no explicit opt-out: the app is not built."""
    with pytest.raises(RuntimeError, match="insecure-no-auth"):
        create_app(make_config(), store=store)


def test_explicit_opt_out_accepts_unauthenticated(store: Store) -> None:
    """With the explicit opt-out, a request without credentials is accepted."""
    c = create_app(make_config(), store=store, insecure_no_auth=True).test_client()
    assert c.post("/api/v1/alerts", json=make_notification()).status_code == 200


def test_non_json_content_type_gets_415(client: Any, store: Store) -> None:
    """A body that is not declared as JSON is refused with 415."""
    r = post_raw(client, json.dumps(make_notification()).encode(), "text/plain")
    assert r.status_code == 415 and r.json["error"] == "unsupported_media_type"
    assert stored(store) == NOTHING


def test_body_over_the_cap_gets_413_before_reading(client: Any, store: Store) -> None:
    """A declared length over the cap is refused with 413."""
    big = json.dumps(make_notification([make_alert(annotations={"x": "a" * (CAP + 1000)})])).encode()
    r = post_raw(client, big)
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"
    assert stored(store) == NOTHING


def test_chunked_body_over_the_cap_gets_413(client: Any, store: Store) -> None:
    """A body streamed without Content-Length is cut off at the cap with 413."""
    big = json.dumps(make_notification([make_alert(annotations={"x": "a" * (CAP + 1000)})])).encode()

    r = client.post("/api/v1/alerts", input_stream=io.BytesIO(big), content_type="application/json",
                    headers={"Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413 and r.json["error"] == "payload_too_large"
    assert stored(store) == NOTHING


def _nested(depth: int) -> bytes:
    return b'{"version":"4","x":' + b"[" * depth + b"]" * depth + b"}"


def _with_alert(**alert_over: Any) -> bytes:
    return json.dumps(make_notification([make_alert(**alert_over)])).encode()


def _drop(key: str) -> bytes:
    body = make_notification()
    del body[key]
    return json.dumps(body).encode()


HOSTILE = {
    "not_json": (b"this is not json", "invalid_json", "(body)"),
    "empty": (b"", "invalid_json", "(body)"),
    "whitespace": (b"   \n", "invalid_json", "(body)"),
    "null": (b"null", "invalid_payload", "(body)"),
    "array": (b"[]", "invalid_payload", "(body)"),
    "string": (b'"alerts"', "invalid_payload", "(body)"),
    "missing_group_key": (_drop("groupKey"), "invalid_payload", "groupKey"),
    "missing_alerts": (_drop("alerts"), "invalid_payload", "alerts"),
    "wrong_type_alerts": (json.dumps(make_notification() | {"alerts": "x"}).encode(), "invalid_payload", "alerts"),
    "wrong_type_labels": (_with_alert(labels={"n": 1}), "invalid_payload", "alerts.0.labels.n"),
    "version_3": (json.dumps(make_notification(version="3")).encode(), "invalid_payload", "version"),
    "bad_status": (_with_alert(status="exploded"), "invalid_payload", "alerts.0.status"),
    "bad_timestamp": (_with_alert(starts_at="yesterday"), "invalid_payload", "alerts.0.startsAt"),
    "timestamp_without_zone": (_with_alert(starts_at="2026-01-01T12:00:00"), "invalid_payload", "alerts.0.startsAt"),
    "deep_nesting": (_nested(50_000), "invalid_json", "(body)"),
    "raw_nul": (json.dumps(make_notification()).encode().replace(b'"firing"', b'"fir\x00ing"', 1), "invalid_json", "(body)"),
    "invalid_utf8": (json.dumps(make_notification()).encode().replace(b"remediator", b"rem\xff\xfe", 1), "invalid_json", "(body)"),
    "no_alerts": (json.dumps(make_notification([])).encode(), "invalid_payload", "alerts"),
}
# An escaped NUL in a label and 20,000 labels within the body cap are well-formed
# notifications Alertmanager can send: they are stored (tests/test_webhook_limits.py).


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_gets_400_naming_the_problem(client: Any, store: Store, case: str) -> None:
    """Malformed input answers 400 with a JSON error that locates it, and stores nothing."""
    body, code, loc = HOSTILE[case]
    r = post_raw(client, body)
    assert r.status_code == 400, r.data[:300]
    assert r.json["error"] == code
    assert loc in [d["loc"] for d in r.json["detail"]]
    assert stored(store) == NOTHING


@pytest.mark.parametrize(
    "value",
    ["$(reboot)", "web1; rm -rf /", "'; DROP TABLE alerts; --", "`id`", "<script>alert(1)</script>",
     "../../etc/passwd", "a\\b\"c", "ünïcødé ✓", "%s %(x)s :name ?"],
)
def test_metacharacters_in_labels_are_stored_verbatim(client: Any, store: Store, value: str) -> None:
    """Shell, SQL and format metacharacters in labels are data: stored exactly, nothing else."""
    r = client.post("/api/v1/alerts", json=make_notification(
        [make_alert(labels={"container": value}, annotations={"description": value})]))
    assert r.status_code == 200
    inc = store.get_incident(r.json["incident_id"])
    assert inc["alerts"][0]["labels"]["container"] == value
    assert inc["alerts"][0]["annotations"]["description"] == value
    assert stored(store)["alerts"] == 1


def test_get_is_not_allowed_on_the_webhook(client: Any, store: Store) -> None:
    """GET on the webhook path is 405 as JSON, never a state change."""
    r = client.get("/api/v1/alerts")
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed"


def test_store_down_gives_503_and_the_retry_is_accepted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL stopped mid-test: 503 (so Alertmanager retries); restarted: the retry lands once."""
    pg = PgServer()
    pg.start()
    try:
        store = open_store(pg.url, pool_min=1, pool_max=4, timeout=2.0)
        store.migrate()
        monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
        cfg = make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"})
        c = create_app(cfg, store=store).test_client()
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        assert c.post("/api/v1/alerts", json=make_notification(group_key="first")).status_code == 200

        pg.stop()
        body = make_notification([make_alert(alertname="DiskFull")], group_key="during-outage")
        down = c.post("/api/v1/alerts", json=body)
        assert down.status_code == 503 and down.json["error"] == "store_unavailable"
        assert down.headers["Retry-After"]
        metrics = c.get("/metrics").get_data(as_text=True)
        assert 'remediator_notifications_rejected_total{reason="store_unavailable"} 1.0' in metrics
        assert c.get("/readyz").status_code == 503

        pg.start()
        deadline = time.monotonic() + 30
        while (retried := c.post("/api/v1/alerts", json=body)).status_code == 503:
            assert time.monotonic() < deadline, "store never came back"
            time.sleep(0.5)  # Alertmanager retries with backoff in the same way
        again = c.post("/api/v1/alerts", json=body)  # and a second peer may deliver it too
        assert retried.status_code == 200 and again.status_code == 200
        assert stored(store)["incidents"] == 2 and stored(store)["alerts"] == 2
        assert c.get("/readyz").status_code == 200
        store.close()
    finally:
        pg.destroy()


def test_metrics_count_accepted_and_rejected(client: Any) -> None:
    """/metrics counts notifications by status and rejections by reason."""
    client.post("/api/v1/alerts", json=make_notification())
    post_raw(client, b"nope")
    client.post("/api/v1/alerts", json=make_notification(), headers={"Authorization": ""})
    text = client.get("/metrics").data.decode()
    assert 'remediator_notifications_received_total{status="firing"} 1.0' in text
    assert 'remediator_notifications_rejected_total{reason="invalid_json"} 1.0' in text
    assert 'remediator_notifications_rejected_total{reason="unauthorized"} 1.0' in text
    assert 'remediator_incidents_opened_total{severity="P1"} 1.0' in text
    assert "remediator_webhook_duration_seconds_bucket" in text


def test_security_headers_are_sent(client: Any) -> None:
    """Every response carries nosniff, no framing and a CSP."""
    r = client.get("/healthz")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
