"""Side by side: webhook ingest of remediator against the floor, under the same load.

    python bench/floor.py [--duration 10] [--reps 3] [--only a|b] [--no-sqlite] [--decompose]

Targets, each with 2 gunicorn workers (4 threads), started fresh for every repetition:
  floor      bench/floor_app.py: Flask, one INSERT and one COMMIT per notification (PostgreSQL)
  postgres   remediator serve on PostgreSQL
  sqlite     remediator serve on SQLite
  no_store   with --decompose: remediator serve (PostgreSQL) with the intake's store
             transaction replaced by a constant result (bench/stub_serve.py), so that the
             store's share of the CPU per alert is postgres minus no_store
Alerta is not measured: alerta-server needs MongoDB or its own PostgreSQL schema and
plugins set up, which this machine does not have (stated in the output's ``meta``).

Scenarios, the same wrk + bench/wrk/ingest.lua load for every target:
  a  1 alert per notification (200 fingerprints, 20 groups, a new episode each pass),
     16 connections
  b  50 alerts per notification (4 groups), 4 kept-alive connections
Repetitions are interleaved (rep 1: floor, postgres, sqlite; rep 2: ...) and the medians
are printed with the ratios to the floor. CPU per alert is the host's busy time
(/proc/stat, all cores) during the run minus wrk's own CPU (its rusage), divided by the
alerts accepted: the server, its PostgreSQL backends and anything else running count,
so the load average seen is printed too; ``own_cpu_ms_per_alert`` counts only the
server's processes and its PostgreSQL backends (/proc/<pid>/stat), which other work on a
shared host does not inflate. Per-worker CPU (/proc/<pid>/stat of each
gunicorn worker) shows whether kept-alive connections spread over the workers.

``--profile`` adds an in-process profile of one single-alert notification on PostgreSQL:
the statements of its transaction (count and time each) and the parse/classify phases.
Prints JSON and writes it to bench/results/floor-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as base  # noqa: E402 - the sibling bench module, by path

ROOT = base.ROOT
SCENARIOS = {
    "a": (base.Load("FloorAlert", 200, 1, 20, True, 11), 16),
    "b": (base.Load("FloorBatch", 200, 50, 4, True, 12), 4),
}
WORKERS, THREADS = 2, 4
ALERTA = ("not measured: alerta-server needs MongoDB or its own PostgreSQL schema and "
          "plugins, neither available on this machine")


@dataclass
class FloorServer:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    store_url: str
    backend: str = "floor"

    def pids(self) -> dict[str, int]:
        out = {"master": self.proc.pid}
        for i, pid in enumerate(base.children(self.proc.pid)):
            out[f"gunicorn_worker{i}"] = pid
        return out

    def process_tree(self) -> list[int]:
        """The app's processes and the PostgreSQL backends serving its database."""
        with psycopg.connect(self.store_url) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname ="
                                " current_database() AND pid <> pg_backend_pid()").fetchall()
        return list(self.pids().values()) + [int(r[0]) for r in rows]


@contextmanager
def serve_floor() -> Iterator[FloorServer]:
    name = f"floor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base.PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    url = base.pg_url(name)
    tmp = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from floor_app import SCHEMA

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA.encode())
        token = secrets.token_urlsafe(24)
        port = base.free_port()
        env = {**os.environ, "FLOOR_DSN": url, "FLOOR_TOKEN": token}
        with (tmp / "floor.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-k", "gthread",
                 "--threads", str(THREADS), "--keep-alive", "5", "--bind",
                 f"127.0.0.1:{port}", "--chdir", str(ROOT / "bench"), "--log-level",
                 "warning", "floor_app:create_app()"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        server = FloorServer(f"http://127.0.0.1:{port}", token, proc, url)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(server.url + "/readyz", timeout=1):  # noqa: S310 - loopback
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((tmp / "floor.log").read_text()[-2000:]) from None
                    time.sleep(0.1)
            yield server
        finally:
            base._stop(proc)
    finally:
        with psycopg.connect(base.PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@contextmanager
def target(name: str) -> Iterator[Any]:
    if name == "floor":
        with serve_floor() as srv:
            yield srv
    elif name == "no_store":
        stub = (sys.executable, str(ROOT / "bench" / "stub_serve.py"))
        with base.serve("postgres", WORKERS, THREADS, command=stub) as srv:
            yield srv
    else:
        with base.serve(name, WORKERS, THREADS) as srv:
            yield srv


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(server: Any, scenario: str, duration: float) -> dict[str, Any]:
    load, connections = SCENARIOS[scenario]
    base.warm_up(server)
    time.sleep(0.5)
    workers = {k: v for k, v in server.pids().items() if k.startswith("gunicorn_worker")}
    w0 = {k: base.process_cpu([pid]) for k, pid in workers.items()}
    tree = server.process_tree()
    own0 = base.process_cpu(tree)
    busy0, total0, _, _ = base.host_cpu()
    kids0 = children_cpu()
    res = base.run_wrk(server, load, threads=1, connections=connections, duration=duration)
    busy1, total1, _, _ = base.host_cpu()
    wrk_cpu = children_cpu() - kids0
    own = base.process_cpu(sorted(set(tree) | set(server.process_tree()))) - own0
    per_worker = {k: round(base.process_cpu([workers[k]]) - w0[k], 2) for k in workers}
    secs = res["duration_s"] or 1.0
    alerts = res["status_2xx"] * load.per
    server_cpu = (busy1 - busy0) - wrk_cpu
    values = sorted(per_worker.values())
    return {
        "notifications_per_s": round(res["status_2xx"] / secs, 1),
        "alerts_per_s": round(alerts / secs, 1),
        "p99_ms": res["latency_ms"]["p99"],
        "p50_ms": res["latency_ms"]["p50"],
        "non_2xx": res["non_2xx"] + res["socket_errors"],
        "cpu_ms_per_alert": round(server_cpu / alerts * 1000, 4) if alerts else None,
        "own_cpu_ms_per_alert": round(own / alerts * 1000, 4) if alerts else None,
        "wrk_cpu_s": round(wrk_cpu, 2),
        "host_busy_cores": round((busy1 - busy0) / secs, 2),
        "cores": round((total1 - total0) / secs, 2),
        "worker_cpu_s": per_worker,
        "worker_spread": round((values[-1] - values[0]) / values[-1], 2) if values[-1] else 0,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 4) if values else None


def summarise(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    keys = ("notifications_per_s", "alerts_per_s", "p99_ms", "cpu_ms_per_alert",
            "own_cpu_ms_per_alert", "worker_spread", "loadavg_1m")
    out: dict[str, Any] = {}
    for scenario, by_target in results.items():
        table: dict[str, Any] = {}
        for name, runs in by_target.items():
            table[name] = {k: median(runs, k) for k in keys}
        floor = table.get("floor")
        if floor:
            for name, row in table.items():
                if name == "floor":
                    continue
                row["ratio_to_floor"] = {
                    k: round(row[k] / floor[k], 2) if row[k] and floor[k] else None
                    for k in ("notifications_per_s", "p99_ms", "cpu_ms_per_alert",
                              "own_cpu_ms_per_alert")}
        pg, stub = table.get("postgres"), table.get("no_store")
        if pg and stub and pg["own_cpu_ms_per_alert"] and stub["own_cpu_ms_per_alert"]:
            store = pg["own_cpu_ms_per_alert"] - stub["own_cpu_ms_per_alert"]
            pg["store_transaction_cpu_ms_per_alert"] = round(store, 4)
            pg["store_transaction_share"] = round(store / pg["own_cpu_ms_per_alert"], 2)
        table["alerta"] = ALERTA
        out[scenario] = table
    return out


# ---------------------------------------------------------------- in-process profile


def profile(rounds: int) -> dict[str, Any]:
    """Where one single-alert notification's time goes, on PostgreSQL, in-process: each
    statement of the intake transaction (calls per notification, ms each), then BEGIN and
    COMMIT, parse and classification."""
    import yaml

    from receiver.config import parse_config
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from receiver.store import open_store
    from receiver.store import postgres as pg

    stats: dict[str, list[float]] = {}
    original = {name: getattr(pg._PgTx, name) for name in ("execute", "fetchall")}

    def timed(name: str) -> Any:
        fn = original[name]

        def wrapper(self: Any, sql: str, params: Any = None) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(self, sql, params)
            finally:
                label = " ".join(sql.split())[:70]
                stats.setdefault(label, []).append(time.perf_counter() - t0)
        return wrapper

    raw = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    raw["data_dir"], raw["auth"] = str(tmp), {}
    phases = {"parse_validate": 0.0, "classify": 0.0, "transaction": 0.0}
    with base.fresh_store("postgres", tmp) as url:
        store = open_store(url, pool_min=1, pool_max=2)
        store.migrate()
        intake = Intake(parse_config(raw), store)
        try:
            for i in range(20):  # warm: prepared statements, caches
                n = Notification.model_validate_json(body := base._notification_json(1, i))
                store.ingest(intake.prepare(n, body))
            for name in original:
                setattr(pg._PgTx, name, timed(name))
            for i in range(20, 20 + rounds):
                body = base._notification_json(1, i)
                t0 = time.perf_counter()
                n = Notification.model_validate_json(body)
                t1 = time.perf_counter()
                batch = intake.prepare(n, body)
                t2 = time.perf_counter()
                store.ingest(batch)
                t3 = time.perf_counter()
                phases["parse_validate"] += t1 - t0
                phases["classify"] += t2 - t1
                phases["transaction"] += t3 - t2
        finally:
            for name, fn in original.items():
                setattr(pg._PgTx, name, fn)
            store.close()
    statements = {
        label: {"per_notification": round(len(v) / rounds, 2),
                "ms_each": round(sum(v) / len(v) * 1000, 3)}
        for label, v in sorted(stats.items(), key=lambda kv: -sum(kv[1]))}
    in_statements = sum(sum(v) for v in stats.values())
    out = {k: round(v / rounds * 1000, 3) for k, v in phases.items()}
    out["statements_per_notification"] = round(sum(len(v) for v in stats.values()) / rounds, 2)
    out["in_statements_ms"] = round(in_statements / rounds * 1000, 3)
    out["begin_commit_and_pool_ms"] = round(out["transaction"] - out["in_statements_ms"], 3)
    out["statements"] = statements
    out["unit"] = f"ms per notification (mean over {rounds}), one thread, no HTTP"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=sorted(SCENARIOS))
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--profile", action="store_true", help="add the in-process profile")
    ap.add_argument("--profile-only", action="store_true")
    ap.add_argument("--decompose", action="store_true",
                    help="add no_store: remediator with its store transaction replaced")
    args = ap.parse_args(argv)
    names = (["floor", "postgres"] + ([] if args.no_sqlite else ["sqlite"])
             + (["no_store"] if args.decompose else []))
    scenarios = [args.only] if args.only else sorted(SCENARIOS)
    out: dict[str, Any] = {"meta": {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": base.machine(), "duration_s": args.duration, "reps": args.reps,
        "gunicorn": f"{WORKERS} workers x {THREADS} threads", "alerta": ALERTA,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "cpu_per_alert": "host busy time (/proc/stat) minus wrk's CPU, per accepted alert",
    }}
    if not args.profile_only:
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            s: {n: [] for n in names} for s in scenarios}
        for rep in range(args.reps):
            for name in names:
                with target(name) as srv:
                    for s in scenarios:
                        r = run(srv, s, args.duration)
                        results[s][name].append(r)
                        print(f"rep {rep + 1} {name:8} {s}: {json.dumps(r)}", file=sys.stderr)
        out["runs"] = results
        out["median"] = summarise(results)
    if args.profile or args.profile_only:
        out["profile_1_alert_postgres"] = profile(200)
    out["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(out, indent=2, default=str)
    print(text)
    base.RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (base.RESULTS / f"floor-{stamp}.json").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
