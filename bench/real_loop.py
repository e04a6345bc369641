"""The real loop as a benchmark: from a dead web server to a resolved incident, and the share of
that time remediator itself spends.

    python bench/real_loop.py [--runs 3] [--timeout 85]

Each run starts a fresh stack on loopback (the scenario of tests/e2e/test_real_loop.py, from
tests/e2e/conftest.py): a busybox httpd container (host network, 127.0.0.1 only), the
blackbox exporter, Prometheus (scrape and evaluation every 1 s, alert ``probe_success == 0``
with ``for: 0s``), Alertmanager from alertmanager.example.yml (group_wait 10s,
group_interval 30s), and ``remediator serve`` with its embedded worker on a fresh PostgreSQL
database (rule: restart_container, verify the URL within 30s). It kills httpd inside the
container, observes every stage until the incident is resolved, and tears it all down.

Prints JSON: per run, each stage in seconds after the stop (where each comes from:
STAGE_SOURCES in tests/e2e/conftest.py) and the MTTR figures; then the median, min and max
of each figure. What counts as remediator's own time is written out in ``counted``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _e2e() -> Any:
    """tests/e2e/conftest.py, importable once the project root is on the path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.e2e import conftest

    return conftest


def one_run(e2e: Any, timeout: float) -> dict[str, Any]:
    import docker

    tmp = Path(tempfile.mkdtemp(prefix="remediator-real-loop-"))
    client = docker.from_env(timeout=120)
    stack = e2e.Stack(tmp, client)
    ok = False
    try:
        loop = e2e.start_real_loop(stack)
        cycle = e2e.run_cycle(stack, loop, timeout=timeout)
        ok = True
    finally:
        if not ok:
            print(stack.logs(), file=sys.stderr)
        stack.close()
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "stages_s": cycle.stages,
        "mttr": cycle.mttr(),
        "jobs": cycle.jobs,
        "docker_restarts": cycle.restarts,
        "incident_state": cycle.incident["state"],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in runs[0]["mttr"]:
        values = [r["mttr"][key] for r in runs]
        out[key] = {"median": round(statistics.median(values), 4),
                    "min": round(min(values), 4), "max": round(max(values), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=85.0,
                        help="seconds from the stop to a resolved incident before a run fails")
    args = parser.parse_args()
    e2e = _e2e()
    runs = []
    for i in range(args.runs):
        started = time.monotonic()
        result = one_run(e2e, args.timeout)
        result["run"] = i + 1
        result["wall_s"] = round(time.monotonic() - started, 1)
        runs.append(result)
        print(f"run {i + 1}/{args.runs}: resolved {result['mttr']['mttr_resolved_s']:.1f}s after "
              f"the stop, remediator's own {result['mttr']['remediator_own_s']:.3f}s",
              file=sys.stderr)
    report = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "setup": "all on one host, loopback: Prometheus scrape/eval 1s, for 0s; "
                     "Alertmanager example config (group_wait 10s, group_interval 30s); "
                     "remediator serve + embedded worker (example config: poll 2s, lease 60s, "
                     "LISTEN/NOTIFY on PostgreSQL); verify http within 30s (2s interval); "
                     "each run a fresh stack, so each worker process is cold (its first job "
                     "imports the Docker adapter and SDK)",
        },
        "counted": {
            "stages": e2e.STAGE_SOURCES,
            "mttr_figures": (e2e.mttr_figures.__doc__ or "").strip(),
            "mttr_resolved_s": "server stopped -> incident resolved_at",
            "mttr_healthy_s": "server stopped -> first 200 from the URL seen by the bench "
                              "(polled every ~0.2 s)",
            "share_of_mttr_*": "remediator_own_s / that MTTR",
        },
        "runs": runs,
        "summary": summarize(runs),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
