"""Real processes end to end: ``remediator serve`` and ``remediator worker`` on a fresh
PostgreSQL database, real containers on the local dockerd, and the whole loop
Prometheus -> blackbox exporter -> Alertmanager -> remediator -> Docker, on loopback only.

Everything above the fixtures at the bottom is plain Python, so that ``bench/real_loop.py``
runs the same scenario without pytest. A :class:`Stack` owns what one scenario starts
(databases, processes, containers, files) and removes all of it in :meth:`Stack.close`.
Containers carry ``OWNER_LABEL=RUN_ID`` and a ``PREFIX`` name; a session fixture also
removes any that an interrupted run left behind.

The receiver runs from ``remediator.example.yml`` with data_dir, store.url (a reference to
``REMEDIATOR_DB_URL``), rules, targets and the remediation section replaced. Alertmanager
runs from ``alertmanager.example.yml`` with only the webhook URL replaced, through the
helper of tests/integration/conftest.py; its bearer token is what the receiver is given, and
the JSON API is read with a separate read-scoped API token (``people.api_tokens``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psycopg
import pytest
import yaml

from receiver.store.jobs import FINAL
from tests.conftest import ROOT, drop_pg_database, new_pg_database, pg_url
from tests.integration.conftest import (
    ALERTMANAGER_BIN,
    alertmanager_config,
    example_token,
)
from tests.support import free_port, http

IMAGE = "local/busybox:test"
RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"e2e-{RUN_ID}"
OWNER_LABEL = "remediator.e2e.run"
PROMETHEUS_BIN = "/usr/bin/prometheus"
BLACKBOX_BIN = "/usr/bin/prometheus-blackbox-exporter"
START_TIMEOUT = 30.0
FINAL_JOB_STATES = tuple(sorted(FINAL))

STOPS_FAST = ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait']
"""A container command whose PID 1 exits on SIGTERM: a restart takes well under a second."""

PEERS = (
    "http://alertmanager-0.example:9093",
    "http://alertmanager-1.example:9093",
    "http://alertmanager-2.example:9093",
)
"""externalURL of three HA Alertmanager peers: the only field in which their copies differ."""


# -- small helpers -------------------------------------------------------------------------


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Call ``check`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def epoch(value: str | datetime) -> float:
    """Seconds since the epoch of an aware datetime or an RFC 3339 string (ns allowed)."""
    if isinstance(value, datetime):
        return value.timestamp()
    text = _LONG_FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    return datetime.fromisoformat(text).timestamp()


def probe_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether GET ``url`` (a loopback URL) answers 200 right now."""
    try:
        return http("GET", url, timeout=timeout)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


def get_json(url: str, timeout: float = 2.0) -> Any:
    req = urllib.request.Request(url)  # noqa: S310 - loopback http URLs built by this module
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - as above
        return json.loads(resp.read())


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Proc:
    """A process this module started, in its own session (process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill9(self) -> None:
        """SIGKILL this one process (not its group), the way a crash or the OOM killer does."""
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL for the group this module created if it does not stop."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


@dataclass
class Remediator:
    """A running ``remediator serve``: where it listens, its two tokens, and its store."""

    url: str
    token: str  # the webhook's bearer token (Alertmanager's)
    api_token: str  # a read-scoped people.api_tokens entry, for the JSON API
    store_url: str
    proc: Proc

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/v1/alerts"

    def api(self, path: str) -> Any:
        """GET a JSON API path with the API token; the decoded body of a 200."""
        status, body = http("GET", self.url + path, headers=auth_headers(self.api_token))
        assert status == 200, f"GET {path} -> {status}: {body[:500]!r}"
        return json.loads(body)

    def query(self, text: str) -> list[tuple[Any, ...]]:
        """Read the store directly, not through the receiver."""
        with psycopg.connect(self.store_url) as conn:
            return list(conn.execute(text.encode()).fetchall())


# -- the stack -----------------------------------------------------------------------------


class Stack:
    """What one scenario starts, and its removal. Use :meth:`close` (the fixture does)."""

    def __init__(self, tmp: Path, client: docker.DockerClient) -> None:
        self.tmp = tmp
        self.docker = client
        self.token = example_token()
        self.api_token = f"e2e-api-{uuid.uuid4().hex}"
        self.env: dict[str, str] = {}
        self.procs: list[Proc] = []
        self.containers: list[Any] = []
        self.databases: list[str] = []
        self._db_urls: dict[Path, str] = {}
        self._cleanups: list[Callable[[], None]] = []

    @staticmethod
    def name(suffix: str) -> str:
        return f"{PREFIX}-{suffix}-{uuid.uuid4().hex[:4]}"

    def defer(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` in :meth:`close`, before databases are dropped (last in, first out)."""
        self._cleanups.append(cleanup)

    # -- resources --------------------------------------------------------------------------

    def database(self) -> str:
        """A new, empty database on the test server; ``serve`` migrates it."""
        name = new_pg_database(None)
        self.databases.append(name)
        return pg_url(name)

    def container(self, name: str, command: list[str], *, network_mode: str = "none",
                  **kwargs: Any) -> Any:
        created = self.docker.containers.run(
            IMAGE, command, name=name, detach=True, labels={OWNER_LABEL: RUN_ID},
            network_mode=network_mode, **kwargs,
        )
        self.containers.append(created)
        return created

    def started_at(self, container: Any) -> str:
        container.reload()
        return str(container.attrs["State"]["StartedAt"])

    def events(self, ids: list[str], action: str, since: float,
               until: float | None = None) -> list[dict[str, Any]]:
        """Docker events ``action`` of these containers with since <= time <= until.

        The API takes whole seconds and blocks until ``until`` has passed, so this asks for a
        slightly wider window (at most ~2 s of waiting) and cuts it by ``timeNano``.
        """
        end = time.time() if until is None else until
        stream = self.docker.events(
            since=math.floor(since), until=math.ceil(end) + 1, decode=True,
            filters={"type": "container", "event": action, "container": ids},
        )
        found = list(stream)
        return [e for e in found if since <= e["timeNano"] / 1e9 <= end]

    def first_event(self, ids: list[str], action: str, since: float,
                    timeout: float) -> dict[str, Any]:
        """The first Docker event ``action`` of these containers at or after ``since``."""
        stream = self.docker.events(
            since=math.floor(since), until=math.ceil(time.time() + timeout), decode=True,
            filters={"type": "container", "event": action, "container": ids},
        )
        try:
            for event in stream:
                if event["timeNano"] / 1e9 >= since:
                    return dict(event)
        finally:
            stream.close()
        raise TimeoutError(f"no docker {action!r} event for {ids} within {timeout:g}s")

    # -- processes --------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.tmp / f"{len(self.procs):02d}-{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def receiver_config(self, store_url: str, *, rules: list[dict[str, Any]],
                        targets: dict[str, Any],
                        remediation: dict[str, Any] | None = None) -> Path:
        """remediator.example.yml with data_dir, store, rules, targets and remediation set.

        The global rate budget is raised (tests and benchmarks act many times an hour).
        """
        cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
        cfg["data_dir"] = str(self.tmp / "data")
        cfg["store"]["url"] = "env:REMEDIATOR_DB_URL"
        cfg["rules"] = rules
        cfg["targets"] = targets
        cfg["remediation"] = {"rate_budget": {"max": 1000, "per": "1h"}, **(remediation or {})}
        cfg["people"] = {
            "users": {"e2e-reader": {"groups": []}},
            "api_tokens": {"e2e": {"token": "env:E2E_API_TOKEN", "user": "e2e-reader",
                                   "scope": "read"}},
        }
        path = self.tmp / f"remediator-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        self._db_urls[path] = store_url
        return path

    def _env(self, config: Path) -> dict[str, str]:
        env = {**os.environ, **self.env, "REMEDIATOR_WEBHOOK_TOKEN": self.token,
               "E2E_API_TOKEN": self.api_token, "REMEDIATOR_DB_URL": self._db_urls[config]}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def serve(self, config: Path, *, worker: bool) -> Remediator:
        """``remediator serve`` on a free loopback port; with ``worker``, its embedded worker."""
        port = free_port()
        argv = [sys.executable, "-m", "receiver", "serve", "-c", str(config),
                "--bind", f"127.0.0.1:{port}"]
        if not worker:
            argv.append("--no-worker")
        proc = self.spawn("serve", argv, self._env(config))
        rcv = Remediator(f"http://127.0.0.1:{port}", self.token, self.api_token,
                         self._db_urls[config], proc)

        def ready() -> bool:
            if not proc.running():
                raise RuntimeError(f"remediator serve exited:\n{proc.log()[-4000:]}")
            return probe_ok(rcv.url + "/readyz")

        wait_for(ready, START_TIMEOUT, "the receiver's /readyz")
        return rcv

    def worker(self, config: Path, *, threads: int = 2) -> Proc:
        """A ``remediator worker`` process, returned once it says it has started."""
        argv = [sys.executable, "-m", "receiver", "worker", "-c", str(config),
                "--threads", str(threads)]
        proc = self.spawn("worker", argv, self._env(config))

        def started() -> bool:
            if not proc.running():
                raise RuntimeError(f"remediator worker exited:\n{proc.log()[-4000:]}")
            return " started (" in proc.log()

        wait_for(started, START_TIMEOUT, "the worker's start line")
        return proc

    def alertmanager(self, webhook_url: str) -> str:
        """An Alertmanager from alertmanager.example.yml (webhook URL replaced); its URL."""
        config = self.tmp / "alertmanager.yml"
        config.write_text(alertmanager_config(webhook_url), encoding="utf-8")
        port = free_port()
        proc = self.spawn("alertmanager", [
            ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={self.tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        ])
        url = f"http://127.0.0.1:{port}"
        self._await(proc, url + "/-/ready", "alertmanager")
        return url

    def blackbox(self) -> str:
        """A blackbox exporter with an ``http_2xx`` module; its host:port."""
        config = self.tmp / "blackbox.yml"
        config.write_text(yaml.safe_dump({"modules": {"http_2xx": {
            "prober": "http", "timeout": "2s",
            "http": {"preferred_ip_protocol": "ip4", "valid_status_codes": [200]},
        }}}), encoding="utf-8")
        port = free_port()
        proc = self.spawn("blackbox", [
            BLACKBOX_BIN, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
        ])
        self._await(proc, f"http://127.0.0.1:{port}/metrics", "blackbox exporter")
        return f"127.0.0.1:{port}"

    def prometheus(self, *, probe_url: str, blackbox: str, alertmanager: str,
                   rules: list[dict[str, Any]]) -> str:
        """Prometheus scraping the blackbox probe of ``probe_url`` every second, evaluating
        ``rules`` every second and sending alerts to ``alertmanager``; its URL."""
        rule_file = self.tmp / "alert-rules.yml"
        rule_file.write_text(yaml.safe_dump({"groups": [{"name": "e2e", "rules": rules}]}),
                             encoding="utf-8")
        config = self.tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "alerting": {"alertmanagers": [{"static_configs": [
                {"targets": [alertmanager.removeprefix("http://")]}]}]},
            "scrape_configs": [{
                "job_name": PROBE_JOB,
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": [probe_url]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": blackbox},
                ],
            }],
        }, sort_keys=False), encoding="utf-8")
        port = free_port()
        proc = self.spawn("prometheus", [
            PROMETHEUS_BIN, f"--config.file={config}",
            f"--storage.tsdb.path={self.tmp / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ])
        url = f"http://127.0.0.1:{port}"
        self._await(proc, url + "/-/ready", "prometheus")
        return url

    def _await(self, proc: Proc, url: str, what: str) -> None:
        def ready() -> bool:
            if not proc.running():
                raise RuntimeError(f"{what} exited:\n{proc.log()[-4000:]}")
            return probe_ok(url)

        wait_for(ready, START_TIMEOUT, f"{what} at {url}")

    # -- teardown ---------------------------------------------------------------------------

    def assert_clean_logs(self) -> None:
        """No remediator process logged an error or a traceback."""
        for proc in self.procs:
            if proc.name in ("serve", "worker"):
                text = proc.log()
                bad = [line for line in text.splitlines()
                       if '"level": "error"' in line or "Traceback" in line]
                assert not bad, f"{proc.name} (pid {proc.pid}) logged errors:\n" + "\n".join(bad)

    def logs(self, limit: int = 6000) -> str:
        return "\n".join(f"----- {p.name} (pid {p.pid}) {p.log_path} -----\n{p.log()[-limit:]}"
                         for p in self.procs)

    def close(self) -> None:
        problems: list[str] = []
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                problems.append(f"stop {proc.name}: {exc}")
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except (OSError, psycopg.Error, docker.errors.DockerException) as exc:
                problems.append(f"cleanup {cleanup!r}: {exc}")
        for container in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for name in self.databases:
            try:
                drop_pg_database(name)
            except psycopg.Error as exc:
                problems.append(f"drop database {name}: {exc}")
        if problems:
            raise RuntimeError("teardown problems: " + "; ".join(problems))


# -- the real loop -------------------------------------------------------------------------

PROBE_JOB = "e2e-probe"
ALERT_NAME = "E2EAppDown"
RULE_NAME = "restart-on-probe-down"

STAGE_SOURCES = {
    "server_stopped": "this process, just before `busybox killall httpd` runs in the container",
    "probe_failing_seen": "this process, first failed GET of the URL (polled every ~0.2 s)",
    "prometheus_alert_active": "the alert's activeAt (Prometheus' rule evaluation time)",
    "alertmanager_alert_seen": "this process, first time Alertmanager's API lists the alert",
    "webhook_received": "notifications.first_received_at of the firing delivery (receiver "
                        "clock; = incident opened_at)",
    "job_claimed": "the job_claimed timeline event (worker clock)",
    "job_started": "the job_started timeline event: target locked, the playbook about to call "
                   "the Docker adapter",
    "container_restarted": "Docker's 'restart' event (sent once the restart has completed)",
    "service_healthy": "this process, first 200 from the URL after the failure",
    "job_succeeded": "the job_succeeded timeline event (after the HTTP verification passed)",
    "incident_mitigated": "the incident's mitigated_at",
    "prometheus_alert_gone_seen": "this process, first time Prometheus no longer lists the "
                                  "alert as firing",
    "resolved_webhook_received": "notifications.first_received_at of the resolved delivery",
    "incident_resolved": "the incident's resolved_at",
}
"""Each stage of one cycle (seconds after server_stopped) and where its time comes from."""
STAGES = tuple(STAGE_SOURCES)


@dataclass
class Loop:
    """A running loop: the web container, its probe URL and the processes' URLs."""

    container: Any
    probe_url: str
    receiver: Remediator
    prometheus: str
    alertmanager: str


@dataclass
class Cycle:
    """One stop -> alert -> remediation -> resolution cycle, as observed."""

    stages: dict[str, float]
    incident: dict[str, Any]
    jobs: list[dict[str, Any]]
    restarts: int
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def mttr(self) -> dict[str, float]:
        return mttr_figures(self.stages)


def start_web(stack: Stack) -> tuple[Any, str]:
    """The web container (busybox httpd on a loopback port, host network); it and its URL."""
    port = free_port()
    probe_url = f"http://127.0.0.1:{port}/"
    name = stack.name("web")
    # httpd in the background, so that killing it leaves the container running.
    command = ["sh", "-c", f"trap 'exit 0' TERM; httpd -f -p 127.0.0.1:{port} -h /www & "
               "sleep 3600 & wait"]
    container = stack.container(name, command, network_mode="host")
    wait_for(lambda: probe_ok(probe_url), START_TIMEOUT, f"httpd in {name}")
    return container, probe_url


def start_monitoring(stack: Stack, container: Any, probe_url: str,
                     webhook_url: str) -> tuple[str, str]:
    """Alertmanager (example config) delivering to ``webhook_url``, the blackbox exporter and
    Prometheus alerting on the probe of ``probe_url``; waits until Prometheus sees it succeed.
    Returns (Prometheus URL, Alertmanager URL)."""
    am = stack.alertmanager(webhook_url)
    bb = stack.blackbox()
    alert_rules = [{
        "alert": ALERT_NAME,
        "expr": f'probe_success{{job="{PROBE_JOB}"}} == 0',
        "for": "0s",
        "labels": {"severity": "critical", "container": container.name},
        "annotations": {"summary": f"{probe_url} does not answer"},
    }]
    prom = stack.prometheus(probe_url=probe_url, blackbox=bb, alertmanager=am, rules=alert_rules)

    def probe_up() -> bool:
        query = urllib.parse.quote(f'probe_success{{job="{PROBE_JOB}"}}')
        data = get_json(f"{prom}/api/v1/query?query={query}")["data"]["result"]
        return bool(data) and data[0]["value"][1] == "1"

    wait_for(probe_up, START_TIMEOUT, "Prometheus to see the probe succeed", interval=0.3)
    return prom, am


def start_real_loop(stack: Stack, store_url: str | None = None) -> Loop:
    """Start the web container, remediator (serve + embedded worker, on ``store_url`` or a
    fresh PostgreSQL database), Alertmanager, the blackbox exporter and Prometheus, and wait
    until Prometheus sees the probe succeed."""
    container, probe_url = start_web(stack)
    rules = [{
        "name": RULE_NAME,
        "match": {"alertname": ALERT_NAME},
        "playbook": "restart_container",
        "params": {"name": "{{ labels.container }}", "stop_timeout_s": 5},
        "approval": {"mode": "auto"},
        "guards": {"cooldown": "0s"},
        "verify": {"http": {"url": probe_url, "within": "30s"}},
    }]
    host = probe_url.removeprefix("http://").rstrip("/")
    config = stack.receiver_config(store_url or stack.database(), rules=rules,
                                   targets={"containers": {"names": [container.name]},
                                            "http": {"hosts": [host]}})
    receiver = stack.serve(config, worker=True)
    prom, am = start_monitoring(stack, container, probe_url, receiver.webhook_url)
    return Loop(container, probe_url, receiver, prom, am)


def _prometheus_alert(loop: Loop) -> dict[str, Any] | None:
    alerts = get_json(f"{loop.prometheus}/api/v1/alerts")["data"]["alerts"]
    return next((a for a in alerts if a["labels"].get("alertname") == ALERT_NAME
                 and a["state"] == "firing"), None)


def _alertmanager_alert(loop: Loop) -> dict[str, Any] | None:
    alerts = get_json(f"{loop.alertmanager}/api/v2/alerts")
    return next((a for a in alerts if a["labels"].get("alertname") == ALERT_NAME), None)


def _incident(loop: Loop) -> dict[str, Any] | None:
    listed = loop.receiver.api("/api/v1/incidents")["incidents"]
    return listed[0] if listed else None


def run_cycle(stack: Stack, loop: Loop, timeout: float = 85.0) -> Cycle:
    """Stop the web server inside its container and observe the loop until the incident is
    resolved (or ``timeout``). Returns the stages (see STAGES) and what the store holds."""
    at: dict[str, float] = {}

    def mark(stage: str, when: float | None = None) -> None:
        at.setdefault(stage, time.time() if when is None else when)

    mark("server_stopped")
    killed = loop.container.exec_run(["/bin/busybox", "killall", "httpd"])
    if killed.exit_code != 0:
        raise RuntimeError(f"killall httpd failed: {killed.output!r}")
    deadline = time.monotonic() + timeout
    while True:
        if not probe_ok(loop.probe_url, timeout=0.5):
            mark("probe_failing_seen")
        elif "probe_failing_seen" in at:
            mark("service_healthy")
        alert = _prometheus_alert(loop)
        if alert is not None:
            mark("prometheus_alert_active", epoch(alert["activeAt"]))
        elif "prometheus_alert_active" in at:
            mark("prometheus_alert_gone_seen")
        if _alertmanager_alert(loop) is not None:
            mark("alertmanager_alert_seen")
        incident = _incident(loop)
        if incident is not None and incident["state"] == "resolved":
            break
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no resolved incident {timeout:g}s after the stop; seen: "
                               f"{sorted(at)}; incident: {incident!r}")
        time.sleep(0.2)

    rcv = loop.receiver
    detail: dict[str, Any] = rcv.api(f"/api/v1/incidents/{incident['id']}")
    for kind in ("job_claimed", "job_started", "job_succeeded"):
        first = next((e for e in detail["timeline"] if e["kind"] == kind), None)
        if first is not None:
            mark(kind, epoch(first["at"]))
    notes = [{"status": s, "first_received_at": epoch(t), "deliveries": n}
             for s, t, n in rcv.query("SELECT status, first_received_at, deliveries"
                                      " FROM notifications ORDER BY id")]
    for note in notes:
        key = "webhook_received" if note["status"] == "firing" else "resolved_webhook_received"
        mark(key, note["first_received_at"])
    if detail.get("mitigated_at"):
        mark("incident_mitigated", epoch(detail["mitigated_at"]))
    mark("incident_resolved", epoch(detail["resolved_at"]))
    restarts = stack.events([loop.container.id], "restart", since=at["server_stopped"])
    if restarts:
        mark("container_restarted", restarts[0]["timeNano"] / 1e9)
    jobs = [dict(zip(("id", "state", "attempts"), row, strict=True))
            for row in rcv.query("SELECT id, state, attempts FROM jobs ORDER BY id")]
    t0 = at["server_stopped"]
    stages = {s: round(at[s] - t0, 3) for s in STAGES if s in at}
    return Cycle(stages, detail, jobs, len(restarts), notes)


def mttr_figures(s: dict[str, float]) -> dict[str, float]:
    """The share of MTTR that remediator itself spends, from one cycle's stages.

    remediator's own time is counted as ``job_started - webhook_received``: the intake
    transaction and commit, the NOTIFY wake-up, the claim, the guard checks, the plan
    (one Docker inspect), the target lock and the job_started bookkeeping, up to the
    moment the playbook calls the Docker adapter. The restart itself (Docker), the
    readiness wait and the verification polling (waiting for the service), Prometheus'
    scrape/evaluation and Alertmanager's group_wait/group_interval are not remediator's.
    ``..._incl_verify`` also counts everything from the restart's completion to
    job_succeeded (readiness wait, HTTP verification polling at its 2 s interval, the
    final bookkeeping) as remediator's: an upper bound.
    """
    received = s["webhook_received"]
    own = s["job_started"] - received
    after = s["job_succeeded"] - s["container_restarted"]
    return {
        "mttr_resolved_s": s["incident_resolved"],
        "mttr_healthy_s": s["service_healthy"],
        "detection_s": received,
        "remediator_own_s": round(own, 3),
        "wake_and_claim_s": round(s["job_claimed"] - received, 3),
        "guards_plan_lock_s": round(s["job_started"] - s["job_claimed"], 3),
        "docker_restart_s": round(s["container_restarted"] - s["job_started"], 3),
        "ready_verify_finish_s": round(after, 3),
        "resolution_pipeline_s": round(s["incident_resolved"] - s["job_succeeded"], 3),
        "share_of_mttr_resolved": round(own / s["incident_resolved"], 4),
        "share_of_mttr_healthy": round(own / s["service_healthy"], 4),
        "share_of_mttr_resolved_incl_verify": round((own + after) / s["incident_resolved"], 4),
    }


# -- fixtures ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so that the stack can print logs on failure."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=120)
        client.images.get(IMAGE)
    except docker.errors.DockerException as exc:
        pytest.fail(f"dockerd or {IMAGE} unavailable ({exc}); run: bash scripts/services.sh")
    yield client
    for leftover in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={RUN_ID}"}):
        with contextlib.suppress(docker.errors.NotFound):
            leftover.remove(force=True)
    client.close()


@pytest.fixture
def stack(tmp_path: Path, docker_client: docker.DockerClient,
          request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(tmp_path, docker_client)
    try:
        yield s
    finally:
        node = request.node
        if any(getattr(getattr(node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call")):
            print(s.logs())
        s.close()
