"""Alert-to-action latency: from the webhook request arriving to the playbook's adapter call.

    python bench/latency.py [--backend sqlite|postgres|both] [--quick] [--jobs 300]
                            [--rates 5,20] [--burst 200] [--poll-interval SECONDS]
                            [--worker-threads N] [--targets 1..16]

For each backend, on a fresh store, ``remediator serve`` (gunicorn + its embedded worker) runs
one remediation rule: ``flush_cache`` in pattern mode (``bench:{{ labels.key }}:*``, db 0) on
the real Redis, approval ``auto``, cooldown 0s, budgets out of the way. Each notification
carries one firing alert with its own ``key`` label, so it opens its own incident and makes
exactly one job; three keys per alert are written to Redis first, so each job unlinks
something real. The playbook locks its target per Redis db: by default every job acts on
db 0 (one target, so a job may wait for another's lock); ``--targets N`` puts each alert's
keys in one of N dbs (its ``db`` label, crc32 of the key), N distinct targets.

  steady  notifications posted on a fixed schedule, once per rate (default 5/s, then 20/s):
          at 5/s a job normally finds the queue empty (latency, not backlog); 20/s is close
          to what one worker does on one target on a 2-core box, and shows what then happens;
  burst   N notifications (default 200) posted at once over 16 connections: the queue wait
          and the time to drain it.

Figures per job come from the store (server clock, same host as the client):
  alert_to_action   job_started event - notifications.first_received_at   (the headline)
  queue_wait        first job_claimed event - first_received_at
  claim_to_action   job_started - last job_claimed  (guards, plan, target lock)
  action_to_done    job_succeeded - job_started     (the playbook, its verify, the commit)
and from the client: the HTTP response time, and send -> first_received_at / job_started.
At the end every job must be ``succeeded`` and every seeded Redis key gone; anything else is
listed. Prints JSON and writes it to bench/results/latency-<timestamp>.json.

Run it as a script (it imports helpers from bench/ingest.py, beside it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import structlog
import yaml
from ingest import SERVER_ERROR_MARKERS, Server, _stop, _wait_ready, free_port, fresh_store, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REDIS_URL = os.environ.get("REMEDIATOR_BENCH_REDIS_URL", "redis://127.0.0.1:63790/0")
RULE = "bench-latency"
ALERTNAME = "BenchLatency"
KEYS_PER_JOB = 3
SPREAD = 1
"""Redis dbs the jobs are spread over (``--targets``): the flush_cache lock is per db, so
with N > 1 jobs of different dbs act on distinct targets and never wait for each other."""
GUNICORN = (2, 4)  # workers x threads, the config defaults
EMBEDDED_WORKER_THREADS = 2  # `remediator worker` default; `serve` starts it without --threads
TARGETS = {
    "note": "targets are for PostgreSQL, steady load; the other figures are shown for scale",
    "alert_to_action_p50_ms": "<= 50",
    "alert_to_action_p99_ms": "<= 250",
}
FINAL_STATES = frozenset(
    {"succeeded", "failed", "blocked", "refused", "denied", "expired", "dry_run", "escalated",
     "awaiting_approval"}
)


# ---------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def dist(values_s: list[float]) -> dict[str, Any]:
    """A distribution in milliseconds from values in seconds."""
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "min": round(min(ms), 2),
        "p50": round(percentile(ms, 0.50), 2),
        "p90": round(percentile(ms, 0.90), 2),
        "p95": round(percentile(ms, 0.95), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


# ---------------------------------------------------------------- the server under test


def bench_config(
    tmp: Path, backend: str, poll_interval: float | None, gunicorn: tuple[int, int]
) -> dict[str, Any]:
    """remediator.example.yml with one flush_cache rule and its Redis target."""
    cfg: dict[str, Any] = yaml.safe_load(
        (ROOT / "remediator.example.yml").read_text(encoding="utf-8")
    )
    cfg["data_dir"] = str(tmp / "data")
    cfg["server"]["workers"], cfg["server"]["threads"] = gunicorn
    cfg["store"]["url"] = (
        "env:REMEDIATOR_BENCH_DB_URL" if backend == "postgres" else "sqlite:///remediator.db"
    )
    remediation: dict[str, Any] = {
        "rate_budget": {"max": 100000, "per": "1h"},
        "max_targets_per_window": 100000,
    }
    if poll_interval is not None:
        # By default the poll interval (2s) is left as it is on both backends: workers are
        # woken (LISTEN/NOTIFY, SQLite's data_version), so a lost wake-up shows in the tail.
        remediation["poll_interval"] = f"{round(poll_interval * 1000)}ms"
    cfg["remediation"] = remediation
    cfg["rules"] = [
        {
            "name": RULE,
            "match": {"alertname": ALERTNAME},
            "playbook": "flush_cache",
            "params": {
                "target": "cache",
                "mode": "pattern",
                "pattern": "bench:{{ labels.key }}:*",
                "db": 0,
            },
            "approval": {"mode": "auto"},
            "guards": {"cooldown": "0s"},
        }
    ]
    if SPREAD > 1:
        cfg["rules"][0]["params"]["db"] = "{{ labels.db }}"
    cfg["targets"] = {"redis": {"cache": {"url": "env:BENCH_REDIS_URL",
                                          "dbs": list(range(SPREAD))}}}
    return cfg


@dataclass
class Setup:
    backend: str
    gunicorn: tuple[int, int]
    worker_threads: int | None  # None: the embedded worker of `serve`
    poll_interval: float | None

    def describe(self, cfg: dict[str, Any]) -> dict[str, Any]:
        embedded = self.worker_threads is None
        return {
            "gunicorn": {"workers": self.gunicorn[0], "threads": self.gunicorn[1]},
            "remediation_worker": {
                "processes": 1,
                "threads": EMBEDDED_WORKER_THREADS if embedded else self.worker_threads,
                "kind": "embedded in `remediator serve`" if embedded
                else "`remediator worker --threads N` beside `serve --no-worker`",
                "wake_up": "LISTEN remediator_jobs (pg_notify in the webhook transaction "
                "and where a released target lock frees a waiting job), poll as fallback"
                if self.backend == "postgres" else "PRAGMA data_version checked every 15 ms "
                "on a connection of its own (a commit by any process wakes the claim loop), "
                "poll as fallback",
                "poll_interval": cfg["remediation"].get("poll_interval", "2s (default)"),
            },
            "lease": "60s (default)",
        }


@contextmanager
def serve(setup: Setup) -> Iterator[tuple[Server, dict[str, Any]]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-latency-{setup.backend}-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with fresh_store(setup.backend, tmp) as store_url:
            token = secrets.token_urlsafe(24)
            env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": token, "BENCH_REDIS_URL": REDIS_URL}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            if setup.backend == "postgres":
                env["REMEDIATOR_BENCH_DB_URL"] = store_url
            cfg = bench_config(tmp, setup.backend, setup.poll_interval, setup.gunicorn)
            config = tmp / "remediator.yml"
            config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            port = free_port()
            log_path = tmp / "server.log"
            argv = ["remediator", "serve", "-c", str(config), "--bind", f"127.0.0.1:{port}",
                    "--workers", str(setup.gunicorn[0]), "--threads", str(setup.gunicorn[1])]
            if setup.worker_threads is not None:
                argv.append("--no-worker")
            with log_path.open("wb") as log:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                              env=env, start_new_session=True))
            server = Server(setup.backend, setup.gunicorn[0], setup.gunicorn[1],
                            f"http://127.0.0.1:{port}", store_url, token, procs[0], log_path)
            _wait_ready(server)  # serve has migrated the store by now
            if setup.worker_threads is not None:
                with log_path.open("ab") as log:
                    procs.append(subprocess.Popen(
                        ["remediator", "worker", "-c", str(config),
                         "--threads", str(setup.worker_threads)],
                        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                    ))
            try:
                yield server, cfg
            finally:
                for proc in reversed(procs):
                    _stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the client


def notification(key: str) -> tuple[str, bytes]:
    """One group, one firing alert with its own ``key`` label: one incident, one job."""
    group_key = f'{{}}:{{alertname="{ALERTNAME}", key="{key}"}}'
    labels = {"alertname": ALERTNAME, "key": key, "job": "bench", "severity": "warning",
              "instance": "cache:6379", "db": str(db_of(key))}
    body = {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"alertname": ALERTNAME, "key": key},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"stale cache for {key}"},
        "externalURL": "http://alertmanager-0:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"stale cache for {key}"},
                "startsAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.bench:9090/graph",
                "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:16],
            }
        ],
    }
    return group_key, json.dumps(body).encode()


@dataclass
class Sent:
    key: str
    group_key: str
    sent_at: float = 0.0  # wall clock, as the server's timestamps
    response_s: float = 0.0
    status: int = 0
    error: str = ""


@dataclass
class Client:
    """Posts notifications from a few threads, one keep-alive connection each."""

    server: Server
    connections: int
    _local: threading.local = field(default_factory=threading.local)

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            host, _, port = self.server.url.removeprefix("http://").partition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            self._local.conn = conn
        return conn

    def post(self, key: str) -> Sent:
        group_key, body = notification(key)
        out = Sent(key, group_key)
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.server.token}"}
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            conn = self._conn()
            out.sent_at = time.time()
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/alerts", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                out.response_s = time.perf_counter() - t0
                out.status = resp.status
                return out
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                out.error = f"{type(exc).__name__}: {exc}"
                if attempt == 2:
                    return out
        return out

    def steady(self, keys: list[str], rate: float) -> list[Sent]:
        """Post one notification every 1/rate seconds, on schedule (not after the reply)."""
        with ThreadPoolExecutor(self.connections) as pool:
            start = time.monotonic() + 0.05
            futures = []
            for i, key in enumerate(keys):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self.post, key))
            return [f.result() for f in futures]

    def burst(self, keys: list[str]) -> list[Sent]:
        with ThreadPoolExecutor(self.connections) as pool:
            return list(pool.map(self.post, keys))


# ---------------------------------------------------------------- Redis


def db_of(key: str) -> int:
    """The Redis db of a job's keys (always 0 unless ``--targets`` spreads them)."""
    return zlib.crc32(key.encode()) % SPREAD


def _in_db(client: redis.Redis, db: int) -> redis.Redis:
    kwargs = client.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379),
                       db=db)


def seed_redis(client: redis.Redis, keys: list[str]) -> None:
    for db in sorted({db_of(k) for k in keys}):
        pipe = _in_db(client, db).pipeline(transaction=False)
        for key in (k for k in keys if db_of(k) == db):
            for j in range(KEYS_PER_JOB):
                pipe.set(f"bench:{key}:{j}", "x", ex=3600)
        pipe.execute()


def left_in_redis(client: redis.Redis, keys: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for db in sorted({db_of(k) for k in keys}):
        mine = [k for k in keys if db_of(k) == db]
        pipe = _in_db(client, db).pipeline(transaction=False)
        for key in mine:
            for j in range(KEYS_PER_JOB):
                pipe.exists(f"bench:{key}:{j}")
        found = pipe.execute()
        for i, key in enumerate(mine):
            n = sum(int(x) for x in found[i * KEYS_PER_JOB : (i + 1) * KEYS_PER_JOB])
            if n:
                out[key] = n
    return out


# ---------------------------------------------------------------- reading the store


def open_reader(server: Server) -> Any:
    from receiver.store import open_store

    return open_store(server.store_url, pool_min=0, pool_max=1)


def job_states(store: Any) -> dict[str, str]:
    """pattern key -> state of its job, for the bench rule."""
    with store.db.transaction(write=False) as tx:
        rows = tx.fetchall("SELECT params, state FROM jobs WHERE rule = :r", {"r": RULE})
    return {_key_of(r["params"]): r["state"] for r in rows}


def _key_of(params: dict[str, Any]) -> str:
    return str(params["pattern"]).removeprefix("bench:").removesuffix(":*")


def wait_final(store: Any, keys: list[str], timeout: float) -> float:
    """Wait (bounded) until every key's job is in a final state; return the seconds waited."""
    t0 = time.monotonic()
    want = set(keys)
    while time.monotonic() - t0 < timeout:
        states = job_states(store)
        if all(states.get(k) in FINAL_STATES for k in want):
            break
        time.sleep(0.25)
    return time.monotonic() - t0


def collect(store: Any, sent: list[Sent]) -> dict[str, dict[str, Any]]:
    """Per key: the job, its notification's received time, and its timeline events."""
    by_group = {s.group_key: s.key for s in sent}
    wanted = {s.key for s in sent}
    with store.db.transaction(write=False) as tx:
        jobs = tx.fetchall(
            "SELECT id, state, reason, params, attempts, created_at, started_at, finished_at"
            " FROM jobs WHERE rule = :r ORDER BY id",
            {"r": RULE},
        )
        notes = tx.fetchall(
            "SELECT group_key, first_received_at, deliveries FROM notifications"
        )
        events = tx.fetchall(
            "SELECT job_id, kind, at FROM incident_events WHERE job_id IS NOT NULL ORDER BY id"
        )
    received = {by_group[n["group_key"]]: n for n in notes if n["group_key"] in by_group}
    per_job: dict[int, list[tuple[str, datetime]]] = {}
    for e in events:
        per_job.setdefault(e["job_id"], []).append((e["kind"], e["at"]))
    out: dict[str, dict[str, Any]] = {}
    for job in jobs:
        key = _key_of(job["params"])
        if key in wanted:
            out[key] = {"job": job, "note": received.get(key),
                        "events": per_job.get(job["id"], [])}
    return out


def _first(events: list[tuple[str, datetime]], kind: str) -> float | None:
    return next((at.timestamp() for k, at in events if k == kind), None)


def _last(events: list[tuple[str, datetime]], kind: str) -> float | None:
    return next((at.timestamp() for k, at in reversed(events) if k == kind), None)


def analyse(sent: list[Sent], rows: dict[str, dict[str, Any]], wall_s: float) -> dict[str, Any]:
    to_action, queue, claim_to_action, run, sent_to_recv, sent_to_action = [], [], [], [], [], []
    recv_to_reply, reply_to_claim, to_action_once = [], [], []
    series: list[tuple[float, int]] = []  # in send order: (alert_to_action s, claims)
    claims_per_job: dict[int, int] = {}
    created_is_received = 0
    received_times, started_times = [], []
    problems: list[dict[str, Any]] = []
    slowest: list[tuple[float, str, dict[str, Any]]] = []
    for s in sent:
        row = rows.get(s.key)
        if s.status != 200:
            problems.append({"key": s.key, "http_status": s.status, "error": s.error})
        if row is None:
            problems.append({"key": s.key, "problem": "no job in the store"})
            continue
        job, note, events = row["job"], row["note"], row["events"]
        if job["state"] != "succeeded":
            problems.append({"key": s.key, "job_id": job["id"], "state": job["state"],
                             "reason": job["reason"], "attempts": job["attempts"]})
        if note is None:
            problems.append({"key": s.key, "problem": "no notification row"})
            continue
        recv = note["first_received_at"].timestamp()
        created_is_received += int(job["created_at"] == note["first_received_at"])
        claimed, reclaimed = _first(events, "job_claimed"), _last(events, "job_claimed")
        started, done = _first(events, "job_started"), _first(events, "job_succeeded")
        n_claims = sum(1 for k, _ in events if k == "job_claimed")
        claims_per_job[n_claims] = claims_per_job.get(n_claims, 0) + 1
        received_times.append(recv)
        sent_to_recv.append(recv - s.sent_at)
        replied = s.sent_at + s.response_s
        recv_to_reply.append(replied - recv)
        if claimed is not None:
            queue.append(claimed - recv)
            reply_to_claim.append(claimed - replied)
        if started is not None:
            to_action.append(started - recv)
            series.append((started - recv, n_claims))
            if n_claims == 1:
                to_action_once.append(started - recv)
            sent_to_action.append(started - s.sent_at)
            started_times.append(started)
            if reclaimed is not None:
                claim_to_action.append(started - reclaimed)
            slowest.append((started - recv, s.key, {
                "job_id": job["id"],
                "claims": n_claims,
                "received_to_first_claim_ms": round(((claimed or recv) - recv) * 1000, 1),
                "last_claim_to_started_ms": round((started - (reclaimed or started)) * 1000, 1),
            }))
            if done is not None:
                run.append(done - started)
    slowest.sort(key=lambda x: x[0], reverse=True)
    states: dict[str, int] = {}
    for s in sent:
        state = rows[s.key]["job"]["state"] if s.key in rows else "missing"
        states[state] = states.get(state, 0) + 1
    ok = [s for s in sent if s.status == 200]
    return {
        "jobs": len(sent),
        "client_wall_s": round(wall_s, 3),
        "alert_to_action_ms": dist(to_action),
        "alert_to_action_claimed_once_ms": dist(to_action_once),
        "queue_wait_ms": dist(queue),
        "claim_to_action_ms": dist(claim_to_action),
        "action_to_done_ms": dist(run),
        "client": {
            "http_response_ms": dist([s.response_s for s in ok]),
            "send_to_received_ms": dist(sent_to_recv),
            "send_to_action_ms": dist(sent_to_action),
            "received_to_reply_ms": dist(recv_to_reply),
            "reply_to_first_claim_ms": dist(reply_to_claim),
            "non_200": len(sent) - len(ok),
        },
        "claims_per_job": {str(k): v for k, v in sorted(claims_per_job.items())},
        "by_window_of_50_in_send_order": [
            {"jobs": f"{i}-{i + len(chunk) - 1}",
             "p50_ms": dist([v for v, _ in chunk])["p50"],
             "max_ms": dist([v for v, _ in chunk])["max"],
             "reclaimed": sum(1 for _, c in chunk if c > 1)}
            for i in range(0, len(series), 50) for chunk in [series[i : i + 50]]
        ],
        "jobs_created_at_equals_received_at": created_is_received,
        "span_s": {
            "first_received_to_last_started": round(max(started_times) - min(received_times), 3)
            if started_times and received_times else None,
        },
        "actions_per_s": round(len(started_times) / (max(started_times) - min(received_times)), 1)
        if len(started_times) > 1 else None,
        "slowest": [{"key": k, "alert_to_action_ms": round(v * 1000, 1), **d}
                    for v, k, d in slowest[:5]],
        "states": states,
        "all_succeeded": states.get("succeeded", 0) == len(sent) and not problems,
        "problems": problems[:50],
        "problems_total": len(problems),
    }


# ---------------------------------------------------------------- one backend


def run_backend(setup: Setup, rates: list[float], steady_n: int, burst_n: int,
                connections: int, rclient: redis.Redis) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    warm = [f"{run}-w{i}" for i in range(8)]
    steady = {rate: [f"{run}-s{rate:g}-{i}" for i in range(steady_n)] for rate in rates}
    burst = [f"{run}-b{i}" for i in range(burst_n)]
    every = warm + [k for keys in steady.values() for k in keys] + burst
    seed_redis(rclient, every)
    res: dict[str, Any] = {}
    with serve(setup) as (server, cfg):
        res["settings"] = setup.describe(cfg)
        store = open_reader(server)
        try:
            client = Client(server, connections)
            # warm-up: every gunicorn worker imports, connects; the worker loads its adapter
            client.steady(warm, 10)
            wait_final(store, warm, 60)
            for rate, keys in steady.items():
                print(f"  {setup.backend}: steady {steady_n} at {rate:g}/s", file=sys.stderr)
                load0 = os.getloadavg()[0]
                t0 = time.monotonic()
                sent = client.steady(keys, rate)
                wall = time.monotonic() - t0
                load1 = os.getloadavg()[0]
                waited = wait_final(store, keys, 300)
                res[f"steady_{rate:g}_per_s"] = {
                    "rate_per_s": rate,
                    "client_connections": connections,
                    **analyse(sent, collect(store, sent), wall),
                    "waited_for_final_after_last_send_s": round(waited, 2),
                    "host_loadavg_1m_before_after": [round(load0, 2), round(load1, 2)],
                }
                time.sleep(1.0)
            print(f"  {setup.backend}: burst {burst_n}", file=sys.stderr)
            load0 = os.getloadavg()[0]
            t0 = time.monotonic()
            sent = Client(server, 16).burst(burst)
            wall = time.monotonic() - t0
            waited = wait_final(store, burst, 600)
            res["burst"] = {
                "notifications_at_once": burst_n,
                "client_connections": 16,
                **analyse(sent, collect(store, sent), wall),
                "waited_for_final_after_last_send_s": round(waited, 2),
                "host_loadavg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            }
            res["server_errors_logged"] = server.server_errors_logged()
            res["server_log_warnings_tail"] = [
                line[:400] for line in server.log_path.read_text(errors="replace").splitlines()
                if any(m in line for m in (*SERVER_ERROR_MARKERS, "warning", "error"))
            ][-10:]
        finally:
            store.close()
    measured = every[len(warm):]
    leftovers = left_in_redis(rclient, measured)
    res["redis"] = {
        "keys_seeded": len(measured) * KEYS_PER_JOB,
        "keys_left": sum(leftovers.values()),
        "jobs_with_keys_left": sorted(leftovers)[:20],
    }
    return res


SWEEP_TX = ("sweep: expire approvals (write)", "sweep: expired leases (read)")
RUN_ONCE_TX = (
    "claim tx (claim, guards, target locks; job_claimed) (write)",
    "started tx (lease check, job_targets, job_started, incident mitigating) (write)",
    "concluded tx (succeeded, locks released, events, incident mitigated) (write)",
)
"""The transactions of one successful job, in order, as ``run_once()`` makes them; a job whose
sequence differs is counted in ``jobs_with_unexpected_tx_sequence`` and its transactions are
labelled by position."""


def _import_worker() -> tuple[Any, Any, Any, Any]:
    """The worker, its guards module and the intake, wherever this tree keeps them (the bench
    also runs on trees from before the modules were grouped)."""
    try:
        from receiver.intake.alertmanager import Notification
        from receiver.intake.engine import Intake
        from receiver.remediation import guards as guards_module
        from receiver.remediation.worker import Worker
    except ImportError:
        from receiver.alertmanager import Notification  # type: ignore[no-redef]
        from receiver.engine import Intake  # type: ignore[no-redef]
        from receiver.worker import Worker  # type: ignore[no-redef]

        from receiver import guards as guards_module  # type: ignore[no-redef]
    return Notification, Intake, guards_module, Worker


def worker_profile(backend: str, rounds: int, rclient: redis.Redis) -> dict[str, Any]:
    """Where a job's time goes inside the worker, in-process and one job at a time (no HTTP,
    no other thread): each store transaction (commit included, write or read-only) and each
    playbook call, in the order ``Worker._loop`` makes them on one wake-up: ``sweep()`` then
    ``run_once()``. The transactions of ``run_once()`` are the job's; the sweep's are counted
    apart (a worker sweeps once per poll interval, not once per job)."""
    from receiver.config import parse_config
    from receiver.store import open_store

    Notification, Intake, guards_module, Worker = _import_worker()
    os.environ.setdefault("BENCH_REDIS_URL", REDIS_URL)
    # the worker logs each job: keep stdout for the JSON report
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-latency-profile-{backend}-"))
    spans: list[tuple[str, float, float]] = []  # kind, start, end (perf_counter)

    def timed(kind: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spans.append((kind, t0, time.perf_counter()))

        return wrapper

    def tx_counts(txs: list[tuple[str, float, float]]) -> tuple[int, int]:
        writes = sum(1 for kind, _, _ in txs if kind == "tx:write")
        return writes, len(txs) - writes

    try:
        with fresh_store(backend, tmp) as url:
            raw = bench_config(tmp, backend, 0.1, GUNICORN)
            raw["auth"], raw["store"]["url"] = {}, "sqlite:///unused.db"
            config = parse_config(raw)
            store = open_store(url, pool_min=1, pool_max=4)
            store.migrate()
            intake = Intake(config, store)
            worker = Worker(config, store)
            playbook = worker.registry["flush_cache"]
            for name in ("plan", "run", "verify"):
                setattr(playbook, name, timed(name, getattr(playbook, name)))
            evaluate = guards_module.evaluate
            guards_module.evaluate = timed("guards.evaluate", evaluate)
            plain_tx = store.db.transaction

            @contextmanager
            def tx_timed(*a: Any, **kw: Any) -> Iterator[Any]:
                t0 = time.perf_counter()
                with plain_tx(*a, **kw) as tx:
                    yield tx
                kind = "tx:write" if kw.get("write", a[0] if a else True) else "tx:read"
                spans.append((kind, t0, time.perf_counter()))

            store.db.transaction = tx_timed  # type: ignore[method-assign]
            per_label: dict[str, list[float]] = {}
            totals, commit_to_run, odd = [], [], 0
            writes_per_job: list[int] = []
            reads_per_job: list[int] = []
            sweep_writes: list[int] = []
            sweep_reads: list[int] = []
            try:
                run = uuid.uuid4().hex[:8]
                for i in range(rounds + 3):  # the first 3 warm up
                    key = f"{run}-p{i}"
                    seed_redis(rclient, [key])
                    _, body = notification(key)
                    intake.accept(Notification.model_validate_json(body), body.decode())
                    spans.clear()
                    t0 = time.perf_counter()
                    worker.sweep()
                    swept = len(spans)
                    worker.run_once()
                    total = time.perf_counter() - t0
                    if i < 3:
                        continue
                    sweep_txs = [sp for sp in spans[:swept] if sp[0].startswith("tx:")]
                    job_txs = [sp for sp in spans[swept:] if sp[0].startswith("tx:")]
                    w, r = tx_counts(job_txs)
                    writes_per_job.append(w)
                    reads_per_job.append(r)
                    w, r = tx_counts(sweep_txs)
                    sweep_writes.append(w)
                    sweep_reads.append(r)
                    labels = list(RUN_ONCE_TX)
                    if len(job_txs) != len(labels):
                        odd += 1
                        labels = [f"tx{n} ({k.removeprefix('tx:')})"
                                  for n, (k, _, _) in enumerate(job_txs)]
                    for label, (_, a, b) in zip(labels, job_txs, strict=True):
                        per_label.setdefault(label, []).append(b - a)
                    for label, (_, a, b) in zip(SWEEP_TX, sweep_txs, strict=False):
                        per_label.setdefault(label, []).append(b - a)
                    for kind, a, b in spans:
                        if not kind.startswith("tx:"):
                            per_label.setdefault(kind, []).append(b - a)
                    run_start = next((a for k, a, _ in spans if k == "run"), None)
                    before_run = [sp for sp in job_txs if run_start is not None
                                  and sp[0] == "tx:write" and sp[2] <= run_start]
                    if before_run and run_start is not None:
                        commit_to_run.append(run_start - before_run[-1][2])
                    totals.append(total)
            finally:
                guards_module.evaluate = evaluate
                store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def spread(values: list[int]) -> dict[str, Any]:
        return {"min": min(values, default=None), "max": max(values, default=None),
                "mean": round(statistics.fmean(values), 2) if values else None}

    out: dict[str, Any] = {
        "unit": "ms, per job, one job at a time in-process (no HTTP, no concurrency)",
        "jobs": len(totals),
        "write_tx_per_job": spread(writes_per_job),
        "read_tx_per_job": spread(reads_per_job),
        "sweep_tx": {"write": spread(sweep_writes), "read": spread(sweep_reads)},
        "steps": {k: {"p50": dist(v)["p50"], "mean": dist(v)["mean"], "p99": dist(v)["p99"]}
                  for k, v in per_label.items()},
        "start_tx_commit_to_adapter_call": dist(commit_to_run),
        "sweep_plus_run_once_total": dist(totals),
        "jobs_with_unexpected_tx_sequence": odd,
    }
    return out


def versus_targets(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    phases = [k for k in res if k.startswith("steady_")]
    for phase in phases:
        d = res[phase]["alert_to_action_ms"]
        if d.get("n"):
            out[f"{phase}_p50_ms"] = [d["p50"], "<= 50", d["p50"] <= 50]
            out[f"{phase}_p99_ms"] = [d["p99"], "<= 250", d["p99"] <= 250]
    ok = all(res[p]["all_succeeded"] for p in [*phases, "burst"])
    out["all_jobs_succeeded"] = [ok, "== true", ok]
    out["redis_keys_left"] = [res["redis"]["keys_left"], "== 0", res["redis"]["keys_left"] == 0]
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10 jobs per steady rate + 10 burst jobs per backend")
    ap.add_argument("--jobs", type=int, default=300, help="steady-rate jobs (>= 200)")
    ap.add_argument("--rates", default="5,20",
                    help="steady notifications per second, one steady phase per rate")
    ap.add_argument("--burst", type=int, default=200, help="notifications posted at once")
    ap.add_argument("--connections", type=int, default=4,
                    help="client connections for the steady load")
    ap.add_argument("--poll-interval", type=float, default=None,
                    help="remediation.poll_interval, seconds (default: the config's 2s)")
    ap.add_argument("--targets", type=int, default=1, choices=range(1, 17), metavar="1..16",
                    help="spread the jobs over this many Redis dbs, one flush_cache target "
                    "(lock) each; 1: every job acts on the same target")
    ap.add_argument("--worker-threads", type=int, default=None,
                    help="run a standalone `remediator worker --threads N` instead of the "
                    "embedded one (2 threads)")
    args = ap.parse_args(argv)
    global SPREAD  # noqa: PLW0603 - read by the config, the notifications and the seeding
    SPREAD = args.targets
    steady_n, burst_n = (10, 10) if args.quick else (args.jobs, args.burst)
    rates = [float(r) for r in args.rates.split(",")]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    rclient = redis.Redis.from_url(REDIS_URL)
    rclient.ping()

    report: dict[str, Any] = {
        "meta": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": machine(),
            "host_loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "the host is shared: other processes (test suites, other benchmarks) may "
            "run at the same time; each phase records the 1-minute load average",
            "redis": {"url": REDIS_URL, "dbsize_at_start": int(rclient.dbsize()),
                      "version": rclient.info("server").get("redis_version")},
            "playbook": "flush_cache mode=pattern pattern=bench:{{ labels.key }}:* "
            f"({KEYS_PER_JOB} keys seeded per job), approval auto, cooldown 0s, "
            "rate_budget 100000/1h, max_targets_per_window 100000; "
            + ("every job acts on the same target redis:cache/0" if SPREAD == 1 else
               f"db={{{{ labels.db }}}}: jobs spread over {SPREAD} dbs, each its own target "
               "redis:cache/<db> (crc32 of the key)"),
            "load": {
                "steady": f"{steady_n} notifications at each of {args.rates} per second, "
                f"on a fixed schedule, over {args.connections} keep-alive connections",
                "burst": f"{burst_n} notifications at once over 16 keep-alive connections",
                "per_notification": "1 firing alert, distinct key label and fingerprint, "
                "distinct groupKey: 1 incident and 1 job each",
                "warm_up": "8 notifications at 10/s before measuring, not counted",
            },
            "measures": {
                "alert_to_action": "incident_events job_started.at - "
                "notifications.first_received_at (server clock)",
                "queue_wait": "first job_claimed.at - first_received_at",
                "claim_to_action": "job_started.at - last job_claimed.at",
                "action_to_done": "job_succeeded.at - job_started.at",
                "client": "time.time() at send (same host clock)",
                "claims_per_job": "how many job_claimed events a job has; more than 1 means "
                "the worker found the target lock (redis:cache/0) held by another job and put "
                "the job back to wait: the commit that releases the lock makes it runnable "
                "(jobs.waiting_for; NOTIFY on PostgreSQL, data_version on SQLite), a timed "
                "retry after max(LOCK_RETRY 250ms, poll_interval) x (1-2), capped at the "
                "lock's expiry, is only the fallback (receiver/remediation/steps.py lock); "
                "alert_to_action_claimed_once is the distribution without those jobs",
                "worker_profile": "in-process, one job at a time: each store transaction "
                "(commit included) and playbook call of one sweep() + run_once(); "
                "write_tx_per_job / read_tx_per_job count run_once()'s transactions by kind",
            },
        },
        "targets": TARGETS,
    }
    for backend in backends:
        print(f"== {backend}", file=sys.stderr)
        setup = Setup(backend, GUNICORN, args.worker_threads, args.poll_interval)
        res = run_backend(setup, rates, steady_n, burst_n, args.connections, rclient)
        res["versus_targets"] = versus_targets(res)
        res["worker_profile"] = worker_profile(backend, 20 if args.quick else 100, rclient)
        for phase in [k for k in res if k.startswith(("steady_", "burst"))]:
            d = res[phase]["alert_to_action_ms"]
            print(f"  {phase}: p50 {d.get('p50')} p99 {d.get('p99')} max {d.get('max')} ms;"
                  f" states {res[phase]['states']}", file=sys.stderr)
        prof = res["worker_profile"]
        print(f"  worker_profile: write tx per job {prof['write_tx_per_job']}, read tx per job"
              f" {prof['read_tx_per_job']}", file=sys.stderr)
        report[backend] = res

    text = json.dumps(report, indent=2, default=str)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"latency-{stamp}.json"
    path.write_text(text + "\n", encoding="utf-8")
    print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
