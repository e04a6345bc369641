"""Webhook to silence: how soon the alert a job acts on is silenced in Alertmanager.

    python bench/silence.py [--backend sqlite|postgres] [--jobs 20]

A real Alertmanager (``/usr/bin/prometheus-alertmanager``, on loopback, no cluster) and
``remediator serve`` (gunicorn + its embedded worker, from remediator.example.yml as
bench/latency.py sets it up) with one ``flush_cache`` rule that has
``silence: {alertmanager: <that Alertmanager>, for: 15m}``. The notifications are sent one at
a time (each alert with its own ``key`` label: one incident, one job); for each, the client
polls ``GET /api/v2/silences?filter=key="<key>"`` until the silence shows (active, or
already expired when the job was faster than the poll) and takes the time from just before
the webhook request to that answer.

Also from the store (server clock, same host): received -> job_started, and job_started ->
silence_created (the Alertmanager call and its commit). Every job must end ``succeeded``
with its silence expired; anything else is listed. Prints JSON and writes it to
bench/results/silence-<timestamp>.json.

Run it as a script (it imports helpers from bench/ingest.py and bench/latency.py beside it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from ingest import Server, _stop, _wait_ready, free_port, fresh_store, machine
from latency import RULE, Setup, bench_config, dist, notification, open_reader

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
REDIS_URL = os.environ.get("REMEDIATOR_BENCH_REDIS_URL", "redis://127.0.0.1:63790/0")
POLL_S = 0.002
TIMEOUT_S = 20.0


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL built here
        return int(resp.status), resp.read()


@contextmanager
def alertmanager(tmp: Path) -> Iterator[str]:
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(yaml.safe_dump({
        "route": {"receiver": "none"}, "receivers": [{"name": "none"}]}), encoding="utf-8")
    log = (tmp / "alertmanager.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - a fixed binary and argv
        [ALERTMANAGER_BIN, f"--config.file={config}", f"--storage.path={tmp / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(url + "/-/ready", 1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("alertmanager did not start")
            time.sleep(0.1)
        yield url
    finally:
        _stop(proc)
        log.close()


@contextmanager
def serve(backend: str, am_url: str, tmp: Path) -> Iterator[Server]:
    with fresh_store(backend, tmp) as store_url:
        token = secrets.token_urlsafe(24)
        env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": token, "BENCH_REDIS_URL": REDIS_URL}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if backend == "postgres":
            env["REMEDIATOR_BENCH_DB_URL"] = store_url
        setup = Setup(backend, (2, 4), None, None)
        cfg = bench_config(tmp, backend, setup.poll_interval, setup.gunicorn)
        cfg["rules"][0]["silence"] = {"alertmanager": am_url, "for": "15m"}
        cfg["targets"]["http"] = {"hosts": [urllib.parse.urlsplit(am_url).netloc]}
        config = tmp / "remediator.yml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        port = free_port()
        log_path = tmp / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - remediator with argv built here
                ["remediator", "serve", "-c", str(config), "--bind", f"127.0.0.1:{port}",
                 "--workers", "2", "--threads", "4"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        server = Server(backend, 2, 4, f"http://127.0.0.1:{port}", store_url, token, proc,
                        log_path)
        try:
            _wait_ready(server)
            yield server
        finally:
            _stop(proc)


def post(server: Server, body: bytes) -> int:
    split = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
    try:
        conn.request("POST", "/api/v1/alerts", body=body,
                     headers={"Authorization": f"Bearer {server.token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def silences_of(am_url: str, key: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'key="{key}"'})
    found: list[dict[str, Any]] = json.loads(_get(f"{am_url}/api/v2/silences?{query}")[1])
    return found


def one(server: Server, am_url: str, key: str) -> float | None:
    """Seconds from the webhook request to the silence being listed; None: never seen."""
    _, body = notification(key)
    t0 = time.perf_counter()
    status = post(server, body)
    if status != 200:
        raise RuntimeError(f"webhook answered {status}")
    while time.perf_counter() - t0 < TIMEOUT_S:
        if silences_of(am_url, key):
            return time.perf_counter() - t0
        time.sleep(POLL_S)
    return None


def server_side(server: Server) -> dict[str, list[float]]:
    store = open_reader(server)
    try:
        with store.db.transaction(write=False) as tx:
            events = tx.fetchall(
                "SELECT e.job_id, e.kind, e.at, n.first_received_at FROM incident_events e"
                " JOIN jobs j ON j.id = e.job_id JOIN incidents i ON i.id = j.incident_id"
                " JOIN notifications n ON n.group_key = i.group_key"
                " WHERE j.rule = :r AND e.kind IN ('job_started', 'silence_created')"
                " ORDER BY e.id", {"r": RULE})
            states = tx.fetchall("SELECT state FROM jobs WHERE rule = :r", {"r": RULE})
            open_silences = tx.fetchall(
                "SELECT count(*) AS n FROM job_silences WHERE expired_at IS NULL")
    finally:
        store.close()
    per: dict[int, dict[str, datetime]] = {}
    received: dict[int, datetime] = {}
    for e in events:
        per.setdefault(e["job_id"], {})[e["kind"]] = e["at"]
        received[e["job_id"]] = e["first_received_at"]
    to_start, start_to_silence = [], []
    for job, kinds in per.items():
        if "job_started" in kinds and "silence_created" in kinds:
            to_start.append((kinds["job_started"] - received[job]).total_seconds())
            start_to_silence.append(
                (kinds["silence_created"] - kinds["job_started"]).total_seconds())
    return {"received_to_job_started": to_start,
            "job_started_to_silence_created": start_to_silence,
            "states": [s["state"] for s in states],
            "open_silences": [int(open_silences[0]["n"])]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--jobs", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-silence-"))
    try:
        with alertmanager(tmp) as am_url, serve(args.backend, am_url, tmp) as server:
            post(server, notification(f"warm-{uuid.uuid4().hex[:6]}")[1])  # imports, pools
            time.sleep(1.0)
            seen: list[float] = []
            missing: list[str] = []
            keys = [f"s{i}-{uuid.uuid4().hex[:8]}" for i in range(args.jobs)]
            for key in keys:
                took = one(server, am_url, key)
                if took is None:
                    missing.append(key)
                else:
                    seen.append(took)
                time.sleep(0.2)  # one job at a time: latency, not backlog
            time.sleep(2.0)
            side = server_side(server)
            still_active = [k for k in keys
                            if any(s["status"]["state"] == "active"
                                   for s in silences_of(am_url, k))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bad_states = [s for s in side["states"] if s != "succeeded"]
    result = {
        "meta": {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                 "backend": args.backend, "jobs": args.jobs, "poll_interval_ms": POLL_S * 1000,
                 "machine": machine(),
                 "note": "client clock for webhook_to_silence_visible; the store's (server) "
                         "clock for the breakdown; everything on one host"},
        "webhook_to_silence_visible_ms": dist(seen),
        "received_to_job_started_ms": dist(side["received_to_job_started"]),
        "job_started_to_silence_created_ms": dist(side["job_started_to_silence_created"]),
        "problems": {"never_seen": missing, "jobs_not_succeeded": bad_states,
                     "silences_still_active": still_active,
                     "silences_open_in_store": side["open_silences"][0]},
    }
    text = json.dumps(result, indent=2)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"silence-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(text + "\n")
    ok = not missing and not bad_states and not still_active and not side["open_silences"][0]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
