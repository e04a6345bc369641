"""CPU used by an idle ``remediator serve`` (gunicorn master and workers, embedded worker).

    python bench/idle_cpu.py [--backend sqlite|postgres] [--seconds 30] [--poll-interval 2s]

Starts ``remediator serve`` on a fresh store with no rules (the config's defaults otherwise:
2 gunicorn workers, the embedded worker), waits until it answers /readyz and its worker has
started, lets it settle for 5 s, then reads utime + stime of every process in its tree from
/proc/<pid>/stat at the start and the end of the window. Nothing is sent to it. Prints the
CPU % of one core per process role and in total, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from ingest import free_port, fresh_store

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _tree(pid: int) -> list[int]:
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += _tree(int(child))
    return out


def _role(pid: int, master: int) -> str:
    if pid == master:
        return "gunicorn master"
    return "embedded worker" if " worker " in _cmdline(pid) else "gunicorn worker"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--poll-interval", default="2s", help="remediation.poll_interval")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    with fresh_store(args.backend, tmp) as store_url:
        cfg: dict[str, Any] = yaml.safe_load((ROOT / "remediator.example.yml").read_text())
        cfg["data_dir"] = str(tmp / "data")
        cfg["store"]["url"] = "env:REMEDIATOR_BENCH_DB_URL"
        cfg["rules"], cfg["targets"] = [], {}
        cfg["remediation"] = {"poll_interval": args.poll_interval}
        config = tmp / "remediator.yml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": secrets.token_urlsafe(24),
               "REMEDIATOR_BENCH_DB_URL": store_url}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        port = free_port()
        log = tmp / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "receiver", "serve", "-c", str(config),
                 "--bind", f"127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)  # noqa: S310 - loopback
                    if " started (" in log.read_text(errors="replace"):
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            time.sleep(5)
            pids = _tree(proc.pid)
            roles = {pid: _role(pid, proc.pid) for pid in pids}
            start = {pid: _cpu(pid) for pid in pids}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            used = {pid: _cpu(pid) - start[pid] for pid in pids}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    per_role: dict[str, float] = {}
    for pid, seconds in used.items():
        per_role[roles[pid]] = per_role.get(roles[pid], 0.0) + seconds
    report = {
        "backend": args.backend,
        "poll_interval": args.poll_interval,
        "window_s": round(wall, 1),
        "cpu_percent_of_one_core": {role: round(100 * s / wall, 2)
                                    for role, s in sorted(per_role.items())},
        "total_cpu_percent": round(100 * sum(used.values()) / wall, 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
