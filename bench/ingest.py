"""Webhook ingest benchmark: ``remediator serve`` (gunicorn) driven by wrk on loopback.

    python bench/ingest.py [--backend sqlite|postgres|both] [--duration 30] [--quick]
                           [--settings 2x4,2x8,4x2]

For each backend, on a fresh store per server start:
  (a)  1 alert per notification, 200 fingerprints, 16 connections: notifications/s, latency,
       once per workers x threads setting; the best setting is used for the rest;
  (a') the same but re-delivering the same 200 episodes (the duplicate/upsert path);
  (b)  50 alerts per notification, 4 connections: alerts/s, latency;
  (c)  a storm of 10,000 distinct alerts (200 notifications x 50), 8 connections, as fast as
       wrk goes: every alert counted in the store, wall time, RSS of each gunicorn process;
  then an in-process timing of one request's phases (parse, classify, store transaction).
Prints JSON and writes it to bench/results/ingest-<timestamp>.json.

The load comes from wrk with a Lua script (bench/wrk/ingest.lua), not from Python: on two
cores a Python client would take the CPU the server needs. wrk, gunicorn and PostgreSQL
still share the machine, and the figures say so in ``meta``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "wrk" / "ingest.lua"
RESULTS = ROOT / "bench" / "results"
PG_DSN = os.environ.get("REMEDIATOR_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
WRK = shutil.which("wrk") or "/usr/bin/wrk"

TARGETS = {
    "note": "targets are set for PostgreSQL; SQLite figures are shown against them for scale",
    "a": {"notifications_per_s": ">= 400", "p99_ms": "<= 100"},
    "b": {"alerts_per_s": ">= 7000", "p99_ms": "<= 250"},
    "c": {"rss_growth_mb_total": "<= 50"},
}
DEFAULT_SETTINGS = "2x4,2x8,4x2"
STORM_ALERTS, STORM_PER = 10_000, 50
SERVER_ERROR_MARKERS = ("store_error", "store_unavailable", "unhandled_error", "Traceback")


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_url(dbname: str) -> str:
    return f"{PG_DSN.rpartition('/')[0]}/{dbname}"


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def metric_total(metrics: dict[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def histogram(metrics: dict[str, float], name: str) -> dict[str, Any]:
    """Server-side view of a Prometheus histogram: count, mean, interpolated quantiles."""
    buckets: dict[float, float] = {}
    for key, value in metrics.items():
        m = re.match(rf'^{name}_bucket\{{.*le="([^"]+)".*\}}$', key)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0.0) + value
    count = metric_total(metrics, f"{name}_count")
    total = metric_total(metrics, f"{name}_sum")
    bounds = sorted(buckets)

    def quantile(q: float) -> float | None:
        if not count:
            return None
        rank, prev_le, prev_n = q * count, 0.0, 0.0
        for le in bounds:
            n = buckets[le]
            if n >= rank:
                if le == float("inf"):
                    return round(prev_le * 1000, 2)  # above the top bucket: a floor only
                frac = (rank - prev_n) / (n - prev_n) if n > prev_n else 1.0
                return round((prev_le + (le - prev_le) * frac) * 1000, 2)
            prev_le, prev_n = le, n
        return None

    return {
        "count": int(count),
        "mean_ms": round(total / count * 1000, 2) if count else None,
        "p50_ms~": quantile(0.5),
        "p99_ms~": quantile(0.99),
        "buckets_le_s": {
            ("+Inf" if b == float("inf") else str(b)): int(buckets[b]) for b in bounds
        },
    }


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == pid:
                kids.append(int(entry.name))
    return sorted(kids)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def host_cpu() -> tuple[float, float, float, float]:
    """(busy, total, iowait, steal) CPU seconds of the whole host, all cores (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle, iowait, steal = fields[3], fields[4], fields[7]
    busy = sum(fields) - idle - iowait
    return busy / CLOCK_TICKS, sum(fields) / CLOCK_TICKS, iowait / CLOCK_TICKS, steal / CLOCK_TICKS


def process_cpu(pids: list[int]) -> float:
    """utime + stime of these processes, seconds (processes gone count 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        after = stat.rpartition(")")[2].split()
        total += int(after[11]) + int(after[12])  # utime, stime
    return total / CLOCK_TICKS


class CpuMeter:
    """Who used the CPU during a run: this benchmark (server processes, their PostgreSQL
    backends, wrk) or something else on the host, which would skew the figures."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.host0 = host_cpu()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        children_cpu = os.times().children_user + os.times().children_system  # wrk, reaped
        return process_cpu(self.server.process_tree()) + children_cpu

    def report(self) -> dict[str, float]:
        busy, total, iowait, steal = (b - a for a, b in zip(self.host0, host_cpu(), strict=True))
        ours = self._ours() - self.ours0
        pct = 100.0 / total if total else 0.0
        return {
            "host_busy_pct": round(busy * pct, 1),
            "this_benchmark_pct": round(ours * pct, 1),
            "other_processes_pct": round(max(busy - ours - steal, 0.0) * pct, 1),
            "steal_pct": round(steal * pct, 1),  # taken by the hypervisor
            "iowait_pct": round(iowait * pct, 1),
        }


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    with psycopg.connect(PG_DSN) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0],
        "shared_host": "wrk, gunicorn and PostgreSQL run on the same cores",
    }


# ---------------------------------------------------------------- the server under test


@dataclass
class Server:
    backend: str
    workers: int
    threads: int
    url: str
    store_url: str
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback URL built here
            return parse_metrics(resp.read().decode())

    def pids(self) -> dict[str, int]:
        """The gunicorn master (the ``serve`` process), its workers, and the embedded
        remediation worker that ``serve`` also starts (``python -m receiver worker``)."""
        out = {"master": self.proc.pid}
        workers = 0
        for pid in children(self.proc.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"worker" in argv and b"receiver" in argv:
                out["embedded_remediation_worker"] = pid
            else:
                out[f"gunicorn_worker{workers}"] = pid
                workers += 1
        return out

    def memory(self) -> dict[str, dict[str, int]]:
        return {name: proc_status(pid) for name, pid in self.pids().items()}

    def process_tree(self) -> list[int]:
        """The server's processes and, on PostgreSQL, the backends serving its database."""
        pids = list(self.pids().values())
        if self.backend == "postgres":
            with psycopg.connect(self.store_url) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            pids += [int(r[0]) for r in rows]
        return pids

    def count(self, sql: str) -> int:
        """Count rows in the store directly, not through the receiver."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.store_url.removeprefix("sqlite:///")) as conn:
                return int(conn.execute(sql).fetchone()[0])
        with psycopg.connect(self.store_url) as conn:
            row = conn.execute(sql.encode()).fetchone()
            return int(row[0]) if row else 0

    def server_errors_logged(self) -> int:
        text = self.log_path.read_text(errors="replace")
        return sum(text.count(marker) for marker in SERVER_ERROR_MARKERS)


@contextmanager
def fresh_store(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'data' / 'remediator.db'}"
        return
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield pg_url(name)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@contextmanager
def serve(backend: str, workers: int, threads: int,
          command: tuple[str, ...] = ("remediator",)) -> Iterator[Server]:
    """``remediator serve`` from remediator.example.yml (bind, data_dir, store changed);
    ``command`` is what runs the CLI (bench/stub_serve.py for ``floor.py --decompose``)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
    try:
        with fresh_store(backend, tmp) as store_url:
            token = secrets.token_urlsafe(24)
            env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": token}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
            cfg["data_dir"] = str(tmp / "data")
            if backend == "postgres":
                env["REMEDIATOR_BENCH_DB_URL"] = store_url
                cfg["store"]["url"] = "env:REMEDIATOR_BENCH_DB_URL"
            else:
                cfg["store"]["url"] = "sqlite:///remediator.db"
            config = tmp / "remediator.yml"
            config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            port = free_port()
            log_path = tmp / "server.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [
                        *command,
                        "serve",
                        "-c",
                        str(config),
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--workers",
                        str(workers),
                        "--threads",
                        str(threads),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            server = Server(
                backend,
                workers,
                threads,
                f"http://127.0.0.1:{port}",
                store_url,
                token,
                proc,
                log_path,
            )
            try:
                _wait_ready(server)
                yield server
            finally:
                _stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this script started
            proc.wait(5)


# ---------------------------------------------------------------- driving wrk


@dataclass(frozen=True)
class Load:
    prefix: str
    pool: int  # distinct alerts (fingerprints)
    per: int  # alerts per notification
    groups: int  # distinct alertnames, so groups / incidents
    fresh: bool  # new episodes on every pass over the pool
    salt: int  # first half of the fingerprint, one per scenario
    limit: int = 0  # total notifications; 0 = until the duration ends


def run_wrk(
    server: Server,
    load: Load,
    *,
    threads: int,
    connections: int,
    duration: float,
    until_notifications: int | None = None,
) -> dict[str, Any]:
    """Run wrk and return the JSON its Lua done() prints. With ``until_notifications``,
    interrupt wrk (SIGINT: it then reports) once the server has accepted that many."""
    base = int(time.time()) - 3600
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        server.url + "/api/v1/alerts",
        "--",
        load.prefix,
        str(load.pool),
        str(load.per),
        str(load.groups),
        "1" if load.fresh else "0",
        str(load.limit),
        str(threads),
        str(base),
        str(load.salt),
    ]
    env = {**os.environ, "BENCH_TOKEN": server.token}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    if until_notifications is not None:
        deadline = time.monotonic() + duration
        while proc.poll() is None and time.monotonic() < deadline:
            accepted = metric_total(server.metrics(), "remediator_notifications_received_total")
            if accepted >= until_notifications:
                time.sleep(0.5)  # let wrk read the last responses
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.1)
    out, err = proc.communicate(timeout=duration + 60)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (rc={proc.returncode}):\n{out}\n{err}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["non_2xx"] = result["status_4xx"] + result["status_5xx"] + result["status_other"]
    result["socket_errors"] = sum(
        result.pop(k) for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout")
    )
    result["wrk"] = {"threads": threads, "connections": connections}
    return result


def warm_up(server: Server) -> None:
    """One second of load on other alert names, so every worker has imported and connected."""
    run_wrk(server, Load("Warmup", 20, 1, 2, False, 9), threads=1, connections=4, duration=1)


def measured(server: Server, load: Load, **kw: Any) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    warm_up(server)
    time.sleep(0.5)  # the warm-up's last in-flight requests finish before the baseline
    before = server.metrics()
    meter = CpuMeter(server)
    res = run_wrk(server, load, **kw)
    cpu = meter.report()
    time.sleep(0.5)
    after = server.metrics()
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    secs = res["duration_s"]
    res["notifications_per_s"] = round(res["status_2xx"] / secs, 1) if secs else 0.0
    res["alerts_per_s"] = round(res["status_2xx"] * load.per / secs, 1) if secs else 0.0
    res["server_side_latency"] = histogram(delta, "remediator_webhook_duration_seconds")
    res["server_errors_logged"] = server.server_errors_logged()
    res["gunicorn"] = {"workers": server.workers, "threads": server.threads}
    res["host_loadavg_1m"] = {"before": round(load_before, 2), "after": os.getloadavg()[0]}
    res["host_cpu"] = cpu
    return res


# ---------------------------------------------------------------- scenarios


def scenario_a(backend: str, settings: list[tuple[int, int]], secs: float) -> dict[str, Any]:
    load = Load("BenchAlert", 200, 1, 20, True, 1)
    tried = []
    for workers, threads in settings:
        with serve(backend, workers, threads) as srv:
            res = measured(srv, load, threads=1, connections=16, duration=secs)
        tried.append(res)
        print(
            f"  (a) {backend} {workers}x{threads}: {res['notifications_per_s']}/s "
            f"p99 {res['latency_ms']['p99']} ms non-2xx {res['non_2xx']}",
            file=sys.stderr,
        )
    clean = [r for r in tried if r["non_2xx"] == 0 and r["socket_errors"] == 0] or tried
    best = max(clean, key=lambda r: r["notifications_per_s"])
    return {"settings_tried": tried, "best": best}


def scenario_a_redeliver(backend: str, setting: tuple[int, int], secs: float) -> dict[str, Any]:
    load = Load("BenchAlert", 200, 1, 20, False, 1)
    with serve(backend, *setting) as srv:
        return measured(srv, load, threads=1, connections=16, duration=secs)


def scenario_b(backend: str, setting: tuple[int, int], secs: float) -> dict[str, Any]:
    load = Load("BenchBatch", 200, 50, 4, True, 2)
    with serve(backend, *setting) as srv:
        return measured(srv, load, threads=1, connections=4, duration=secs)


def scenario_c(backend: str, setting: tuple[int, int], alerts: int) -> dict[str, Any]:
    notifications = alerts // STORM_PER
    load = Load("Storm", alerts, STORM_PER, notifications, False, 3, limit=notifications)
    connections = 8
    with serve(backend, *setting) as srv:
        load_before = os.getloadavg()[0]
        warm_up(srv)
        before_mem = srv.memory()
        accepted_before = metric_total(srv.metrics(), "remediator_notifications_received_total")
        meter = CpuMeter(srv)
        started = time.monotonic()
        res = run_wrk(
            srv,
            load,
            threads=connections,
            connections=connections,
            duration=120,
            until_notifications=int(accepted_before) + notifications,
        )
        wall = time.monotonic() - started
        cpu = meter.report()
        after_mem = srv.memory()
        stored = srv.count("SELECT count(*) FROM alerts WHERE alertname LIKE 'Storm%'")
        incidents = srv.count("SELECT count(*) FROM incidents WHERE title LIKE 'Storm%'")
        errors = srv.server_errors_logged()
    processes = {}
    for name, mem in after_mem.items():
        was = before_mem.get(name, {}).get("VmRSS", 0)
        processes[name] = {
            "peak_rss_mb": round(mem["VmHWM"] / 1024, 1),
            "rss_before_mb": round(was / 1024, 1),
            "rss_after_mb": round(mem["VmRSS"] / 1024, 1),
            "rss_growth_mb": round((mem["VmRSS"] - was) / 1024, 1),
        }
    return {
        "alerts_sent": alerts,
        "notifications_sent": notifications,
        "alerts_stored": stored,
        "all_persisted": stored == alerts,
        "incidents_opened": incidents,
        "wall_time_s": round(res["first_to_last_s"], 3),
        "wall_time_incl_wrk_start_stop_s": round(wall, 3),
        "alerts_per_s": round(alerts / res["first_to_last_s"], 1) if res["first_to_last_s"] else 0,
        "latency_ms": res["latency_ms"],
        "status_2xx": res["status_2xx"],
        "non_2xx": res["non_2xx"],
        "socket_errors": res["socket_errors"],
        "server_errors_logged": errors,
        "processes": processes,
        "rss_growth_mb_total": round(sum(p["rss_growth_mb"] for p in processes.values()), 1),
        "gunicorn": {"workers": setting[0], "threads": setting[1]},
        "wrk": res["wrk"],
        "host_loadavg_1m": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
        "host_cpu": cpu,
    }


def phase_profile(backend: str, rounds: int) -> dict[str, Any]:
    """Time one request's phases in-process (no HTTP, no gunicorn): JSON parse + validation,
    classification (severity, rules), and the store transaction."""
    from receiver.config import parse_config
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from receiver.store import open_store

    raw = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    raw["data_dir"], raw["auth"] = str(tmp), {}
    out: dict[str, Any] = {}
    try:
        with fresh_store(backend, tmp) as url:
            config = parse_config(raw)
            store = open_store(url, pool_min=1, pool_max=2)
            store.migrate()
            intake = Intake(config, store)
            try:
                for label, per in (("1_alert", 1), ("50_alerts", 50)):
                    phases = {"parse_validate": 0.0, "classify": 0.0, "store_tx": 0.0}
                    for i in range(rounds):
                        body = _notification_json(per, i)
                        t0 = time.perf_counter()
                        n = Notification.model_validate_json(body)
                        t1 = time.perf_counter()
                        batch = intake.prepare(n, body)
                        t2 = time.perf_counter()
                        store.ingest(batch)
                        t3 = time.perf_counter()
                        phases["parse_validate"] += t1 - t0
                        phases["classify"] += t2 - t1
                        phases["store_tx"] += t3 - t2
                    out[label] = {k: round(v / rounds * 1000, 3) for k, v in phases.items()}
                    out[label]["total"] = round(sum(out[label].values()), 3)
            finally:
                store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["unit"] = "ms per notification, mean, one thread, no HTTP"
    return out


def _notification_json(per: int, i: int) -> str:
    starts = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    name = f"Profile{i % 4}"
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": name,
                "cluster": "bench",
                "instance": f"host{k}:9100",
                "job": "bench",
                "severity": "warning",
            },
            "annotations": {"summary": f"{name} on host{k}"},
            "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.bench:9090/graph",
            "fingerprint": f"{i % 4:08x}{k:08x}",
        }
        for k in range(per)
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "remediator",
            "groupLabels": {"alertname": name},
            "commonLabels": {"alertname": name},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager-0:9093",
            "alerts": alerts,
        }
    )


def versus_targets(res: dict[str, Any]) -> dict[str, Any]:
    a, b, c = res["a"]["best"], res["b"], res["c"]
    return {
        "a_notifications_per_s": [
            a["notifications_per_s"],
            ">= 400",
            a["notifications_per_s"] >= 400,
        ],
        "a_p99_ms": [a["latency_ms"]["p99"], "<= 100", a["latency_ms"]["p99"] <= 100],
        "b_alerts_per_s": [b["alerts_per_s"], ">= 7000", b["alerts_per_s"] >= 7000],
        "b_p99_ms": [b["latency_ms"]["p99"], "<= 250", b["latency_ms"]["p99"] <= 250],
        "c_rss_growth_mb_total": [
            c["rss_growth_mb_total"],
            "<= 50",
            c["rss_growth_mb_total"] <= 50,
        ],
        "c_all_persisted": [c["alerts_stored"], f"== {c['alerts_sent']}", c["all_persisted"]],
    }


# ---------------------------------------------------------------- main


def parse_settings(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        w, _, t = part.strip().partition("x")
        out.append((int(w), int(t)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds for (a) and (b)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="~3 s per scenario and a 1,000-alert storm: a smoke check",
    )
    ap.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help="gunicorn WORKERSxTHREADS settings tried for (a), comma-separated",
    )
    args = ap.parse_args(argv)
    secs = 3.0 if args.quick else args.duration
    storm = 1_000 if args.quick else STORM_ALERTS
    settings = parse_settings(args.settings)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]

    report: dict[str, Any] = {
        "meta": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "duration_s": secs,
            "storm_alerts": storm,
            "machine": machine(),
            "host_loadavg_1m_at_start": os.getloadavg()[0],
            "caution": "other processes on the host skew every figure: each scenario's "
            "host_cpu.other_processes_pct says how much CPU something else took meanwhile "
            "(100 = all cores); loadavg also counts this benchmark's own processes",
            "server": "remediator serve (gunicorn gthread) from remediator.example.yml: "
            "logging info/json to a file, pool 1..10 per worker, with the embedded "
            "remediation worker that serve starts by default (no rules: it only polls)",
            "loads": {
                "a": "1 alert/notification, 200 fingerprints in 20 groups, each pass a new "
                "episode (startsAt + pass), wrk -t1 -c16",
                "a_redeliver": "as (a) but the same 200 episodes re-delivered (upserts)",
                "b": "50 alerts/notification, 4 groups x 50 fingerprints, new episodes, "
                "wrk -t1 -c4",
                "c": f"{storm // STORM_PER} notifications x {STORM_PER} distinct alerts in "
                f"{storm // STORM_PER} groups, wrk -t8 -c8, exact count",
            },
        },
        "targets": TARGETS,
    }
    for backend in backends:
        print(f"== {backend}", file=sys.stderr)
        res: dict[str, Any] = {}
        res["a"] = scenario_a(backend, settings, secs)
        best = (res["a"]["best"]["gunicorn"]["workers"], res["a"]["best"]["gunicorn"]["threads"])
        res["best_setting"] = {"workers": best[0], "threads": best[1]}
        print(f"  best setting {best[0]}x{best[1]}; (a') (b) (c) run with it", file=sys.stderr)
        res["a_redeliver"] = scenario_a_redeliver(backend, best, secs)
        res["b"] = scenario_b(backend, best, secs)
        print(
            f"  (b) {res['b']['alerts_per_s']} alerts/s p99 {res['b']['latency_ms']['p99']} ms",
            file=sys.stderr,
        )
        res["c"] = scenario_c(backend, best, storm)
        print(
            f"  (c) stored {res['c']['alerts_stored']}/{storm} in {res['c']['wall_time_s']} s",
            file=sys.stderr,
        )
        res["phase_profile"] = phase_profile(backend, 60 if args.quick else 300)
        res["versus_targets"] = versus_targets(res)
        report[backend] = res

    report["meta"]["host_loadavg_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"ingest-{stamp}.json"
    path.write_text(text + "\n", encoding="utf-8")
    print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
