"""``remediator test``: the shipped example tests pass, a wrong expectation fails with a
readable diff and exit 1, a bad test file names the field, and nothing is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from receiver.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "tests"
ENV = {"REMEDIATOR_PG_MAIN_DSN": "postgresql://reporting@127.0.0.1:1/app",
       "REMEDIATOR_REDIS_CACHE_URL": "redis://127.0.0.1:1/0",
       "REMEDIATOR_WEBHOOK_TOKEN": "example-webhook-token"}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["test", *args], env=ENV)


def test_the_shipped_example_tests_pass() -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.test.yml"))
    assert len(files) >= 2
    result = run(*files)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    cases = sum(len(yaml.safe_load(Path(f).read_text())["cases"]) for f in files)
    assert f"{cases} passed, 0 failed" in result.output


def _suite(tmp_path: Path, cases: list[dict[str, object]], **extra: object) -> Path:
    config = tmp_path / "remediator.yml"
    config.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path}/live/remediator.db"},
        "data_dir": str(tmp_path / "live"),
        "rules": [{"name": "restart-web", "matchers": ['alertname="ContainerDown"'],
                   "playbook": "restart_container",
                   "params": {"name": "{{ labels.container }}"},
                   "guards": {"cooldown": "10m"}}],
        "targets": {"containers": {"patterns": ["web-*"]}},
    }))
    path = tmp_path / "case.test.yml"
    path.write_text(yaml.safe_dump({"config": "remediator.yml", "now": "2026-03-02T10:00:00Z",
                                    "cases": cases, **extra}))
    return path


def test_a_wrong_expectation_prints_each_difference_and_exits_1(tmp_path: Path) -> None:
    path = _suite(tmp_path, [{
        "name": "restart",
        "alerts": [{"labels": {"alertname": "ContainerDown", "container": "web-1",
                               "severity": "warning"}}],
        "expect": {"severity": "P0", "ack_due": "2026-03-02T10:15:00Z",
                   "jobs": [{"rule": "restart-web", "params": {"name": "web-2"},
                             "blocked_by": "cooldown"}]},
    }])
    result = run(str(path))
    assert result.exit_code == 1
    assert "FAIL" in result.output and "restart" in result.output
    assert "severity: expected P0, got P2" in result.output
    assert "ack_due: expected 2026-03-02T10:15:00Z, got 2026-03-02T14:00:00Z" in result.output
    assert "jobs[0] (restart-web).params: expected {'name': 'web-2'}, got {'name': 'web-1'}" \
        in result.output
    assert "jobs[0] (restart-web).blocked_by: expected 'cooldown', got 'none'" in result.output
    assert "0 passed, 1 failed" in result.output
    # nothing the config points at was created: the case ran on a throwaway store
    assert not (tmp_path / "live").exists()


def test_past_runs_in_the_state_trip_the_cooldown_only_for_their_target(tmp_path: Path) -> None:
    runs = [{"rule": "restart-web", "targets": ["container:web-1"], "ago": "5m"}]
    case = {"alerts": [{"labels": {"alertname": "ContainerDown", "container": "web-1"}}],
            "state": {"runs": runs}}
    path = _suite(tmp_path, [
        {**case, "name": "same target",
         "expect": {"jobs": [{"rule": "restart-web", "blocked_by": "cooldown"}]}},
        {**case, "name": "other target",
         "alerts": [{"labels": {"alertname": "ContainerDown", "container": "web-2"}}],
         "expect": {"jobs": [{"rule": "restart-web", "blocked_by": "none"}]}},
        {**case, "name": "long ago", "state": {"runs": [{**runs[0], "ago": "11m"}]},
         "expect": {"jobs": [{"rule": "restart-web", "blocked_by": "none"}]}},
    ])
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert "3 passed, 0 failed" in result.output


def test_a_bad_test_file_is_refused_with_the_path_of_the_field(tmp_path: Path) -> None:
    path = _suite(tmp_path, [{"name": "x", "alerts": [{"labels": {"alertname": "A"}}],
                              "expect": {"severity": "P9"}}])
    result = run(str(path))
    assert result.exit_code == 1
    assert "cases[0].expect.severity" in result.output
    both = _suite(tmp_path, [{"name": "x", "alerts": [], "notification": {},
                              "expect": {}}])
    result = run(str(both))
    assert result.exit_code == 1 and "either alerts or notification" in result.output


def test_a_notification_alertmanager_would_not_send_fails_the_case(tmp_path: Path) -> None:
    path = _suite(tmp_path, [{"name": "bad body", "notification": {"version": "4"},
                              "expect": {}}])
    result = run(str(path))
    assert result.exit_code == 1
    assert "the notification is not one Alertmanager sends" in result.output


@pytest.mark.parametrize("label", ["web-1; rm -rf /", "db", "*", "web-1\nweb-2", "../web-1"])
def test_a_hostile_label_never_makes_an_allowed_job(tmp_path: Path, label: str) -> None:
    path = _suite(tmp_path, [{
        "name": "hostile",
        "alerts": [{"labels": {"alertname": "ContainerDown", "container": label}}],
        "expect": {"jobs": [{"rule": "restart-web", "allowed": False}]},
    }])
    result = run(str(path))
    assert result.exit_code == 0, result.output


def test_a_label_selector_allowlist_never_reaches_the_docker_daemon(tmp_path: Path) -> None:
    """A container allowed only by a label selector can be decided only by asking Docker
    for its labels; ``remediator test`` says so instead of asking (the case's daemon is a
    real local listener that records every connection)."""
    import socket
    import threading

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
    port = listener.getsockname()[1]
    config = tmp_path / "remediator.yml"
    config.write_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path}/live/remediator.db"},
        "data_dir": str(tmp_path / "live"),
        "rules": [{"name": "restart-web", "matchers": ['alertname="ContainerDown"'],
                   "playbook": "restart_container",
                   "params": {"name": "{{ labels.container }}"}}],
        "targets": {"docker": {"base_url": f"tcp://127.0.0.1:{port}", "timeout_s": 2},
                    "containers": {"labels": [{"tier": "web"}]}},
    }))
    path = tmp_path / "case.test.yml"
    path.write_text(yaml.safe_dump({"config": "remediator.yml", "now": "2026-03-02T10:00:00Z",
                                    "cases": [{"name": "by label", "alerts": [{"labels": {
                                        "alertname": "ContainerDown", "container": "web-1"}}],
                                        "expect": {}}]}))
    try:
        result = run(str(path))
    finally:
        listener.close()
        thread.join(5)
    assert seen == [], "remediator test connected to the configured Docker daemon"
    assert result.exit_code == 0, result.output
