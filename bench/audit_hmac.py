"""The cost of the keyed audit chain: HMAC-SHA256 vs plain SHA-256 per entry.

Two levels, both printed as JSON:

* ``hash``: ``chain_hash`` alone (canonical JSON + digest) on a realistic entry, in a loop;
* ``append``: whole audit appends (one transaction each) on a fresh SQLite store and a
  fresh PostgreSQL database (``--pg-dsn``, default the one scripts/services.sh starts),
  unkeyed vs keyed, and ``verify`` (walk + check) of the resulting chain.

    python bench/audit_hmac.py [--n 20000] [--appends 2000] [--no-pg]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from receiver.audit.chain import GENESIS, KEYED, LEGACY, AuditKey, chain_hash  # noqa: E402
from receiver.store import audit as audit_store  # noqa: E402
from receiver.store import open_store  # noqa: E402

KEY = AuditKey("bench-audit-key-0123456789abcdef0123456789")
ENTRY: dict[str, Any] = {
    "seq": 123456, "at": datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "actor": "user:alice",
    "action": "job.approved", "subject": "job:4242", "incident_id": 1717,
    "details": {"rule": "restart-web", "playbook": "restart_container", "votes": 2,
                "reason": "web1 unhealthy for 5 minutes, restart approved by the on-call"},
    "origin": {"via": "api", "ip": "10.0.0.7", "user_agent": "curl/8.5.0"},
}


def bench_hash(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"digest_only": bench_digest(n)}
    for name, alg, key in (("sha256", LEGACY, None), ("hmac_sha256", KEYED, KEY)):
        entry = {**ENTRY, "alg": alg, "key_id": KEY.id if key else None}
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            prev = GENESIS
            for _ in range(n):
                prev = chain_hash(prev, entry, key)
            runs.append((time.perf_counter() - t0) / n * 1e6)
        out[name] = {"us_per_entry_median": round(statistics.median(runs), 2),
                     "us_per_entry_min": round(min(runs), 2)}
    out["hmac_extra_us"] = round(out["hmac_sha256"]["us_per_entry_median"]
                                 - out["sha256"]["us_per_entry_median"], 2)
    return out


def bench_digest(n: int) -> dict[str, Any]:
    """The digest alone, on the bytes one entry hashes (~400 bytes), without the JSON."""
    import hashlib

    from receiver.audit.chain import canonical

    data = (GENESIS + canonical({**ENTRY, "alg": KEYED, "key_id": KEY.id})).encode()
    out: dict[str, Any] = {"bytes": len(data)}
    for name, fn in (("sha256", lambda: hashlib.sha256(data).hexdigest()),
                     ("hmac_sha256", lambda: KEY.mac(data))):
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            runs.append((time.perf_counter() - t0) / n * 1e6)
        out[f"{name}_us_median"] = round(statistics.median(runs), 2)
    return out


def bench_append(url: str, n: int, key: AuditKey | None) -> dict[str, Any]:
    store = open_store(url, pool_min=1, pool_max=2, audit_key=key)
    store.migrate()
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    t0 = time.perf_counter()
    for i in range(n):
        with store.db.transaction() as tx:
            audit_store.append(tx, at=at + timedelta(milliseconds=i), actor=ENTRY["actor"],
                               action=ENTRY["action"], subject=f"job:{i}",
                               incident_id=ENTRY["incident_id"], details=ENTRY["details"],
                               origin=ENTRY["origin"])
    append = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = store.verify_audit()
    verify = time.perf_counter() - t0
    store.close()
    if report.checked != n or any("entry" in p for p in report.problems):
        raise SystemExit(f"the benchmark's chain does not verify: {report}")
    return {"append_us_per_entry": round(append / n * 1e6, 1),
            "verify_us_per_entry": round(verify / n * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000, help="hashes per timing run")
    ap.add_argument("--appends", type=int, default=2000, help="audit appends per store")
    ap.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:54329/postgres")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    result: dict[str, Any] = {"hash": bench_hash(args.n), "append": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, key in (("unkeyed", None), ("keyed", KEY)):
            url = f"sqlite:///{tmp}/{label}.db"
            result["append"][f"sqlite_{label}"] = bench_append(url, args.appends, key)
    if not args.no_pg:
        import psycopg

        base = args.pg_dsn.rpartition("/")[0]
        for label, key in (("unkeyed", None), ("keyed", KEY)):
            name = f"bench_audit_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.pg_dsn, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}".encode())
            try:
                result["append"][f"postgres_{label}"] = bench_append(f"{base}/{name}",
                                                                     args.appends, key)
            finally:
                with psycopg.connect(args.pg_dsn, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
