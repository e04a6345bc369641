"""Diagnostics (checklist phase 2) against real services: a real container on dockerd, a real
PostgreSQL with a long query, the real Redis, a real Prometheus, and local HTTP servers (one
that never answers). ``bash scripts/services.sh`` starts PostgreSQL, Redis and dockerd; this
module starts Prometheus and the HTTP servers itself. Nothing here mocks a client."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import docker
import docker.errors
import psycopg
import pytest
import redis

from receiver.diagnostics import list_evidence, list_requests, request, run_due
from receiver.store import Store
from receiver.store import evidence as evidence_store
from tests.conftest import PG_DSN, Clock
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.support import free_port, wait_until

REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS_URL", "redis://127.0.0.1:63790/0")
IMAGE = "local/busybox:test"
RUN = uuid.uuid4().hex[:8]
OWNER_LABEL = "remediator.test.run"


# -- local servers ------------------------------------------------------------------------------

SECRET_BODY = "db=postgresql://app:hunter2-body@db:5432/app token: Bearer eyJhbGciOi.abc.def0123"


class LocalHttp:
    """A local HTTP server: /health 200, /ready 503, /secret echoes a DSN, /big 3000 bytes,
    /count/<key> counts its hits (and takes 0.2s)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                status, body = 200, "ok"
                if self.path == "/ready":
                    status, body = 503, "not ready: database unreachable"
                elif self.path == "/secret":
                    body = SECRET_BODY
                elif self.path == "/big":
                    body = "x" * 3000
                elif self.path.startswith("/count/"):
                    with outer.lock:
                        outer.hits[self.path[7:]] += 1
                    time.sleep(0.2)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def http() -> Iterator[LocalHttp]:
    server = LocalHttp()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hanging() -> Iterator[str]:
    """A TCP server that accepts connections and never answers; its http:// URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/health"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port, scraping itself every second."""
    root = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def scraped() -> bool:
        try:
            query = f"{url}/api/v1/query?query=up"  # an http:// URL built above
            with urllib.request.urlopen(query, timeout=1) as resp:  # noqa: S310
                return bool(json.loads(resp.read())["data"]["result"])
        except OSError:
            return False

    try:
        wait_until(scraped, 30, "Prometheus to scrape itself")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.images.get(IMAGE)
    except docker.errors.DockerException as exc:
        pytest.fail(f"dockerd or {IMAGE} unavailable ({exc}); run: bash scripts/services.sh")
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={RUN}"}):
        container.remove(force=True)
    client.close()


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    yield conn
    conn.close()


def pg_dsn_with_password(password: str) -> str:
    """The test server's DSN with a password in it (trust auth ignores it)."""
    scheme, _, rest = PG_DSN.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}"


# -- helpers --------------------------------------------------------------------------------------


LOOPBACK_HOSTS = {"hosts": ["127.0.0.1:*"]}
"""targets.http for the local servers of these tests (every port of 127.0.0.1)."""


def make_kit(store: Store, clock: Clock, checks: list[dict[str, Any]], **cfg: Any) -> Kit:
    cfg["targets"] = {"http": LOOPBACK_HOSTS, **cfg.get("targets", {})}
    return Kit(store, clock, [], diagnostics={"checks": checks, **cfg.pop("diag", {})}, **cfg)


def open_incident(kit: Kit, **labels: str) -> int:
    """Fire one AppDown alert (plus any extra labels) in its own group; the incident's id."""
    alerts = [make_alert(labels={"instance": f"web-{uuid.uuid4().hex[:6]}", **labels})]
    result = kit.fire(make_notification(alerts, group_key=f"{{}}:{{g={uuid.uuid4().hex}}}"))
    assert result.incident_opened
    return int(result.incident_id)


def evidence_by_name(store: Store, incident_id: int) -> dict[str, dict[str, Any]]:
    return {e.check_name: {**asdict(e), "outcome": e.outcome}
            for e in list_evidence(store, incident_id)}


def raw_evidence_text(store: Store) -> str:
    with store.db.transaction(write=False) as tx:
        rows = tx.fetchall("SELECT check_name, summary, detail FROM evidence ORDER BY id")
        events = tx.fetchall("SELECT message, detail FROM incident_events ORDER BY id")
    return json.dumps([rows, events], default=str)


# -- the tests ------------------------------------------------------------------------------------


def test_http_checks_run_in_parallel_and_a_hanging_check_is_cut_off_at_its_timeout(
    store: Store, clock: Clock, http: LocalHttp, hanging: str
) -> None:
    """A check that never answers is recorded as timeout after 1s while the others complete."""
    kit = make_kit(store, clock, [
        {"name": "hang", "timeout": "1s", "http": {"url": hanging}},
        {"name": "health", "http": {"url": f"{http.url}/health"}},
        {"name": "ready", "http": {"url": f"{http.url}/ready"}},
    ])
    incident = open_incident(kit)
    assert list_requests(store, incident)[0].state == "pending"

    started = time.monotonic()
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1
    elapsed = time.monotonic() - started

    found = evidence_by_name(store, incident)
    assert found["hang"]["outcome"] == "timeout" and not found["hang"]["ok"]
    assert 900 <= found["hang"]["duration_ms"] <= 1500
    assert found["health"]["outcome"] == "ok" and found["health"]["detail"]["status"] == 200
    assert found["ready"]["outcome"] == "failed"
    assert found["ready"]["detail"]["body_excerpt"] == "not ready: database unreachable"
    assert elapsed < 2.5
    assert [r.state for r in list_requests(store, incident)] == ["done"]
    event = [e for e in store.get_incident(incident)["timeline"] if e["kind"] == "diagnostics"]
    assert len(event) == 1 and event[0]["actor"] == "system"
    assert "1 of 3 checks ok" in event[0]["message"]
    assert event[0]["detail"]["counts"] == {"ok": 1, "failed": 1, "timeout": 1}


def test_docker_check_reports_state_restarts_image_and_error_lines(
    store: Store, clock: Clock, docker_client: docker.DockerClient
) -> None:
    """A real container's state, restart count, image and ERROR log lines become evidence,
    and a container outside the allowlist is refused."""
    name = f"rmdiag-{RUN}-{uuid.uuid4().hex[:4]}"
    script = (
        "echo starting; echo 'ERROR payment gateway refused the connection';"
        " echo 'DATABASE_URL=postgresql://app:hunter2-log@db/app';"
        " if [ ! -f /tmp/once ]; then touch /tmp/once; exit 3; fi; exec sleep 3600"
    )
    docker_client.containers.run(
        IMAGE, ["sh", "-c", script], name=name, detach=True, stop_signal="SIGKILL",
        labels={OWNER_LABEL: RUN}, restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )

    def restarted_once() -> bool:
        attrs = docker_client.api.inspect_container(name)
        running = attrs["RestartCount"] == 1 and attrs["State"]["Status"] == "running"
        return running and docker_client.api.logs(name).count(b"ERROR") == 2

    wait_until(restarted_once, 20, f"{name} to restart once and keep running")
    kit = make_kit(
        store, clock,
        [{"name": "app", "matchers": ['container=~".+"'],
          "docker": {"container": "{{ labels.container }}", "log_lines": 50}}],
        targets={"containers": {"patterns": [f"rmdiag-{RUN}-*"]}},
    )
    allowed = open_incident(kit, container=name)
    forbidden = open_incident(kit, container="db-primary")

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 2

    app = evidence_by_name(store, allowed)["app"]
    facts = app["detail"]["container"]
    assert facts["status"] == "running" and facts["restart_count"] == 1
    assert facts["image"] == IMAGE and facts["started_at"]
    assert app["detail"]["error_line_count"] == 2  # one per run of the entrypoint
    assert all("ERROR payment gateway" in line for line in app["detail"]["error_lines"])
    assert app["outcome"] == "failed" and "1 restarts" in app["summary"]
    assert "hunter2-log" not in raw_evidence_text(store)
    refused = evidence_by_name(store, forbidden)["app"]
    assert refused["outcome"] == "refused" and "not allowed" in refused["summary"]


def test_postgres_check_shows_the_long_query_connections_and_size(
    store: Store, clock: Clock, pg_admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pg_sleep running from another connection is among the longest queries, next to the
    connection count, max_connections and database size, and the DSN's password is not kept."""
    monkeypatch.setenv("RMDIAG_PG_DSN", pg_dsn_with_password("hunter2-pg"))
    kit = make_kit(
        store, clock, [{"name": "db", "postgres": {"target": "main"}}],
        targets={"postgres": {"main": {"dsn": "env:RMDIAG_PG_DSN", "databases": ["*"]}}},
    )
    sleeper = psycopg.connect(PG_DSN, autocommit=True, application_name="rmdiag-sleeper")
    pid = sleeper.info.backend_pid
    thread = threading.Thread(
        target=_run_quietly, args=(sleeper, "SELECT pg_sleep(30)"), daemon=True
    )
    thread.start()
    try:
        wait_until(
            lambda: pg_admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                " AND clock_timestamp() - query_start > interval '300 ms'", (pid,)
            ).fetchone(),
            10, "the pg_sleep to be active",
        )
        incident = open_incident(kit)
        assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1
    finally:
        pg_admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)
        sleeper.close()

    db = evidence_by_name(store, incident)["db"]
    assert db["outcome"] == "ok", db["summary"]
    longest = db["detail"]["longest_queries"]
    mine = [q for q in longest if q["pid"] == pid]
    assert mine and "pg_sleep(30)" in mine[0]["query"] and mine[0]["duration_s"] >= 0.3
    max_connections = int(pg_admin.execute("SHOW max_connections").fetchone()[0])
    assert db["detail"]["connections"]["max_connections"] == max_connections
    assert db["detail"]["connections"]["client_connections"] >= 2
    assert db["detail"]["database_size"]["bytes"] > 0
    assert 0 <= db["detail"]["select_1_ms"] < 1000
    assert "hunter2-pg" not in raw_evidence_text(store)


def _run_quietly(conn: psycopg.Connection[Any], query: str) -> None:
    with contextlib.suppress(psycopg.Error):
        conn.execute(query)


def test_redis_check_reports_ping_latency_memory_and_clients(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Redis answers PING, and its INFO memory and clients are kept."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis unavailable at {REDIS_URL} ({exc}); run: bash scripts/services.sh")
    monkeypatch.setenv("RMDIAG_REDIS_URL", REDIS_URL)
    kit = make_kit(
        store, clock, [{"name": "cache", "redis": {"target": "cache", "db": 13}}],
        targets={"redis": {"cache": {"url": "env:RMDIAG_REDIS_URL", "dbs": [13]}}},
    )
    incident = open_incident(kit)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    cache = evidence_by_name(store, incident)["cache"]
    client.close()
    assert cache["outcome"] == "ok", cache["summary"]
    assert 0 <= cache["detail"]["ping_ms"] < 1000
    assert cache["detail"]["memory"]["used_memory"] > 0
    assert cache["detail"]["clients"]["connected_clients"] >= 1
    assert "PING in" in cache["summary"]


def test_prometheus_check_snapshots_each_query(
    store: Store, clock: Clock, prometheus: str
) -> None:
    """A real Prometheus answers `up` as a snapshot, and a bad query is an error beside it."""
    kit = make_kit(store, clock, [{"name": "traffic", "prometheus": {
        "url": prometheus,
        "queries": {"up": 'up{job="self"}', "series": "count(up)", "bad": "sum(("},
    }}])
    incident = open_incident(kit)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    traffic = evidence_by_name(store, incident)["traffic"]
    queries = traffic["detail"]["queries"]
    assert queries["up"]["samples"][0]["value"] == 1.0
    assert queries["up"]["samples"][0]["labels"]["job"] == "self"
    assert queries["series"]["samples"][0]["value"] >= 1
    assert "error" in queries["bad"]
    assert traffic["outcome"] == "error" and "up=1" in traffic["summary"]


def test_secrets_are_redacted_from_stored_evidence(
    store: Store, clock: Clock, http: LocalHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passwords in a check URL, in a response body and in a target's DSN are never stored."""
    monkeypatch.setenv("RMDIAG_PG_DSN", pg_dsn_with_password("hunter2-dsn"))
    userinfo_url = http.url.replace("http://", "http://probe:hunter2-url@") + "/health"
    kit = make_kit(
        store, clock,
        [{"name": "echo", "http": {"url": f"{http.url}/secret"}},
         {"name": "creds", "http": {"url": userinfo_url}},
         {"name": "db", "postgres": {"target": "main", "database": "nope"}}],
        targets={"postgres": {"main": {"dsn": "env:RMDIAG_PG_DSN", "databases": ["postgres"]}}},
    )
    incident = open_incident(kit)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    text = raw_evidence_text(store)
    assert "hunter2" not in text and "eyJhbGciOi" not in text
    echo = evidence_by_name(store, incident)["echo"]
    assert echo["outcome"] == "ok"
    assert echo["detail"]["body_excerpt"].startswith("db=postgresql://[redacted]@db:5432/app")
    assert evidence_by_name(store, incident)["creds"]["detail"]["url"].startswith(
        "http://[redacted]@127.0.0.1:"
    )
    assert evidence_by_name(store, incident)["db"]["outcome"] == "refused"


def test_two_concurrent_workers_run_each_request_once(
    store: Store, clock: Clock, http: LocalHttp
) -> None:
    """Two run_due calls racing over six requests run each request exactly once."""
    key = uuid.uuid4().hex
    kit = make_kit(store, clock, [{"name": "count", "http": {"url": f"{http.url}/count/{key}"}}])
    incidents = [open_incident(kit) for _ in range(6)]
    assert http.hits[key] == 0  # the webhook path ran no check

    counts: list[int] = []
    barrier = threading.Barrier(2)

    def worker(wid: str) -> None:
        barrier.wait()
        counts.append(run_due(store, kit.config, clock=clock, worker_id=wid))

    threads = [threading.Thread(target=worker, args=(w,)) for w in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sum(counts) == 6 and http.hits[key] == 6
    for incident in incidents:
        assert len(list_evidence(store, incident)) == 1
        assert [r.state for r in list_requests(store, incident)] == ["done"]


def test_an_expired_lease_is_run_again_and_the_late_worker_cannot_finish(
    store: Store, clock: Clock, http: LocalHttp
) -> None:
    """A request whose worker's lease ran out is run by another worker, and the first worker
    can no longer mark it done or store evidence for it."""
    kit = make_kit(store, clock, [{"name": "health", "http": {"url": f"{http.url}/health"}}])
    incident = open_incident(kit)
    with store.db.transaction() as tx:
        claimed = evidence_store.claim(tx, worker="gone", now=clock(), lease=timedelta(seconds=30))
    assert claimed is not None
    assert run_due(store, kit.config, clock=clock, worker_id="w2") == 0

    clock.advance(seconds=31)
    assert run_due(store, kit.config, clock=clock, worker_id="w2") == 1

    with store.db.transaction() as tx:
        assert not evidence_store.finish(tx, claimed["id"], worker="gone", now=clock())
    assert [r.lease_owner for r in list_requests(store, incident)] == ["w2"]
    assert len(list_evidence(store, incident)) == 1


def test_on_demand_request_is_recorded_once_and_run_by_the_worker(
    store: Store, clock: Clock, http: LocalHttp
) -> None:
    """request() writes one diagnostics_requested event, reuses a pending request, and the
    worker then runs it."""
    kit = make_kit(store, clock, [{"name": "health", "http": {"url": f"{http.url}/health"}}])
    incident = open_incident(kit)
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    first = request(store, incident, actor="alice", reason="after the deploy", now=clock())
    again = request(store, incident, actor="bob", reason="again", now=clock())
    assert first is not None and again == first
    assert request(store, 999999, actor="alice", reason="x", now=clock()) is None
    assert kit.kinds(incident).count("diagnostics_requested") == 1

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1
    requests = list_requests(store, incident)
    assert [(r.state, r.requested_by) for r in requests] == [
        ("done", "alertmanager"), ("done", "alice")
    ]
    assert [e.request_id for e in list_evidence(store, incident)] == [
        requests[0].id, requests[1].id
    ]


def test_only_checks_whose_matchers_match_an_alert_run(
    store: Store, clock: Clock, http: LocalHttp
) -> None:
    """A check with matchers runs only when an alert matches; one without always runs."""
    kit = make_kit(store, clock, [
        {"name": "db-only", "match": {"alertname": "DbDown"},
         "http": {"url": f"{http.url}/health"}},
        {"name": "always", "http": {"url": f"{http.url}/health"}},
        {"name": "web", "match_re": {"instance": "web-.*"}, "http": {"url": f"{http.url}/health"}},
    ])
    incident = open_incident(kit)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    assert sorted(evidence_by_name(store, incident)) == ["always", "web"]


def test_evidence_is_capped_at_max_evidence_bytes(
    store: Store, clock: Clock, http: LocalHttp
) -> None:
    """A body larger than max_evidence_bytes is cut and the evidence is marked truncated."""
    kit = make_kit(store, clock, [{"name": "big", "http": {"url": f"{http.url}/big"}}],
                   diag={"max_evidence_bytes": 1024})
    incident = open_incident(kit)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    big = evidence_by_name(store, incident)["big"]
    stored = json.dumps(big["detail"], ensure_ascii=False, separators=(",", ":")).encode()
    assert len(stored) <= 1024
    assert big["detail"]["truncated"] is True and big["detail"]["status"] == 200
    assert big["detail"]["body_excerpt"].startswith("xxxx")


def test_config_refuses_a_check_with_two_probes() -> None:
    """A diagnostic check must name exactly one probe."""
    from receiver.config import parse_config
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError, match=r"diagnostics.checks\[0\]"):
        parse_config({"diagnostics": {"checks": [
            {"name": "x", "http": {"url": "http://a"}, "redis": {"target": "c"}}
        ]}})
