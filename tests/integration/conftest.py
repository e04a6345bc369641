"""Real processes on loopback: ``remediator serve`` under gunicorn, and real Alertmanagers.

The receiver runs from ``remediator.example.yml`` with only its bind address, data
directory and store URL changed, so the severity rules a user starts from are the ones
under test. The Alertmanagers run from ``alertmanager.example.yml`` with only the webhook
URL changed; the bearer token in that file is what the receiver is given (through the
environment, as the example's comment says).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
import yaml

from tests.conftest import ROOT, drop_pg_database, new_pg_database, pg_url
from tests.support import free_port, http, poll

EXAMPLE_WEBHOOK_URL = "http://127.0.0.1:9095/api/v1/alerts"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
AMTOOL_BIN = "/usr/bin/amtool"
START_TIMEOUT = 30.0


def example_token() -> str:
    """The bearer token written in alertmanager.example.yml (what users copy)."""
    cfg = yaml.safe_load((ROOT / "alertmanager.example.yml").read_text(encoding="utf-8"))
    auth = cfg["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]
    token: str = auth["credentials"]
    return token


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    last = poll(check, timeout, interval)
    if not last:
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")
    return last


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process this fixture started (and its process group), politely first."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture created
            proc.wait(5)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can print logs on failure."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


@dataclass
class Receiver:
    """A running ``remediator serve`` and what a test needs to talk to it."""

    backend: str
    url: str
    token: str  # the webhook's bearer token (Alertmanager's)
    api_token: str  # a read-scoped people.api_tokens entry, for the JSON API
    store_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/v1/alerts"

    def get(
        self, path: str, *, who: Literal["api", "webhook", "anonymous"] = "api"
    ) -> tuple[int, Any]:
        """GET as the API token's holder (default), with the webhook's token, or with none."""
        token = {"api": self.api_token, "webhook": self.token, "anonymous": None}[who]
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        status, body = http("GET", self.url + path, headers=headers)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def api(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"GET {path} -> {status}: {body!r}"
        return body

    def metrics(self) -> dict[str, float]:
        status, body = http("GET", self.url + "/metrics")
        assert status == 200
        return parse_metrics(body.decode())

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the store directly (not through the receiver)."""
        if self.backend == "sqlite":
            path = self.store_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as conn:
                return list(conn.execute(sql).fetchall())
        with psycopg.connect(self.store_url) as conn:
            return list(conn.execute(sql.encode()).fetchall())


API_TOKEN = "integration-read-token-0123456789"


def _receiver_config(tmp: Path, store_url: str) -> Path:
    """remediator.example.yml with data_dir and store.url changed, and a read-only API
    token added (the JSON API takes operator tokens, not the webhook's)."""
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = str(tmp / "data")
    cfg["store"]["url"] = store_url
    people = cfg.setdefault("people", {}) or {}
    people.setdefault("api_tokens", {})["integration-tests"] = {
        "token": "env:REMEDIATOR_TEST_API_TOKEN",
        "user": "integration-tests",
        "scope": "read",
    }
    cfg["people"] = people
    path = tmp / "remediator.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def receiver(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Receiver]:
    """``remediator serve`` on a free loopback port, on a fresh store of ``backend``."""
    tmp = tmp_path_factory.mktemp(f"receiver-{backend}")
    env = {
        **os.environ,
        "REMEDIATOR_WEBHOOK_TOKEN": example_token(),
        "REMEDIATOR_TEST_API_TOKEN": API_TOKEN,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    dbname = None
    if backend == "postgres":
        dbname = new_pg_database(None)  # empty: `serve` applies the migrations itself
        env["REMEDIATOR_DB_URL"] = pg_url(dbname)
        config = _receiver_config(tmp, "env:REMEDIATOR_DB_URL")
        store_url = pg_url(dbname)
    else:
        config = _receiver_config(tmp, "sqlite:///remediator.db")
        store_url = f"sqlite:///{tmp / 'data' / 'remediator.db'}"
    port = free_port()
    log_path = tmp / "receiver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                "remediator",
                "serve",
                "-c",
                str(config),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    rcv = Receiver(
        backend, f"http://127.0.0.1:{port}", example_token(), API_TOKEN, store_url, log_path, proc
    )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"remediator serve exited with {proc.returncode}:\n{rcv.log()}")
            try:
                return http("GET", rcv.url + "/readyz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, "the receiver's /readyz")
        yield rcv
    finally:
        _stop(proc)
        if _failed(request):
            print(f"----- remediator serve ({backend}) log -----\n{rcv.log()}")
        if dbname is not None:
            drop_pg_database(dbname)


@dataclass
class Alertmanager:
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    cluster_port: int | None = None

    def status(self) -> dict[str, Any]:
        code, body = http("GET", self.url + "/api/v2/status")
        assert code == 200, body
        data: dict[str, Any] = json.loads(body)
        return data

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        code, body = http("POST", self.url + "/api/v2/alerts", body=alerts)
        assert code == 200, f"POST /api/v2/alerts -> {code}: {body!r}"

    def metrics(self) -> dict[str, float]:
        code, body = http("GET", self.url + "/metrics")
        assert code == 200
        return parse_metrics(body.decode())

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def alertmanager_config(webhook_url: str) -> str:
    """alertmanager.example.yml with the webhook URL replaced, and nothing else."""
    text = (ROOT / "alertmanager.example.yml").read_text(encoding="utf-8")
    assert text.count(EXAMPLE_WEBHOOK_URL) == 1, "the example's webhook URL has changed"
    return text.replace(EXAMPLE_WEBHOOK_URL, webhook_url)


@pytest.fixture
def start_alertmanager(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Alertmanager]]:
    """A factory: start an Alertmanager from the example config, routed to a receiver."""
    started: list[Alertmanager] = []

    def start(
        webhook_url: str,
        *,
        cluster_port: int | None = None,
        peers: list[int] | None = None,
        cluster_flags: list[str] | None = None,
    ) -> Alertmanager:
        tmp = tmp_path_factory.mktemp("alertmanager")
        config = tmp / "alertmanager.yml"
        config.write_text(alertmanager_config(webhook_url), encoding="utf-8")
        port = free_port()
        argv = [
            ALERTMANAGER_BIN,
            f"--config.file={config}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=debug",
        ]
        if cluster_port is None:
            argv.append("--cluster.listen-address=")
        else:
            argv += [
                f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                *(f"--cluster.peer=127.0.0.1:{p}" for p in peers or []),
                *(cluster_flags or []),
            ]
        log_path = tmp / "alertmanager.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        am = Alertmanager(f"http://127.0.0.1:{port}", log_path, proc, cluster_port)
        started.append(am)

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"alertmanager exited with {proc.returncode}:\n{am.log()}")
            try:
                return http("GET", am.url + "/-/ready", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, f"alertmanager {am.url}/-/ready")
        return am

    yield start
    for am in started:  # signal every peer first, so they shut down side by side
        if am.proc.poll() is None:
            am.proc.send_signal(signal.SIGTERM)
    for am in started:
        _stop(am.proc)
    if _failed(request):
        for am in started:
            print(f"----- alertmanager {am.url} log -----\n{am.log()}")


def amtool(am: Alertmanager, *args: str) -> str:
    out = subprocess.run(
        [AMTOOL_BIN, f"--alertmanager.url={am.url}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, f"amtool {' '.join(args)} failed: {out.stderr}"
    return out.stdout
