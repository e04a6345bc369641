"""What one use of the Redis adapter costs, with the process's pooled connection and with
a connection of its own (as every use had before the pool: new pool, connect, close).

    python bench/redis_connect.py [--uses 500]

Each use opens an adapter for db 0 of the shared test Redis (REMEDIATOR_BENCH_REDIS_URL,
default redis://127.0.0.1:63790/0), runs what flush_cache's plan runs (a SCAN for a pattern
with nothing under it) and closes the adapter. The two modes alternate in rounds; the
medians of CPU and wall time per use are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from receiver.adapters import AdapterFactory
from receiver.adapters import redis as redis_adapter
from receiver.remediation.targets import TargetsConfig

URL = os.environ.get("REMEDIATOR_BENCH_REDIS_URL", "redis://127.0.0.1:63790/0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uses", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    os.environ["REMEDIATOR_BENCH_REDIS"] = URL
    target = TargetsConfig.model_validate(
        {"redis": {"cache": {"url": "env:REMEDIATOR_BENCH_REDIS", "dbs": [0]}}}
    ).redis_target("cache")
    factory = AdapterFactory()

    def use() -> None:
        with factory.redis(target, db=0) as cache:
            cache.count_matching("remediator-bench:nothing:*", batch=500, limit=1000)

    def own_connection() -> None:
        use()
        with redis_adapter._pools_lock:  # what closing the adapter's own pool did
            for pool in redis_adapter._pools.values():
                pool.disconnect()
            redis_adapter._pools.clear()

    modes: dict[str, Callable[[], None]] = {"pooled": use, "own_connection": own_connection}
    figures: dict[str, dict[str, list[float]]] = {m: {"cpu": [], "wall": []} for m in modes}
    for fn in modes.values():  # warm: imports, the first connection
        for _ in range(20):
            fn()
    for r in range(args.rounds):
        for name, fn in (modes.items() if r % 2 == 0 else reversed(list(modes.items()))):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(args.uses):
                fn()
            figures[name]["cpu"].append((time.process_time() - c0) / args.uses * 1000)
            figures[name]["wall"].append((time.perf_counter() - w0) / args.uses * 1000)
    out = {
        "unit": "ms per adapter use (open, SCAN, close), median over rounds",
        "uses_per_round": args.uses, "rounds": args.rounds,
        **{name: {k: round(statistics.median(v), 3) for k, v in f.items()}
           for name, f in figures.items()},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
