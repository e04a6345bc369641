"""Verification after a playbook: HTTP checks against a real local server and PromQL checks
against a real Prometheus, alone and through the worker."""

from __future__ import annotations

from typing import Any

from receiver.remediation.rules import HttpCheck, PromQLCheck
from receiver.remediation.targets import HttpTargets
from receiver.remediation.verification import http_check, promql_check
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.support import free_port
from tests.test_diagnostics import LocalHttp, http, prometheus  # noqa: F401 - fixtures

NO_SLEEP = lambda _s: None  # noqa: E731 - a test clock that does not wait
LOOPBACK = HttpTargets(hosts=["127.0.0.1:*"])


def test_http_check_passes_on_the_expected_status(http: LocalHttp) -> None:  # noqa: F811
    """200 from a real local server passes; 503 from /ready fails with the status named."""
    ok = http_check(HttpCheck(url=f"{http.url}/health", within="0s"), {}, NO_SLEEP,
                    hosts=LOOPBACK)
    bad = http_check(HttpCheck(url=f"{http.url}/ready", within="0s"), {}, NO_SLEEP,
                     hosts=LOOPBACK)
    assert ok.ok and "200" in ok.summary
    assert not bad.ok and "503" in bad.summary and "want 200" in bad.summary


def test_http_check_renders_labels_and_reports_connection_errors() -> None:
    """A closed port fails with the error; the URL was rendered from the alert's labels."""
    port = free_port()
    r = http_check(HttpCheck(url="http://127.0.0.1:{{ labels.port }}/x", within="0s"),
                   {"port": str(port)}, NO_SLEEP, hosts=LOOPBACK)
    assert not r.ok and r.detail["url"] == f"http://127.0.0.1:{port}/x"
    assert r.detail["error"]


def test_http_check_retries_soon_after_a_first_failure_then_backs_off_to_its_interval() -> None:
    """The first attempt often runs just before the restarted service listens: the next
    ones come 0.1 s, 0.2 s, ... later, doubling up to the check's interval (2 s), instead of
    a whole interval after the playbook. The waits are read from the sleep callable."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ready = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200 if ready.is_set() else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 7:
            ready.set()

    try:
        r = http_check(HttpCheck(url=f"http://127.0.0.1:{server.server_address[1]}/",
                                 within="60s", interval="2s"), {}, sleep, hosts=LOOPBACK)
    finally:
        server.shutdown()
        server.server_close()
    assert r.ok and r.attempts == 8
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_promql_expectations_against_a_real_prometheus(prometheus: str) -> None:  # noqa: F811
    """empty, non_empty, below and above are judged on a real query result."""
    def check(query: str, expect: str, threshold: float | None = None) -> Any:
        spec = PromQLCheck(url=prometheus, query=query, expect=expect, threshold=threshold,
                           within="0s")
        return promql_check(spec, {}, NO_SLEEP, hosts=LOOPBACK)

    assert check('up{job="self"}', "non_empty").ok
    assert check('up{job="self"} == 2', "empty").ok
    assert check('up{job="self"}', "above", 0.5).ok
    below = check('up{job="self"}', "below", 0.5)
    assert not below.ok and "[1.0]" in below.summary
    broken = check("up{", "non_empty")
    assert not broken.ok and "Prometheus" in broken.summary


def test_worker_verifies_with_promql_and_fails_when_it_does_not_hold(
    store: Store, clock: Clock, prometheus: str  # noqa: F811
) -> None:
    """A job whose PromQL verification holds succeeds; one whose does not fails, with a
    verification_failed event on the incident."""
    good = rule("good", verify={"promql": {"url": prometheus, "within": "0s",
                                           "query": 'up{job="self"}',
                                           "expect": "non_empty"}})
    bad = rule("bad", guards={"cooldown": "0s"},
               verify={"promql": {"url": prometheus, "within": "0s",
                                  "query": 'up{job="self"} == 0', "expect": "non_empty"}})
    kit = Kit(store, clock, [good, bad], targets={"http": {"hosts": ["127.0.0.1:*"]}})
    inc = kit.fire(make_notification([make_alert(labels={"container": "web1"})])).incident_id
    kit.drain()
    states = {j["rule"]: j["state"] for j in kit.jobs()}
    assert states == {"good": "succeeded", "bad": "failed"}
    assert "verification_failed" in kit.kinds(inc)
