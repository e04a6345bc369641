"""The command line: check-config, simulate, migrate, and serve's refusal without auth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.store import open_store
from tests.conftest import ROOT
from tests.factories import make_alert, make_notification


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REMEDIATOR_WEBHOOK_TOKEN", "t" * 32)
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_config_accepts_the_example(runner: CliRunner) -> None:
    """check-config exits 0 on the shipped example."""
    r = runner.invoke(main, ["check-config", str(ROOT / "remediator.example.yml")])
    assert r.exit_code == 0 and "ok" in r.output


def test_check_config_names_each_bad_field_and_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    """A bad config exits 1 and prints the path to each bad field."""
    cfg = write(tmp_path, "bad.yml",
                "severity:\n  rules:\n    - {severity: P1}\n    - {match: {severity: [a]}, severity: P9}\n"
                "server: {workers: -1}\n")
    r = runner.invoke(main, ["check-config", cfg])
    assert r.exit_code == 1
    assert "severity.rules[1].match.severity:" in r.output
    assert "severity.rules[1].severity:" in r.output
    assert "server.workers:" in r.output


def test_simulate_prints_severity_key_and_rules(runner: CliRunner, tmp_path: Path) -> None:
    """simulate shows severity, incident key and matching rules, and touches no store."""
    cfg = write(tmp_path, "r.yml", f"""
data_dir: {tmp_path}/data
store: {{url: "sqlite:///never.db"}}
rules:
  - name: restart-web
    matchers: ['alertname="AppDown"']
    playbook: restart_container
    params: {{container: "{{{{ labels.container }}}}"}}
""")
    payload = write(tmp_path, "p.json", json.dumps(make_notification(
        [make_alert(labels={"container": "web1"}), make_alert(alertname="Other", labels={"severity": "info"})])))
    r = runner.invoke(main, ["simulate", "-c", cfg, payload, "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["severity"] == "P1" and report["incident_key"].startswith("remediator|")
    by_name = {a["alertname"]: a for a in report["alerts"]}
    assert by_name["AppDown"]["rules"][0]["params"] == {"container": "web1"}
    assert by_name["Other"]["rules"] == [] and by_name["Other"]["severity"] == "P3"
    text = runner.invoke(main, ["simulate", "-c", cfg, payload])
    assert "rule restart-web -> restart_container" in text.output
    assert not (tmp_path / "data" / "never.db").exists()


def test_simulate_reports_a_missing_label(runner: CliRunner, tmp_path: Path) -> None:
    """A rule whose template names a label the alert lacks is shown with the error."""
    cfg = write(tmp_path, "r.yml", """
rules:
  - name: restart-web
    playbook: restart_container
    params: {container: "{{ labels.container }}"}
""")
    payload = write(tmp_path, "p.json", json.dumps(make_notification()))
    report = json.loads(runner.invoke(main, ["simulate", "-c", cfg, payload, "--json"]).output)
    assert "no label 'container'" in report["alerts"][0]["rules"][0]["error"]


def test_simulate_rejects_an_invalid_payload(runner: CliRunner, tmp_path: Path) -> None:
    """An invalid payload exits 1 naming the field."""
    cfg = write(tmp_path, "r.yml", "{}\n")
    payload = write(tmp_path, "p.json", json.dumps(make_notification(version="3")))
    r = runner.invoke(main, ["simulate", "-c", cfg, payload])
    assert r.exit_code == 1 and "version:" in r.output


def test_migrate_applies_then_reports_up_to_date(runner: CliRunner, tmp_path: Path) -> None:
    """migrate applies the schema once; a second run has nothing to do."""
    cfg = write(tmp_path, "m.yml", f"data_dir: {tmp_path}\nstore: {{url: 'sqlite:///m.db'}}\n")
    first = runner.invoke(main, ["migrate", "-c", cfg])
    second = runner.invoke(main, ["migrate", "-c", cfg])
    assert "applied: 0001_init" in first.output and "up to date" in second.output
    assert open_store(f"sqlite:///{tmp_path}/m.db").pending_migrations() == []


def test_serve_refuses_to_start_without_auth(runner: CliRunner, tmp_path: Path) -> None:
    """serve exits 2 when no auth is configured and --insecure-no-auth is not given."""
    cfg = write(tmp_path, "s.yml", f"data_dir: {tmp_path}\n")
    r = runner.invoke(main, ["serve", "-c", cfg])
    assert r.exit_code == 2 and "--insecure-no-auth" in r.output


def test_simulate_checks_params_and_allowlist(runner: CliRunner, tmp_path: Path) -> None:
    """simulate says whether each job would be allowed, refused by Params, or by the allowlist."""
    cfg = write(tmp_path, "r.yml", """
rules:
  - name: restart-web
    matchers: ['alertname="AppDown"']
    playbook: restart_container
    params: {name: "{{ labels.container }}"}
targets:
  containers: {names: [web1]}
""")
    alerts = [make_alert(labels={"container": c, "instance": c})
              for c in ("web1", "db1", "$(reboot)")]
    payload = write(tmp_path, "p.json", json.dumps(make_notification(alerts)))
    report = json.loads(runner.invoke(main, ["simulate", "-c", cfg, payload, "--json"]).output)
    checks = {a["rules"][0]["params"]["name"]: a["rules"][0]["check"] for a in report["alerts"]}
    assert checks["web1"].startswith("allowed; targets container:web1")
    assert checks["db1"].startswith("refused: target not allowed")
    assert checks["$(reboot)"].startswith("refused: invalid params")
