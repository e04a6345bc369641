"""``remediator replay``: stored notifications judged by the current and a new config, on
both store backends; only what differs is printed, and nothing is written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from receiver.cli import main
from receiver.config import parse_config
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.store import Store
from tests.factories import make_alert, make_notification

RULES: list[dict[str, Any]] = [
    {"name": "restart-web", "matchers": ['alertname="ContainerDown"'],
     "playbook": "restart_container", "params": {"name": "{{ labels.container }}"}},
]
TARGETS = {"containers": {"patterns": ["web-*"]}}


def _config(tmp_path: Path, name: str, store_url: str, **changes: Any) -> Path:
    raw: dict[str, Any] = {"store": {"url": store_url}, "data_dir": str(tmp_path),
                           "rules": RULES, "targets": TARGETS}
    raw.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _ingest(store: Store, current: Path, alerts: list[dict[str, Any]], at: datetime) -> None:
    config = parse_config(yaml.safe_load(current.read_text()))
    body = json.dumps(make_notification(alerts))
    Intake(config, store, clock=lambda: at).accept(Notification.model_validate_json(body), body)


def _counts(store: Store) -> tuple[int, ...]:
    with store.db.transaction(write=False) as tx:
        return tuple(tx.fetchone(f"SELECT COUNT(*) AS n FROM {t}")["n"]  # noqa: S608
                     for t in ("notifications", "incidents", "jobs", "audit_log", "incident_events"))


def test_replay_prints_what_a_new_config_would_change(store: Store, store_url: str,
                                                     tmp_path: Path) -> None:
    current = _config(tmp_path, "current.yml", store_url)
    new = _config(
        tmp_path, "new.yml", store_url,
        severity={"label_map": {"warning": "P1", "critical": "P1"}},
        rules=[{**RULES[0], "approval": {"mode": "required"}},
               {"name": "restart-api", "matchers": ['alertname="ApiDown"'],
                "playbook": "restart_container", "params": {"name": "{{ labels.container }}"}}],
    )
    now = datetime.now(UTC)
    _ingest(store, current, [make_alert(alertname="ContainerDown",
                                        labels={"container": "web-1", "severity": "critical"})],
            now - timedelta(hours=2))
    _ingest(store, current, [make_alert(alertname="HighLatency",
                                        labels={"severity": "warning"})],
            now - timedelta(hours=1))
    _ingest(store, current, [make_alert(alertname="ApiDown",
                                        labels={"container": "web-api", "severity": "critical"})],
            now - timedelta(minutes=30))
    _ingest(store, current, [make_alert(alertname="Old", labels={"severity": "warning"})],
            now - timedelta(days=9))
    before = _counts(store)

    result = CliRunner().invoke(main, ["replay", "-c", str(new), "--current", str(current),
                                       "--since", "7d"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3 notifications since" in out  # the 9-day-old one is outside --since
    assert "3 would change" in out
    assert "severity P2 -> P1" in out  # HighLatency, by the new label_map
    assert ('~ job restart-web -> restart_container {"name": "web-1"} (automatic) -> '
            'restart-web -> restart_container {"name": "web-1"} (needs approval)') in out
    assert '+ job restart-api -> restart_container {"name": "web-api"} (automatic)' in out
    assert "jobs +1 -0, approval or allowlist 1" in out
    assert "Old" not in out
    assert _counts(store) == before  # read-only


def test_replay_with_the_same_config_changes_nothing(store: Store, store_url: str,
                                                     tmp_path: Path) -> None:
    current = _config(tmp_path, "current.yml", store_url)
    _ingest(store, current, [make_alert(alertname="ContainerDown",
                                        labels={"container": "web-1"})], datetime.now(UTC))
    result = CliRunner().invoke(main, ["replay", "-c", str(current), "--current",
                                       str(current)])
    assert result.exit_code == 0, result.output
    assert "1 notifications since" in result.output and "0 would change" in result.output
    assert "notification " not in result.output.split("\n")[0]


def test_judging_a_label_selector_allowlist_never_reaches_the_docker_daemon() -> None:
    """A container allowed only by a label selector could be decided only by asking Docker;
    replay judges it without asking (the daemon is a real local listener that records every
    connection)."""
    import socket
    import threading

    from receiver.configtest.replay import judge

    seen: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def accept() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        seen.append("connected")
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    config = parse_config({"rules": RULES, "targets": {
        "docker": {"base_url": f"tcp://127.0.0.1:{listener.getsockname()[1]}", "timeout_s": 2},
        "containers": {"labels": [{"tier": "web"}]}}})
    body = json.dumps(make_notification([make_alert(alertname="ContainerDown",
                                                    labels={"container": "web-1"})]))
    try:
        verdict = judge(config, Notification.model_validate_json(body))
    finally:
        listener.close()
        thread.join(5)
    assert seen == [], "replay connected to the configured Docker daemon"
    assert [j.rule for j in verdict.jobs] == ["restart-web"]


def test_replay_of_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    """A config whose SQLite store is not there (a wrong path) is refused, and no empty
    database is left at that path."""
    missing = tmp_path / "nowhere" / "remediator.db"
    missing.parent.mkdir()
    config = _config(tmp_path, "new.yml", f"sqlite:///{missing}")
    result = CliRunner().invoke(main, ["replay", "-c", str(config), "--current", str(config)])
    assert result.exit_code != 0
    assert "does not exist" in result.output
    assert not missing.exists()
