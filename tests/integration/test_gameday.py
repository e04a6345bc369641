"""A game day end to end: ``remediator gameday start`` posts to a real Alertmanager, which
delivers to a real ``remediator serve`` (with its embedded worker); the incident is a
game-day incident, its restart runs dry (the real container is untouched), the report
shows the steps, a forged ``gameday`` label is an ordinary alert (its container really
restarts), and the figures count only the real incident."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.conftest import ROOT, drop_pg_database, new_pg_database, pg_url
from tests.integration.conftest import (
    API_TOKEN,
    START_TIMEOUT,
    Receiver,
    _failed,
    _stop,
    example_token,
    metric_sum,
    wait_until,
)
from tests.support import free_port, http

pytestmark = pytest.mark.slow

IMAGE = "local/busybox:test"
OWNER_LABEL = "remediator.test.run"
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture
def containers() -> Iterator[tuple[Any, Any]]:
    """Two real containers: one the game day names, one a forged label names."""
    client = docker.from_env()
    made = [client.containers.run(IMAGE, ["sleep", "3600"], name=f"gdtest-{RUN_ID}-{what}",
                                  detach=True, labels={OWNER_LABEL: RUN_ID},
                                  stop_signal="SIGKILL") for what in ("drill", "real")]
    try:
        yield made[0], made[1]
    finally:
        for c in made:
            c.remove(force=True)
        client.close()


def _config(tmp: Path, store_url: str, names: list[str]) -> Path:
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = str(tmp / "data")
    cfg["store"]["url"] = store_url
    cfg.setdefault("server", {})["metrics_refresh"] = "1s"
    people = cfg.get("people") or {}
    people.setdefault("api_tokens", {})["integration-tests"] = {
        "token": "env:REMEDIATOR_TEST_API_TOKEN", "user": "integration-tests", "scope": "read"}
    people.setdefault("users", {})["drillmaster"] = {
        "os_user": pwd.getpwuid(os.geteuid()).pw_name}
    cfg["people"] = people
    cfg["rules"] = [{"name": "restart-web", "matchers": ['alertname=~".+Down"'],
                     "playbook": "restart_container", "approval": {"mode": "auto"},
                     "params": {"name": "{{ labels.container }}", "wait_timeout_s": 30,
                                "stop_timeout_s": 0}}]
    cfg["targets"] = {"containers": {"names": names}, "http": {"hosts": ["127.0.0.1:*"]}}
    path = tmp / "remediator.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def drill_receiver(backend: str, tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest,
                   containers: tuple[Any, Any]) -> Iterator[tuple[Receiver, Path, dict[str, str]]]:
    """``remediator serve`` with a restart rule over the two containers."""
    tmp = tmp_path_factory.mktemp(f"gameday-{backend}")
    env = {**os.environ, "REMEDIATOR_WEBHOOK_TOKEN": example_token(),
           "REMEDIATOR_TEST_API_TOKEN": API_TOKEN}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("REMEDIATOR_TOKEN", None)
    names = [c.name for c in containers]
    dbname = None
    if backend == "postgres":
        dbname = new_pg_database(None)
        env["REMEDIATOR_DB_URL"] = pg_url(dbname)
        config = _config(tmp, "env:REMEDIATOR_DB_URL", names)
        store_url = pg_url(dbname)
    else:
        config = _config(tmp, "sqlite:///remediator.db", names)
        store_url = f"sqlite:///{tmp / 'data' / 'remediator.db'}"
    port = free_port()
    log_path = tmp / "receiver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["remediator", "serve", "-c", str(config), "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    rcv = Receiver(backend, f"http://127.0.0.1:{port}", example_token(), API_TOKEN, store_url,
                   log_path, proc)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"remediator serve exited with {proc.returncode}:\n{rcv.log()}")
            try:
                return http("GET", rcv.url + "/readyz", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, "the receiver's /readyz")
        yield rcv, config, env
    finally:
        _stop(proc)
        if _failed(request):
            print(f"----- remediator serve ({backend}) log -----\n{rcv.log()}")
        if dbname is not None:
            drop_pg_database(dbname)


def cli(config: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(["remediator", *args, "-c", str(config)], capture_output=True,
                         text=True, env=env, timeout=60, check=False)
    assert out.returncode == 0, f"remediator {' '.join(args)}: {out.stderr}{out.stdout}"
    return out.stdout


def started_at(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def incidents_by_alertname(receiver: Receiver) -> dict[str, dict[str, Any]]:
    out = {}
    for listed in receiver.api("/api/v1/incidents")["incidents"]:
        detail = receiver.api(f"/api/v1/incidents/{listed['id']}")
        for alert in detail["alerts"]:
            out[alert["alertname"]] = detail
    return out


def test_a_game_day_through_alertmanager_runs_dry_and_is_reported(
        drill_receiver: tuple[Receiver, Path, dict[str, str]], start_alertmanager: Any,
        containers: tuple[Any, Any], tmp_path: Path) -> None:
    receiver, config, env = drill_receiver
    drill_box, real_box = containers
    am = start_alertmanager(receiver.webhook_url)
    before = {c.name: started_at(c) for c in containers}

    scenario = tmp_path / "drill.yml"
    scenario.write_text(yaml.safe_dump({
        "name": "drill container down",
        "time_limit": "10m",
        "alerts": [{"labels": {"alertname": "DrillWebDown", "severity": "critical",
                               "container": drill_box.name},
                    "annotations": {"summary": "<b>drill</b> down"}}],
        "expect": [{"step": "incident_opened", "within": "1m"},
                   {"step": "job_dry_run", "rule": "restart-web", "within": "2m"},
                   {"step": "acknowledged", "within": "5m"},
                   {"step": "job_succeeded", "rule": "restart-web", "within": "2m"}],
    }), encoding="utf-8")
    out = cli(config, env, "gameday", "start", str(scenario), "--alertmanager", am.url)
    gid = out.strip().splitlines()[-1]

    # A forged label naming no game day, posted straight to the same Alertmanager.
    am.post_alerts([{"labels": {"alertname": "ForgedWebDown", "severity": "critical",
                                "container": real_box.name, "gameday": "20260101-000000-dead"},
                     "annotations": {"summary": "forged"}}])

    def both_concluded() -> dict[str, dict[str, Any]] | None:
        found = incidents_by_alertname(receiver)
        if set(found) != {"DrillWebDown", "ForgedWebDown"}:
            return None
        states = {name: [j["state"] for j in d["jobs"]] for name, d in found.items()}
        if states["DrillWebDown"] == ["dry_run"] and states["ForgedWebDown"] == ["succeeded"]:
            return found
        return None

    found = wait_until(both_concluded, 60, "the drill's dry run and the forged alert's restart")
    drill, forged = found["DrillWebDown"], found["ForgedWebDown"]
    [alert] = drill["alerts"]
    assert alert["labels"]["gameday"] == gid
    dry = [e for e in drill["timeline"] if e["kind"] == "job_dry_run"]
    assert dry and dry[0]["detail"]["guard"] == "gameday"
    # The drill's container was not touched; the forged label's container really restarted.
    assert started_at(drill_box) == before[drill_box.name]
    assert started_at(real_box) != before[real_box.name]

    cli(config, env, "incident", "ack", str(drill["id"]))
    report = json.loads(cli(config, env, "gameday", "report", gid, "--json"))
    assert [i["id"] for i in report["incidents"]] == [drill["id"]]
    assert report["incidents"][0]["drill"] is True
    assert report["incidents"][0]["acknowledged_by"] == "user:drillmaster"
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["incident_opened"]["status"] == "met"
    assert steps["job_dry_run"]["status"] == "met"
    assert steps["acknowledged"]["status"] == "met"
    assert steps["job_succeeded"]["status"] == "pending"
    text = cli(config, env, "gameday", "report", gid)
    assert "[met] job_dry_run (restart-web)" in text

    # The figures count the forged (real) incident only.
    figures = json.loads(cli(config, env, "report", "--json"))
    assert sum(s["incidents"] for s in figures["by_severity"].values()) == 1, figures

    def metrics_settled() -> bool:
        m = receiver.metrics()
        return metric_sum(m, "remediator_incidents_total") == 1 and metric_sum(
            m, "remediator_time_to_acknowledge_seconds_count") == 0

    wait_until(metrics_settled, 20, "/metrics to count only the real incident")

    ended = cli(config, env, "gameday", "end", gid)
    assert "ended by user:drillmaster" in ended
    listed = cli(config, env, "gameday", "list")
    assert f"{gid} ended" in listed
    assert forged["id"] != drill["id"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_live_game_day_really_restarts_only_its_live_target(
        drill_receiver: tuple[Receiver, Path, dict[str, str]], start_alertmanager: Any,
        containers: tuple[Any, Any], tmp_path: Path, backend: str) -> None:
    """With live.targets naming one container, the drill's restart of that container really
    runs (and the incident is still a game-day incident, left out of the figures), while
    the same drill's alert on the other, allowlisted, container is planned in dry run."""
    receiver, config, env = drill_receiver
    live_box, other_box = containers
    am = start_alertmanager(receiver.webhook_url)
    before = {c.name: started_at(c) for c in containers}
    scenario = tmp_path / "live.yml"
    scenario.write_text(yaml.safe_dump({
        "name": "live drill",
        "time_limit": "10m",
        "alerts": [{"labels": {"alertname": "LiveDrillDown", "severity": "critical",
                               "container": live_box.name}},
                   {"labels": {"alertname": "OtherDrillDown", "severity": "critical",
                               "container": other_box.name}}],
        "expect": [{"step": "job_succeeded", "rule": "restart-web", "within": "2m"},
                   {"step": "mitigated", "within": "2m"}],
        "live": {"targets": [f"container:{live_box.name}"]},
    }), encoding="utf-8")
    gid = cli(config, env, "gameday", "start", str(scenario), "--alertmanager",
              am.url).strip().splitlines()[-1]

    def concluded() -> dict[str, list[str]] | None:
        found = incidents_by_alertname(receiver)
        states = {name: [j["state"] for j in d["jobs"]] for name, d in found.items()}
        done = states == {"LiveDrillDown": ["succeeded"], "OtherDrillDown": ["dry_run"]}
        return states if done else None

    wait_until(concluded, 60, "the live restart and the other alert's dry run")
    assert started_at(live_box) != before[live_box.name]
    assert started_at(other_box) == before[other_box.name]
    report = json.loads(cli(config, env, "gameday", "report", gid, "--json"))
    assert all(i["drill"] for i in report["incidents"]) and len(report["incidents"]) == 2
    assert {s["step"]: s["status"] for s in report["steps"]} == {
        "job_succeeded": "met", "mitigated": "met"}
    figures = json.loads(cli(config, env, "report", "--json"))
    assert sum(s["incidents"] for s in figures["by_severity"].values()) == 0
    assert figures["playbooks"] == {}  # the drill's restart is no playbook outcome
    cli(config, env, "gameday", "end", gid)
