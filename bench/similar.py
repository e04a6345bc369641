"""Similar past incidents at scale: the lookup's cost over 50,000 past incidents, and what the
index costs ingest.

    python bench/similar.py [--backend sqlite|postgres|both] [--incidents 50000] [--lookups 300]

For each backend, on a fresh store (migrated by the product):
  1. seed N resolved incidents with 1-3 alerts each (bulk SQL, outside the product: only the
     seeding; 150 alert names, 400 services, 6 envs, 30 teams, a random instance per alert);
  2. index them with the product's chore (``receiver.incidents.similar.index_due``, batches
     of 500): total time and ms per incident; this is where the index's cost lands (the
     worker, never the webhook);
  3. time ``similar.find`` for ``--lookups`` incidents picked at random: ms p50/p95/p99/max
     and how many results;
  4. ingest: the webhook writes nothing for this feature (the chore follows the timeline's
     state events by primary key), so its overhead is the chore's: 300 notifications
     accepted and resolved, then indexed; accept ms p50/p99 and chore ms per incident.
Prints JSON and writes it to bench/results/similar-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.config import parse_config  # noqa: E402
from receiver.incidents import similar  # noqa: E402
from receiver.intake.alertmanager import Notification  # noqa: E402
from receiver.intake.engine import Intake  # noqa: E402
from receiver.store import Store, open_store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_DSN = os.environ.get("REMEDIATOR_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50": _pct(ms, 0.5), "p95": _pct(ms, 0.95), "p99": _pct(ms, 0.99),
            "max": round(max(ms), 3), "mean": round(statistics.fmean(ms), 3)}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def seed_rows(n: int, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    incidents, alerts = [], []
    for i in range(1, n + 1):
        opened = NOW - timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        resolved = opened + timedelta(minutes=rng.randrange(1, 600))
        name = f"Alert{int(rng.paretovariate(1.2)) % 150}"
        service = f"svc-{int(rng.paretovariate(1.1)) % 400}"
        env = rng.choice(["prod", "staging", "dev", "qa", "eu", "us"])
        team = f"team-{rng.randrange(30)}"
        incidents.append({"id": i, "key": f"k{i}", "title": f"{name} {service}", "opened": opened,
                          "resolved": resolved})
        for j in range(rng.randrange(1, 4)):
            labels = {"alertname": name if j == 0 else f"Alert{rng.randrange(150)}",
                      "service": service, "env": env, "team": team,
                      "instance": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}:9100",
                      "severity": "critical"}
            alerts.append({"fp": f"{i:x}-{j}", "incident_id": i, "name": labels["alertname"],
                           "labels": json.dumps(labels), "starts": opened})
    return incidents, alerts


INC_SQL = """INSERT INTO incidents (id, key, open_key, state, severity, severity_reason, title,
    receiver, group_key, group_labels, opened_at, ack_due_at, resolved_at, last_seen_at,
    updated_at, change_tx) VALUES ({p})"""
EVENT_SQL = """INSERT INTO incident_events (incident_id, at, kind, actor, message, detail)
    VALUES ({p})"""
ALERT_SQL = """INSERT INTO alerts (fingerprint, starts_at, status, alertname, labels, annotations,
    generator_url, severity, incident_id, first_seen_at, last_seen_at, resolved_at,
    change_tx) VALUES ({p})"""


def _inc_values(r: dict[str, Any], ts: Any) -> tuple[Any, ...]:
    return (r["id"], r["key"], None, "resolved", "P2", "bench", r["title"], "bench", r["key"],
            "{}", ts(r["opened"]), ts(r["opened"]), ts(r["resolved"]), ts(r["resolved"]),
            ts(r["resolved"]), "seed")


def _alert_values(a: dict[str, Any], ts: Any) -> tuple[Any, ...]:
    return (a["fp"], ts(a["starts"]), "resolved", a["name"], a["labels"], "{}", "", "critical",
            a["incident_id"], ts(a["starts"]), ts(a["starts"]), ts(a["starts"]), "seed")


def _event_values(r: dict[str, Any], ts: Any) -> tuple[Any, ...]:
    return (r["id"], ts(r["resolved"]), "resolved", "alertmanager", "all alerts resolved", "{}")


def seed_sqlite(path: Path, incidents: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    with con:
        con.executemany(INC_SQL.format(p=", ".join("?" * 16)),
                        [_inc_values(r, _iso) for r in incidents])
        con.executemany(EVENT_SQL.format(p=", ".join("?" * 6)),
                        [_event_values(r, _iso) for r in incidents])
        con.executemany(ALERT_SQL.format(p=", ".join("?" * 13)),
                        [_alert_values(a, _iso) for a in alerts])
    con.close()


def seed_postgres(url: str, incidents: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
    same = lambda t: t  # noqa: E731
    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.executemany(INC_SQL.format(p=", ".join(["%s"] * 16)),
                        [_inc_values(r, same) for r in incidents])
        cur.executemany(ALERT_SQL.format(p=", ".join(["%s"] * 13)),
                        [_alert_values(a, same) for a in alerts])
        cur.executemany(EVENT_SQL.format(p=", ".join(["%s"] * 6)),
                        [_event_values(r, same) for r in incidents])
        cur.execute("SELECT setval(pg_get_serial_sequence('incidents', 'id'), "
                    "(SELECT max(id) FROM incidents))")


def run_backend(backend: str, n: int, lookups: int, tmp: Path) -> dict[str, Any]:
    rng = random.Random(42)
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp}/similar-bench.db"
    else:
        pg_name = f"rm_bench_similar_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_DSN.rsplit("/", 1)[0] + f"/{pg_name}"
    store = open_store(url, pool_min=1, pool_max=4)
    try:
        store.migrate()
        config = parse_config({"data_dir": str(tmp / "data")})
        incidents, alerts = seed_rows(n, rng)
        began = time.perf_counter()
        if backend == "sqlite":
            seed_sqlite(Path(url[len("sqlite:///"):]), incidents, alerts)
        else:
            seed_postgres(url, incidents, alerts)
        seed_s = time.perf_counter() - began

        began = time.perf_counter()
        indexed = batches = 0
        while True:
            done = similar.index_due(store, config, now=NOW + timedelta(days=2))  # all settle
            if not done:
                break
            indexed, batches = indexed + done, batches + 1
        index_s = time.perf_counter() - began

        ms, results = [], []
        picks = rng.sample(range(1, n + 1), min(lookups, n))
        for incident_id in picks:
            t0 = time.perf_counter()
            found = similar.find(store, config, incident_id, now=NOW)
            ms.append((time.perf_counter() - t0) * 1000)
            results.append(len(found))

        ingest = ingest_overhead(store, config)
        return {
            "backend": backend, "incidents": n, "alerts": len(alerts),
            "seed_s": round(seed_s, 2),
            "index": {"events_read": indexed, "batches": batches, "total_s": round(index_s, 2),
                      "ms_per_incident": round(index_s * 1000 / n, 3)},
            "lookup_ms": _summary(ms), "lookups": len(ms),
            "results_per_lookup": {"mean": round(statistics.fmean(results), 2),
                                   "min": min(results)},
            "ingest": ingest,
        }
    finally:
        store.close()
        if pg_name is not None:
            with psycopg.connect(PG_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def ingest_overhead(store: Store, config: Any, count: int = 300) -> dict[str, Any]:
    """What the feature adds where alerts arrive: nothing in the webhook's transaction (no
    table or index of it is written there), so the cost is the chore's. Measured: Intake.accept
    of ``count`` one-alert notifications (each a new incident), each incident then resolved
    by a resolved notification, then the chore indexing them (fresh, and once more settled)."""

    clock_t = [NOW + timedelta(days=3)]

    def clock() -> datetime:
        clock_t[0] += timedelta(milliseconds=5)
        return clock_t[0]

    intake = Intake(config, store, clock)

    def body(i: int, status: str, started: str) -> str:
        return json.dumps({
            "version": "4", "groupKey": f"{{}}:{{g=\"bench-{i}\"}}", "status": status,
            "receiver": "bench", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am:9093", "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": {"alertname": "BenchDown",
                                                     "service": f"s{i % 40}", "run": "bench"},
                        "annotations": {}, "startsAt": started,
                        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else started,
                        "generatorURL": "", "fingerprint": f"bench{i:x}"}]})

    accept_ms = []
    starts = []
    for i in range(count):
        starts.append(_iso(clock()).replace("+00:00", "Z"))
        raw = body(i, "firing", starts[-1])
        t0 = time.perf_counter()
        intake.accept(Notification.model_validate_json(raw), raw)
        accept_ms.append((time.perf_counter() - t0) * 1000)
    for i in range(count):
        raw = body(i, "resolved", starts[i])
        intake.accept(Notification.model_validate_json(raw), raw)
    t0 = time.perf_counter()
    read = 0
    for at in (clock_t[0], clock_t[0] + similar.SETTLE):
        while done := similar.index_due(store, config, now=at):
            read += done
    chore_s = time.perf_counter() - t0
    return {"notifications": count, "webhook_accept_ms": _summary(accept_ms),
            "webhook_rows_written_for_similar": 0, "chore_events_read": read,
            "chore_ms_per_incident": round(chore_s * 1000 / count, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--incidents", type=int, default=50_000)
    ap.add_argument("--lookups", type=int, default=300)
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    out: dict[str, Any] = {"meta": {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "cpus": os.cpu_count(), "note": "2 shared cores; other "
                                    "work on the machine inflates the tails"}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            out["runs"].append(run_backend(backend, args.incidents, args.lookups, Path(tmp)))
            print(json.dumps(out["runs"][-1], indent=2), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"similar-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
