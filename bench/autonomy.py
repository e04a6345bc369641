"""Cost of earned autonomy's reads with many runs in a rule's window.

    python bench/autonomy.py [--backend sqlite|postgres|both] [--runs 10000] [--repeat 20]

Fills a fresh store with N finished runs of one rule within the last 30 days (one incident,
alert and job each; alerts of 50 fingerprints, so that most runs have a later episode; four
timeline events per incident), plus as many runs of another rule, then times:

  decide    the runs of the rule the guards read before they decide (one query, in the
            claim's transaction): what each job of an earned rule adds to its claim;
  scrape    the effectiveness figures of every rule and playbook over 30 days (what a
            ``/metrics`` scrape reads).

Prints the median and max after one warm-up, in milliseconds, as JSON.

PostgreSQL: the test server of ``scripts/services.sh`` (REMEDIATOR_TEST_PG_DSN).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver.remediation.effectiveness import DEFAULT_RECURRENCE, build  # noqa: E402
from receiver.store import open_store  # noqa: E402

PG_DSN = os.environ.get("REMEDIATOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def seed(store: Any, runs: int) -> None:
    span = timedelta(days=29).total_seconds()
    with store.db.transaction() as tx:
        for i in range(1, 2 * runs + 1):
            at = NOW - timedelta(seconds=span * i / (2 * runs))
            rule = "earn" if i % 2 else "other"
            tx.execute(
                "INSERT INTO incidents (id, key, open_key, state, severity, severity_reason,"
                " title, receiver, group_key, group_labels, opened_at, ack_due_at, resolved_at,"
                " last_seen_at, updated_at, change_tx) VALUES (:id, :key, NULL, 'resolved',"
                " 'P2', 'r', 't', 'r', :key, :gl, :at, :at, :at, :at, :at, 'tx')",
                {"id": i, "key": f"k{i % 50}", "gl": "{}", "at": at})
            tx.execute(
                "INSERT INTO alerts (id, fingerprint, starts_at, status, alertname, labels,"
                " annotations, generator_url, severity, incident_id, first_seen_at,"
                " last_seen_at, change_tx) VALUES (:id, :fp, :at, 'resolved', 'AppDown', :l,"
                " :l, '', 'P2', :id, :at, :at, 'tx')",
                {"id": i, "fp": f"f{i % 50}", "at": at, "l": "{}"})
            tx.execute(
                "INSERT INTO jobs (id, incident_id, alert_id, rule, playbook, dedupe_key,"
                " params, state, created_at, updated_at, started_at, finished_at, approved_at)"
                " VALUES (:id, :id, :id, :rule, 'restart_container', :d, :p, 'succeeded', :at,"
                " :at, :at, :fin, :at)",
                {"id": i, "rule": rule, "d": f"d{i}", "p": "{}", "at": at,
                 "fin": at + timedelta(seconds=40)})
            for k in range(4):
                tx.execute(
                    "INSERT INTO incident_events (incident_id, at, kind, actor, message,"
                    " detail, job_id) VALUES (:id, :at, :kind, 'system', 'm', :d, :id)",
                    {"id": i, "at": at, "kind": ("job_started", "job_succeeded",
                                                 "verification_passed", "state_changed")[k],
                     "d": "{}"})


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def measure(url: str, runs: int, repeat: int) -> dict[str, Any]:
    store = open_store(url, pool_min=1, pool_max=2)
    try:
        store.migrate()
        seed(store, runs)
        since = NOW - timedelta(days=30, hours=1)

        def decide() -> None:
            with store.unit(write=False) as uow:
                got = len(uow.autonomy.runs(since=since, until=NOW, rule="earn"))
            if got != runs:
                raise SystemExit(f"read {got} runs, seeded {runs}")

        def scrape() -> None:
            with store.unit(write=False) as uow:
                facts = uow.autonomy.runs(since=since, until=NOW)
            build(facts, recurrence=lambda _r: DEFAULT_RECURRENCE, since=since, until=NOW)

        return {"runs_of_rule": runs, "decide": timed(decide, repeat),
                "scrape": timed(scrape, max(repeat // 4, 3))}
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            out["sqlite"] = measure(f"sqlite:///{tmp}/bench.db", args.runs, args.repeat)
    if args.backend in ("postgres", "both"):
        name = f"bench_autonomy_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            base, _, _ = PG_DSN.rpartition("/")
            out["postgres"] = measure(f"{base}/{name}", args.runs, args.repeat)
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
