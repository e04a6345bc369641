"""Cost of one ``/metrics`` scrape with many incidents in the store.

    python bench/metrics_scrape.py [--backend sqlite|postgres|both] [--incidents 50000]
                                   [--scrapes 20]

Fills a fresh store with N incidents (mixed severities and states, ~4 timeline events each,
one job per five incidents), then times ``GET /metrics`` through the app's WSGI interface
(no network, no gunicorn: the figure is the app's own work, the store's query included):

  compute   no snapshot: the scrape aggregates every incident itself (no worker running);
            this is also what a worker's chore pays once per server.metrics_refresh;
  snapshot  a worker has stored the figures: the scrape reads one row (the normal case).

Prints the median and max of the scrapes of each after one warm-up, as JSON.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver.app import create_app  # noqa: E402
from receiver.config import parse_config  # noqa: E402
from receiver.incidents.metrics import refresh_snapshot_if_due  # noqa: E402
from receiver.store import open_store  # noqa: E402

PG_DSN = os.environ.get("REMEDIATOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
SEVERITIES = ("P0", "P1", "P2", "P3")


def _rows(n: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    incidents, events, jobs = [], [], []
    for i in range(1, n + 1):
        opened = base + timedelta(minutes=i)
        sev = SEVERITIES[i % 4]
        due = opened + timedelta(minutes=15 * (1 + i % 4))
        acked = opened + timedelta(seconds=30 + i % 900) if i % 3 else None
        resolved = opened + timedelta(seconds=120 + i % 7000) if i % 5 else None
        state = "resolved" if resolved else ("acknowledged" if acked else "open")
        false_alarm = resolved if i % 17 == 0 else None
        key = None if resolved else f"k{i}"
        incidents.append((i, f"k{i}", key, state, sev, "rule", f"incident {i}", "r", f"g{i}",
                          "{}", opened, due, acked, None, resolved, None, opened, opened,
                          "tx", false_alarm))
        for e in range(4):
            actor = "user:alice" if (e == 3 and i % 2) else "system"
            events.append((i, opened + timedelta(seconds=e), "note", actor, "m", "{}"))
        if i % 5 == 0:
            jobs.append((i, "rule", "restart_container", f"d{i}", "{}", "succeeded", opened,
                         opened, opened))
    return incidents, events, jobs


INC_SQL = ("INSERT INTO incidents (id, key, open_key, state, severity, severity_reason, title,"
           " receiver, group_key, group_labels, opened_at, ack_due_at, acknowledged_at,"
           " mitigated_at, resolved_at, closed_at, last_seen_at, updated_at, change_tx,"
           " false_alarm_at) VALUES ({})")
EV_SQL = ("INSERT INTO incident_events (incident_id, at, kind, actor, message, detail)"
          " VALUES ({})")
JOB_SQL = ("INSERT INTO jobs (incident_id, rule, playbook, dedupe_key, params, state, created_at,"
           " updated_at, started_at) VALUES ({})")


def fill_sqlite(path: Path, n: int) -> None:
    import sqlite3

    inc, ev, jobs = _rows(n)
    conn = sqlite3.connect(path)

    def iso(v: Any) -> Any:
        return v.isoformat(timespec="microseconds") if isinstance(v, datetime) else v

    with conn:
        conn.executemany(INC_SQL.format(",".join("?" * 20)), [tuple(map(iso, r)) for r in inc])
        conn.executemany(EV_SQL.format(",".join("?" * 6)), [tuple(map(iso, r)) for r in ev])
        conn.executemany(JOB_SQL.format(",".join("?" * 9)), [tuple(map(iso, r)) for r in jobs])
    conn.close()


def fill_postgres(url: str, n: int) -> None:
    inc, ev, jobs = _rows(n)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY incidents (id, key, open_key, state, severity, severity_reason, title,"
                      " receiver, group_key, group_labels, opened_at, ack_due_at,"
                      " acknowledged_at, mitigated_at, resolved_at, closed_at, last_seen_at,"
                      " updated_at, change_tx, false_alarm_at) FROM STDIN") as copy:
            for r in inc:
                copy.write_row(r)
        with cur.copy("COPY incident_events (incident_id, at, kind, actor, message, detail)"
                      " FROM STDIN") as copy:
            for r in ev:
                copy.write_row(r)
        with cur.copy("COPY jobs (incident_id, rule, playbook, dedupe_key, params, state,"
                      " created_at, updated_at, started_at) FROM STDIN") as copy:
            for r in jobs:
                copy.write_row(r)
        cur.execute("SELECT setval('incidents_id_seq', %s)", (n,))
        cur.execute("SELECT 1")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # as autovacuum would have, long before 50k incidents


def scrape(url: str, data_dir: Path, scrapes: int) -> dict[str, float]:
    os.environ["BENCH_TOKEN"] = "bench-token-" + uuid.uuid4().hex
    cfg = parse_config({
        "data_dir": str(data_dir),
        "store": {"url": url},
        "auth": {"bearer_token": "env:BENCH_TOKEN"},
    }, source="bench")
    app = create_app(cfg)
    client = app.test_client()
    out: dict[str, Any] = {}
    for mode in ("compute", "snapshot"):
        if mode == "snapshot":
            svc = app.extensions["remediator"]
            refresh_snapshot_if_due(svc.store, cfg, datetime.now(UTC))
        assert client.get("/metrics").status_code == 200  # noqa: S101 - warm-up must work
        times = []
        for _ in range(scrapes):
            t0 = time.perf_counter()
            resp = client.get("/metrics")
            times.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200  # noqa: S101
        body = resp.get_data(as_text=True)
        count = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                    if line.startswith("remediator_incidents_total{"))
        out[mode] = {"median_ms": round(statistics.median(times), 1),
                     "max_ms": round(max(times), 1), "incidents_reported": count}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--incidents", type=int, default=50_000)
    ap.add_argument("--scrapes", type=int, default=20)
    args = ap.parse_args()
    out: dict[str, Any] = {"incidents": args.incidents}
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            url = f"sqlite:///{tmp}/bench.db"
            s = open_store(url)
            s.migrate()
            s.close()
            fill_sqlite(Path(tmp) / "bench.db", args.incidents)
            out["sqlite"] = scrape(url, Path(tmp) / "d1", args.scrapes)
        if args.backend in ("postgres", "both"):
            name = f"bench_metrics_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            url = PG_DSN.rpartition("/")[0] + "/" + name
            try:
                s = open_store(url, pool_min=0, pool_max=2)
                s.migrate()
                s.close()
                fill_postgres(url, args.incidents)
                out["postgres"] = scrape(url, Path(tmp) / "d2", args.scrapes)
            finally:
                with psycopg.connect(PG_DSN, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
