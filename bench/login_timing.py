"""Login timing: does a wrong password answer as fast for an unknown user as for a known one?

    python bench/login_timing.py [--attempts 50] [--method scrypt|pbkdf2:sha256:600000]

Builds the app in-process (Flask test client, SQLite store in a temp dir) with ``--attempts``
users whose password hash uses ``--method`` (default: what ``remediator hash-password``
writes), then posts the login form once with a wrong password for each of them and once for
as many unknown user names, interleaved, each from its own client address: every name is at
its first failure (the same store work and audit entry whether known or not) and the login
limits never answer 429 instead of checking. Prints the median and p90 of each, and the
difference of the medians, as JSON.

An attacker measuring over the network sees the same difference plus noise: a median over
enough tries tells a known name from an unknown one when the difference is well above the
noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from werkzeug.security import generate_password_hash  # noqa: E402

from receiver.app import create_app  # noqa: E402
from receiver.config import parse_config  # noqa: E402
from receiver.errors import ConfigError  # noqa: E402
from receiver.store import open_store  # noqa: E402


def build(tmp: Path, method: str | None, users: int) -> Any:
    os.environ.setdefault("BENCH_LOGIN_WEBHOOK_TOKEN", "bench-webhook-token-0123456789")
    pw = generate_password_hash("the real password", **({"method": method} if method else {}))
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "store": {"url": f"sqlite:///{tmp}/bench.db"},
        "auth": {"bearer_token": "env:BENCH_LOGIN_WEBHOOK_TOKEN"},
        "server": {"secure_cookies": False},
        "people": {"users": {f"user{i}": {"password_hash": pw} for i in range(users + 1)},
                   "login_limits": {"user_failures": 100000, "address_failures": 100000,
                                    "audited_failures": 100000}},
    }
    try:
        config = parse_config(data)
    except ConfigError:  # a receiver without login limits
        del data["people"]["login_limits"]
        config = parse_config(data)
    store = open_store(config.store_url())
    store.migrate()
    return create_app(config, store=store), pw.split("$", 1)[0]


def attempt(client: Any, user: str, addr: str) -> float:
    env = {"REMOTE_ADDR": addr}
    page = client.get("/login", environ_base=env).get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    token = m.group(1) if m else ""
    t0 = time.perf_counter()
    r = client.post("/login", data={"username": user, "password": "wrong guess",
                                    "csrf_token": token}, environ_base=env)
    elapsed = time.perf_counter() - t0
    if r.status_code != 401:
        raise SystemExit(f"expected 401 for {user}, got {r.status_code}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=50)
    ap.add_argument("--method", default=None, help="werkzeug hash method of the known user")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        app, method = build(Path(d), args.method, args.attempts)
        client = app.test_client()
        attempt(client, f"user{args.attempts}", "10.0.0.1")  # warm up (imports, first queries)
        attempt(client, "nobody", "10.0.0.2")
        known: list[float] = []
        unknown: list[float] = []
        for i in range(args.attempts):
            known.append(attempt(client, f"user{i}", f"10.1.{i // 250}.{i % 250 + 1}"))
            unknown.append(attempt(client, f"nobody{i}", f"10.2.{i // 250}.{i % 250 + 1}"))

    def summary(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {"median_ms": round(statistics.median(xs) * 1000, 2),
                "p90_ms": round(xs[int(len(xs) * 0.9) - 1] * 1000, 2)}

    k, u = summary(known), summary(unknown)
    print(json.dumps({"method": method, "attempts": args.attempts, "known_user": k,
                      "unknown_user": u,
                      "median_difference_ms": round(u["median_ms"] - k["median_ms"], 2)},
                     indent=2))


if __name__ == "__main__":
    main()
