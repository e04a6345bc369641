"""``remediator gameday`` commands on a SQLite store: a refused Alertmanager URL records
nothing; an Alertmanager that takes nothing ends the game day at once; start and end are
audited. (The path through a real Alertmanager: tests/integration/test_gameday.py.)"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from receiver.cli import main
from receiver.store import open_store
from tests.conftest import ROOT
from tests.support import free_port

SCENARIO = ROOT / "examples" / "gamedays" / "web-down-dry-run.yml"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str, str]:
    monkeypatch.delenv("REMEDIATOR_TOKEN", raising=False)
    cfg: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "store": {"url": "sqlite:///remediator.db"},
        "people": {"users": {"drillmaster": {"os_user": pwd.getpwuid(os.geteuid()).pw_name}}},
        "targets": {"http": {"hosts": ["127.0.0.1:*"]}},
    }
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(main, ["migrate", "-c", str(path)]).exit_code == 0
    return runner, str(path), f"sqlite:///{tmp_path / 'data' / 'remediator.db'}"


def audit_actions(store_url: str) -> list[str]:
    store = open_store(store_url)
    try:
        with store.unit(write=False) as uow:
            return [e.action for e in uow.audit.walk() if e.action.startswith("gameday")]
    finally:
        store.close()


def test_an_alertmanager_outside_the_allowlist_is_refused_before_anything_is_recorded(
        setup: tuple[CliRunner, str, str]) -> None:
    runner, cfg, _ = setup
    r = runner.invoke(main, ["gameday", "start", str(SCENARIO), "-c", cfg,
                             "--alertmanager", "http://10.1.2.3:9093"])
    assert r.exit_code == 2
    assert "not in targets.http.hosts" in r.output
    assert "no game days" in runner.invoke(main, ["gameday", "list", "-c", cfg]).output


def test_a_bad_scenario_is_refused_with_its_field_paths(
        setup: tuple[CliRunner, str, str], tmp_path: Path) -> None:
    runner, cfg, _ = setup
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nalerts: [{labels: {severity: critical}}]\n", encoding="utf-8")
    r = runner.invoke(main, ["gameday", "start", str(bad), "-c", cfg,
                             "--alertmanager", "http://127.0.0.1:9"])
    assert r.exit_code == 1
    assert "alerts[0]: labels.alertname is required" in r.output


def test_an_unreachable_alertmanager_ends_the_game_day_at_once_and_it_is_audited(
        setup: tuple[CliRunner, str, str]) -> None:
    runner, cfg, store_url = setup
    closed = f"http://127.0.0.1:{free_port()}"
    r = runner.invoke(main, ["gameday", "start", str(SCENARIO), "-c", cfg,
                             "--alertmanager", closed])
    assert r.exit_code == 1
    assert "unreachable" in r.output and "no Alertmanager took its alerts" in r.output
    listed = runner.invoke(main, ["gameday", "list", "-c", cfg]).output
    assert " ended: web container down (dry run)" in listed
    assert audit_actions(store_url) == ["gameday_started", "gameday_ended"]
    gid = listed.split()[0]
    report = runner.invoke(main, ["gameday", "report", gid, "-c", cfg]).output
    assert "did not take the alerts" in report
    assert "[missed] incident_opened" in report
    again = runner.invoke(main, ["gameday", "end", gid, "-c", cfg])
    assert again.exit_code == 1 and "no running game day" in again.output
