"""Game day: from ``remediator gameday start`` to the incident existing.

    python bench/gameday.py [--rounds 5] [--group-wait 10s]

Starts ``remediator serve`` (SQLite, from remediator.example.yml with the bind address,
data directory and store changed, one person mapped to this OS account, and
``targets.http.hosts: [127.0.0.1:*]``) and one Alertmanager from alertmanager.example.yml
(its webhook URL changed, and its route's ``group_wait`` set by ``--group-wait``; the
example's is 10s). Each round starts a game day whose one alert opens its own group, waits
until the receiver lists its incident, and ends the game day.

Per round:
  cli_s          the ``gameday start`` command's own run (load config, record, post)
  to_incident_s  the command's start -> the incident listed by the JSON API (client clock,
                 polled every 50 ms)
  store_s        the game day's started_at -> the incident's opened_at (server clock, from
                 ``gameday report --json``)
Prints JSON and writes it to bench/results/gameday-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_WEBHOOK_URL = "http://127.0.0.1:9095/api/v1/alerts"
READ_TOKEN = "bench-read-token-0123456789"  # noqa: S105 - a throwaway token for loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}  # noqa: S310 - loopback
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except OSError:
        return 0, b""


def wait(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--group-wait", default="10s")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-gameday-"))
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = str(tmp / "data")
    cfg["store"]["url"] = "sqlite:///remediator.db"
    people = cfg.get("people") or {}
    people.setdefault("api_tokens", {})["bench"] = {
        "token": "env:BENCH_READ_TOKEN", "user": "bench", "scope": "read"}
    people.setdefault("users", {})["drillmaster"] = {"os_user": pwd.getpwuid(os.geteuid()).pw_name}
    cfg["people"] = people
    cfg["targets"] = {"http": {"hosts": ["127.0.0.1:*"]}}
    config = tmp / "remediator.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")

    am_text = (ROOT / "alertmanager.example.yml").read_text(encoding="utf-8")
    token = yaml.safe_load(am_text)["receivers"][0]["webhook_configs"][0]["http_config"][
        "authorization"]["credentials"]
    env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": token, "BENCH_READ_TOKEN": READ_TOKEN}
    env.pop("REMEDIATOR_TOKEN", None)
    port, am_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    am_text = am_text.replace(EXAMPLE_WEBHOOK_URL, f"{url}/api/v1/alerts")
    am_text = re.sub(r"group_wait: \S+", f"group_wait: {args.group_wait}", am_text, count=1)
    (tmp / "am.yml").write_text(am_text, encoding="utf-8")

    procs = [
        subprocess.Popen(["remediator", "serve", "-c", str(config), "--bind",  # noqa: S607 - our CLI
                          f"127.0.0.1:{port}"], stdout=(tmp / "serve.log").open("wb"),
                         stderr=subprocess.STDOUT, env=env, start_new_session=True),
        subprocess.Popen(["/usr/bin/prometheus-alertmanager", f"--config.file={tmp / 'am.yml'}",
                          f"--storage.path={tmp / 'am'}",
                          f"--web.listen-address=127.0.0.1:{am_port}",
                          "--cluster.listen-address="], stdout=(tmp / "am.log").open("wb"),
                         stderr=subprocess.STDOUT, start_new_session=True),
    ]
    am = f"http://127.0.0.1:{am_port}"
    rounds = []
    try:
        wait(lambda: get(url + "/readyz")[0] == 200, 30, "the receiver")
        wait(lambda: get(am + "/-/ready")[0] == 200, 30, "Alertmanager")
        for n in range(args.rounds):
            name = f"BenchDrill{n}Down"
            scenario = tmp / f"s{n}.yml"
            scenario.write_text(yaml.safe_dump({
                "name": f"bench {n}", "time_limit": "5m",
                "alerts": [{"labels": {"alertname": name, "severity": "warning"}}]}),
                encoding="utf-8")
            t0 = time.monotonic()
            out = subprocess.run(["remediator", "gameday", "start", str(scenario), "-c",  # noqa: S607 - our CLI
                                  str(config), "--alertmanager", am], capture_output=True,
                                 text=True, env=env, check=True, timeout=60)
            t_cli = time.monotonic()
            gid = out.stdout.strip().splitlines()[-1]

            def listed(name: str = name) -> bool:
                code, body = get(url + "/api/v1/incidents", READ_TOKEN)
                return code == 200 and name in body.decode()

            wait(listed, 120, f"the incident of round {n}")
            t_inc = time.monotonic()
            report = json.loads(subprocess.run(
                ["remediator", "gameday", "report", gid, "--json", "-c", str(config)],  # noqa: S607 - our CLI
                capture_output=True, text=True, env=env, check=True, timeout=60).stdout)
            subprocess.run(["remediator", "gameday", "end", gid, "-c", str(config)],  # noqa: S607 - our CLI
                           capture_output=True, env=env, check=True, timeout=60)
            rounds.append({"cli_s": round(t_cli - t0, 3), "to_incident_s": round(t_inc - t0, 3),
                           "store_s": report["incidents"][0]["opened_after_s"]})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)
    result = {
        "meta": {"at": datetime.now(UTC).isoformat(), "backend": "sqlite",
                 "group_wait": args.group_wait, "rounds": args.rounds,
                 "note": "client, Alertmanager and receiver share the machine's cores"},
        "rounds": rounds,
        "median": {k: statistics.median(r[k] for r in rounds) for k in rounds[0]} if rounds
        else {},
    }
    text = json.dumps(result, indent=2)
    print(text)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"gameday-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json").write_text(text)


if __name__ == "__main__":
    main()
