"""The real loop side by side: remediator on SQLite, remediator on PostgreSQL, and a bare sink
that restarts the container the instant the webhook arrives (bench/bare_sink.py), in
interleaved repetitions on the same host with the same Prometheus and Alertmanager.

    python bench/real_loop.py [--reps 3] [--budget 900] [--setups sink,sqlite,postgres]

Each run starts a fresh stack on loopback (tests/e2e/conftest.py): a busybox httpd container
(host network, 127.0.0.1 only), the blackbox exporter, Prometheus (scrape and evaluation every
1 s, alert ``probe_success == 0`` with ``for: 0s``), Alertmanager from alertmanager.example.yml
(group_wait 10s), and the webhook receiver under test: ``remediator serve`` with its embedded
worker (rule restart_container, stop timeout 5 s, verify the URL within 30 s; the example
config otherwise, poll_interval 2s) on a fresh SQLite file or PostgreSQL database, or the bare
sink (the same restart call, stop timeout 5 s). It kills httpd inside the container and
observes each stage until the service answers again and (for remediator) the job is verified.

Repetition i runs every setup once, in an order rotated by i. It stops by itself after --reps
repetitions or when the --budget (seconds) would be exceeded by another repetition.

Prints JSON: per run, each stage in seconds after the stop; per setup, the median of each
figure and the MTTR ratios to the bare sink (ratio of medians, and the median of the ratios
within a repetition); and the host's load average before and after. MTTR is the stop to the
first 200 from the URL (polled every 50 ms by this process), the same observer for all.
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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETUPS = ("sink", "sqlite", "postgres")
BREAKDOWN = ("alert_firing", "webhook_received", "job_committed", "job_claimed", "adapter_call",
             "container_restarted", "container_healthy", "verified")
SOURCES = {
    "alert_firing": "the alert's activeAt in Prometheus (rule evaluation time)",
    "webhook_received": "remediator: the incident's opened_at (the firing notification's "
                        "receipt); sink: its body read",
    "job_committed": "remediator: this process, first time a read of the store (every 5 ms)"
                     " sees the job row, i.e. the intake transaction's commit; sink: = "
                     "webhook_received",
    "job_claimed": "remediator: the job_claimed timeline event; sink: = webhook_received",
    "adapter_call": "remediator: job_started (the playbook about to call the Docker adapter);"
                    " sink: the restart call begins",
    "container_restarted": "Docker's 'restart' event (sent once the restart has completed)",
    "container_healthy": "this process: first 200 from the URL after the failure (50 ms polls)",
    "verified": "remediator: job_succeeded (after the HTTP verification passed); "
                "sink: = container_healthy (it verifies nothing)",
}


def _e2e() -> Any:
    """tests/e2e/conftest.py, importable once the project root is on the path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.e2e import conftest

    return conftest


class CommitWatch:
    """Reads the store every 5 ms in a thread: when the first job row becomes visible."""

    def __init__(self, store_url: str) -> None:
        self.seen: float | None = None
        self._url, self._stop = store_url, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _count(self) -> Any:
        if self._url.startswith("sqlite:///"):
            import sqlite3

            conn = sqlite3.connect(self._url.removeprefix("sqlite:///"), timeout=1)
            return conn, lambda: conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        import psycopg

        pg = psycopg.connect(self._url, autocommit=True)
        return pg, lambda: pg.execute("SELECT count(*) FROM jobs").fetchone()[0]  # type: ignore[index]

    def _run(self) -> None:
        conn, count = self._count()
        try:
            while not self._stop.is_set() and self.seen is None:
                if count():
                    self.seen = time.time()
                self._stop.wait(0.005)
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class ProbeWatch:
    """Polls the URL every 50 ms in a thread: the first failure and the first 200 after it."""

    def __init__(self, e2e: Any, url: str) -> None:
        self.failed: float | None = None
        self.healthy: float | None = None
        self._e2e, self._url, self._stop = e2e, url, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.healthy is None:
            ok = self._e2e.probe_ok(self._url, timeout=0.5)
            now = time.time()
            if not ok and self.failed is None:
                self.failed = now
            elif ok and self.failed is not None:
                self.healthy = now
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _start(e2e: Any, stack: Any, setup: str) -> dict[str, Any]:
    if setup == "sink":
        container, probe_url = e2e.start_web(stack)
        port = e2e.free_port()
        proc = stack.spawn("sink", [sys.executable, str(ROOT / "bench" / "bare_sink.py"),
                                    "--port", str(port), "--stop-timeout", "5"])
        sink = f"http://127.0.0.1:{port}"
        e2e.wait_for(lambda: e2e.probe_ok(sink + "/events"), 30, "the bare sink")
        prom, am = e2e.start_monitoring(stack, container, probe_url, sink + "/hook")
        return {"container": container, "probe_url": probe_url, "prometheus": prom,
                "alertmanager": am, "sink": sink, "proc": proc}
    url = (f"sqlite:///{stack.tmp}/data/remediator.db" if setup == "sqlite" else None)
    loop = e2e.start_real_loop(stack, url)
    return {"container": loop.container, "probe_url": loop.probe_url,
            "prometheus": loop.prometheus, "alertmanager": loop.alertmanager, "loop": loop}


def _verified(e2e: Any, run: dict[str, Any], at: dict[str, float]) -> bool:
    """Whether the run has reached its end; records the receiver's own stages when it has."""
    if "sink" in run:
        events = e2e.get_json(run["sink"] + "/events")["events"]
        if not events:
            return False
        ev = events[0]
        at.update(webhook_received=ev["received"], job_committed=ev["received"],
                  job_claimed=ev["received"],
                  adapter_call=ev["restart_call"])
        return "container_healthy" in at
    rcv = run["loop"].receiver
    listed = rcv.api("/api/v1/incidents")["incidents"]
    if not listed:
        return False
    detail = rcv.api(f"/api/v1/incidents/{listed[0]['id']}")
    first: dict[str, float] = {}
    for event in detail["timeline"]:
        first.setdefault(event["kind"], e2e.epoch(event["at"]))
    if "job_succeeded" not in first and "job_failed" not in first:
        return False
    if "job_succeeded" not in first:
        raise RuntimeError(f"the job failed: {detail['timeline']}")
    at.update(webhook_received=e2e.epoch(detail["opened_at"]), job_claimed=first["job_claimed"],
              adapter_call=first["job_started"], verified=first["job_succeeded"])
    return "container_healthy" in at


def one_run(e2e: Any, setup: str, timeout: float) -> dict[str, Any]:
    import docker

    tmp = Path(tempfile.mkdtemp(prefix=f"remediator-real-loop-{setup}-"))
    client = docker.from_env(timeout=120)
    stack = e2e.Stack(tmp, client)
    ok = False
    try:
        run = _start(e2e, stack, setup)
        at: dict[str, float] = {}
        at["server_stopped"] = time.time()
        killed = run["container"].exec_run(["/bin/busybox", "killall", "httpd"])
        if killed.exit_code != 0:
            raise RuntimeError(f"killall httpd failed: {killed.output!r}")
        watch = ProbeWatch(e2e, run["probe_url"])
        commits = CommitWatch(run["loop"].receiver.store_url) if "loop" in run else None
        deadline = time.monotonic() + timeout
        try:
            while True:
                if watch.healthy is not None:
                    at["container_healthy"] = watch.healthy
                alerts = e2e.get_json(f"{run['prometheus']}/api/v1/alerts")["data"]["alerts"]
                firing = [a for a in alerts if a["state"] == "firing"]
                if firing and "alert_firing" not in at:
                    at["alert_firing"] = e2e.epoch(firing[0]["activeAt"])
                if _verified(e2e, run, at):
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{setup}: not verified {timeout:g}s after the stop; "
                                       f"seen {sorted(at)}")
                time.sleep(0.2)
        finally:
            watch.close()
            if commits is not None:
                commits.close()
                if commits.seen is not None:
                    at["job_committed"] = commits.seen
        at.setdefault("verified", at["container_healthy"])
        restarts = stack.events([run["container"].id], "restart", since=at["server_stopped"])
        if restarts:
            at["container_restarted"] = restarts[0]["timeNano"] / 1e9
        ok = True
    finally:
        if not ok:
            print(stack.logs(), file=sys.stderr)
        stack.close()
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    t0 = at["server_stopped"]
    stages = {s: round(at[s] - t0, 3) for s in BREAKDOWN if s in at}
    return {"setup": setup, "stages_s": stages, "restarts": len(restarts), **figures(stages)}


def figures(s: dict[str, float]) -> dict[str, float]:
    """MTTR and the gaps between consecutive stages."""
    out = {"mttr_s": s["container_healthy"], "mttr_verified_s": s["verified"]}
    for a, b in zip(BREAKDOWN, BREAKDOWN[1:], strict=False):
        if a in s and b in s:
            out[f"{a}->{b}_s"] = round(s[b] - s[a], 3)
    out["webhook->claimed_s"] = round(s["job_claimed"] - s["webhook_received"], 3)
    out["webhook->healthy_s"] = round(s["container_healthy"] - s["webhook_received"], 3)
    if "alert_firing" in s:  # without the scrape phase, the one part that is pure chance
        out["firing->healthy_s"] = round(s["container_healthy"] - s["alert_firing"], 3)
    return out


def summarize(runs: list[dict[str, Any]], setups: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setup in setups:
        mine = [r for r in runs if r["setup"] == setup]
        keys = [k for k in mine[0] if k.endswith("_s") and k != "stages_s"]
        out[setup] = {k: round(statistics.median(r[k] for r in mine if k in r), 3)
                      for k in keys}
        out[setup]["mttr_s_all"] = [r["mttr_s"] for r in mine]
    if "sink" not in out:
        return out
    floor = out["sink"]
    for setup in setups:
        if setup == "sink":
            continue
        per_rep = [r["mttr_s"] / s["mttr_s"] for r, s in zip(
            [r for r in runs if r["setup"] == setup],
            [r for r in runs if r["setup"] == "sink"], strict=False)]
        out[setup]["ratio_mttr"] = round(out[setup]["mttr_s"] / floor["mttr_s"], 3)
        out[setup]["ratio_mttr_per_rep_median"] = round(statistics.median(per_rep), 3)
        out[setup]["ratio_webhook_to_healthy"] = round(
            out[setup]["webhook->healthy_s"] / floor["webhook->healthy_s"], 3)
        out[setup]["ratio_firing_to_healthy"] = round(
            out[setup]["firing->healthy_s"] / floor["firing->healthy_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--budget", type=float, default=900.0,
                        help="seconds; no repetition starts that would likely end past it")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds from the stop to verified before a run fails")
    parser.add_argument("--setups", default=",".join(SETUPS))
    args = parser.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    if any(s not in SETUPS for s in setups):
        parser.error(f"--setups: each one of {', '.join(SETUPS)}")
    e2e = _e2e()
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    for rep in range(args.reps):
        elapsed = time.monotonic() - started
        if rep and elapsed + elapsed / rep > args.budget:
            print(f"budget: stopping after {rep} repetitions", file=sys.stderr)
            break
        order = setups[rep % len(setups):] + setups[:rep % len(setups)]
        for setup in order:
            t = time.monotonic()
            result = one_run(e2e, setup, args.timeout)
            result.update(rep=rep + 1, wall_s=round(time.monotonic() - t, 1),
                          loadavg_1m=round(os.getloadavg()[0], 2))
            runs.append(result)
            print(f"rep {rep + 1} {setup:8s}: healthy {result['mttr_s']:.2f}s, verified "
                  f"{result['mttr_verified_s']:.2f}s, webhook->claimed "
                  f"{result['webhook->claimed_s'] * 1000:.0f} ms (commit->claimed "
                  f"{result.get('job_committed->job_claimed_s', 0) * 1000:.0f} ms)",
                  file=sys.stderr)
    report = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "setup": "all on one host, loopback; the same Prometheus (scrape/eval 1s, for 0s) "
                     "and Alertmanager (example config, group_wait 10s) for every setup; "
                     "remediator serve + embedded worker from the example config",
        },
        "counted": SOURCES,
        "runs": runs,
        "summary": summarize(runs, setups),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
