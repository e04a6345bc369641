"""Remediation effectiveness on seeded runs, on both backends: ``remediator report`` (text
and ``--json``), ``/metrics`` and ``remediator rules`` give runs, verified, failed, undone,
recurred and the median time from the webhook to the verified fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from receiver.app import create_app
from receiver.cli import main
from receiver.commands.rules import as_text, rules_table
from receiver.config import Config
from receiver.people.approvals import decide_job
from receiver.remediation import undo
from receiver.remediation.effectiveness import EffectivenessCollector
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.test_autonomy import UndoableFake


def fire(kit: Kit, container: str, alertname: str = "AppDown") -> None:
    alert = make_alert(alertname=alertname, labels={"container": container,
                                                   "instance": container},
                       starts_at=kit.clock())
    kit.fire(make_notification([alert], group_key=f"g-{alertname}-{container}"))


def seed(kit: Kit) -> dict[str, int]:
    """poke: three verified runs (30 s, 90 s, 60 s from webhook to verified), the second's
    alert back 20 minutes later, the first undone by a person; poke-fail: one failed run."""
    ids: dict[str, int] = {}
    for name, wait in (("web1", 30), ("web2", 90)):
        fire(kit, name)
        kit.clock.advance(seconds=wait)
        kit.drain()
        ids[name] = kit.jobs()[-1]["id"]
    kit.clock.advance(minutes=20)
    fire(kit, "web2")  # a new episode of web2's alert: a recurrence
    kit.clock.advance(seconds=60)
    kit.drain()
    fire(kit, "db1", alertname="DbDown")
    kit.drain()
    undo.request(kit.store, ids["web1"], user="carol", reason="not needed", now=kit.clock(),
                 via="cli", registry=kit.registry)
    return ids


RULES = [rule(guards={"cooldown": "0s"}),
         rule("poke-fail", matchers=['alertname="DbDown"'],
              params={"target": "{{ labels.container }}", "fail": True})]


def expected_poke() -> dict[str, Any]:
    return {"runs": 3, "verified": 3, "failed": 0, "undone": 1, "recurred": 1,
            "median_to_verified_seconds": 60.0}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REMEDIATOR_WEBHOOK_TOKEN", "t" * 32)
    return CliRunner()


def test_report_gives_effectiveness_by_rule_and_playbook(store: Store, store_url: str,
                                                         clock: Clock, runner: CliRunner,
                                                         tmp_path: Path) -> None:
    """``remediator report --json`` and its text carry each rule's and playbook's figures."""
    kit = Kit(store, clock, RULES, playbook=UndoableFake())
    seed(kit)
    cfg = tmp_path / "r.yml"
    cfg.write_text(f"data_dir: {tmp_path}\nstore: {{url: '{store_url}'}}\n")
    out = runner.invoke(main, ["report", "-c", str(cfg), "--since", "3650d", "--json"])
    assert out.exit_code == 0, out.output
    eff = json.loads(out.output)["effectiveness"]
    assert eff["by_rule"]["poke"] == expected_poke()
    assert eff["by_rule"]["poke-fail"] == {"runs": 1, "verified": 0, "failed": 1, "undone": 0,
                                           "recurred": 0, "median_to_verified_seconds": None}
    assert eff["by_playbook"]["restart_container"]["runs"] == 4
    assert eff["by_playbook"]["restart_container"]["failed"] == 1
    text = runner.invoke(main, ["report", "-c", str(cfg), "--since", "3650d"]).output
    line = next(x for x in text.splitlines() if x.strip().startswith("poke "))
    assert line.split()[1:6] == ["3", "3", "0", "1", "1"] and line.split()[6] == "1m"


def test_metrics_serve_the_figures(store: Store, clock: Clock, web_config: Config) -> None:
    """/metrics has one gauge per figure by rule and by playbook, from the store."""
    kit = Kit(store, clock, RULES, playbook=UndoableFake())
    seed(kit)
    client = create_app(web_config, store=store, clock=clock).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    for line in ('remediator_rule_runs{rule="poke"} 3.0', 'remediator_rule_verified{rule="poke"} 3.0',
                 'remediator_rule_undone{rule="poke"} 1.0',
                 'remediator_rule_recurred{rule="poke"} 1.0',
                 'remediator_rule_failed{rule="poke-fail"} 1.0',
                 'remediator_rule_webhook_to_verified_median_seconds{rule="poke"} 60.0',
                 'remediator_playbook_runs{playbook="restart_container"} 4.0'):
        assert line in text, line


def test_rules_lists_mode_level_and_record(store: Store, clock: Clock) -> None:
    """``remediator rules``: each rule's approval mode, its level and its record; an earned
    rule's level follows its promotion."""
    earned = rule("earn", matchers=['alertname="Slow"'], guards={"cooldown": "0s"},
                  approval={"mode": "earned", "promote_after": 1})
    kit = Kit(store, clock, [*RULES, earned], playbook=UndoableFake())
    seed(kit)
    rows = {r["rule"]: r for r in rules_table(store, kit.config, clock())}
    assert rows["poke"]["mode"] == "risk"
    assert rows["poke"]["level"] == "needs approval when high risk"
    assert rows["poke"]["record"] == {k: v for k, v in expected_poke().items()
                                      if k != "median_to_verified_seconds"}
    assert rows["earn"]["level"] == "needs approval"
    assert rows["earn"]["earned"]["streak"] == []
    text = as_text(list(rows.values()))
    assert "poke (restart_container): approval risk, needs approval when high risk" in text
    assert "last 30d: 3 runs, 3 verified, 0 failed, 1 undone, 1 recurred" in text
    assert "earn (restart_container): approval earned, needs approval" in text
    assert "autonomy: 0 of 1 approved runs verified and stuck (recurrence 1h)" in text
    fire(kit, "s1", alertname="Slow")
    kit.drain()
    job = kit.jobs()[-1]["id"]
    decide_job(store, kit.config, job, approve=True, user="carol", reason="", now=clock())
    kit.drain()
    clock.advance(hours=2)
    assert rules_table(store, kit.config, clock())[-1]["earned"]["streak"] == [job]
    fire(kit, "s2", alertname="Slow")
    kit.drain()
    assert kit.jobs()[-1]["state"] == "succeeded"
    rows = {r["rule"]: r for r in rules_table(store, kit.config, clock())}
    assert rows["earn"]["level"] == "earned autonomy"
    assert "earn (restart_container): approval earned, earned autonomy" in as_text(
        list(rows.values()))
    gauges = {s.labels["rule"]: s.value
              for m in EffectivenessCollector(store, kit.config, clock).collect()
              if m.name == "remediator_rule_autonomous" for s in m.samples}
    assert gauges == {"earn": 1.0}


def test_rules_command_runs(runner: CliRunner, tmp_path: Path) -> None:
    """The command lists a configured rule on an empty store, text and JSON."""
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"""data_dir: {tmp_path}
store: {{url: 'sqlite:///c.db'}}
rules:
  - name: restart-web
    matchers: ['alertname="ContainerDown"']
    playbook: restart_container
    params: {{name: "{{{{ labels.container }}}}"}}
    approval: {{mode: earned, promote_after: 3}}
""")
    assert runner.invoke(main, ["migrate", "-c", str(cfg)]).exit_code == 0
    out = runner.invoke(main, ["rules", "-c", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "restart-web (restart_container): approval earned, needs approval" in out.output
    assert "0 of 3 approved runs" in out.output
    rows = json.loads(runner.invoke(main, ["rules", "-c", str(cfg), "--json"]).output)
    assert rows[0]["earned"]["promote_after"] == 3



