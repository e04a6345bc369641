"""check-config and simulate say what a flush_cache rule may do under key_prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from tests.factories import make_alert, make_notification
from tests.playbooks.conftest import REDIS_URL_ENV

CONFIG = """
data_dir: {tmp}/data
store: {{url: "sqlite:///never.db"}}
rules:
  - name: flush-tmp
    match: {{alertname: TmpStale}}
    playbook: flush_cache
    params: {{target: cache, pattern: "tmp:*"}}
  - name: flush-sessions
    match: {{alertname: SessionStale}}
    playbook: flush_cache
    params: {{target: cache, pattern: "session:*"}}
  - name: flush-label
    match: {{alertname: CacheStale}}
    playbook: flush_cache
    params: {{target: cache, pattern: "{{{{ labels.keys }}}}"}}
targets:
  redis:
    cache: {{url: "env:{env}", dbs: [0], key_prefixes: ["session:", "cache:"]}}
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "r.yml"
    path.write_text(CONFIG.format(tmp=tmp_path, env=REDIS_URL_ENV))
    return str(path)


def rule_line(output: str, rule: str) -> str:
    return next(line for line in output.splitlines() if f"rule {rule} " in line)


def test_check_config_says_a_literal_pattern_outside_key_prefixes_needs_approval(
    config: str,
) -> None:
    """check-config reviews each literal rule: outside key_prefixes needs approval (and says
    why), inside is low risk, a templated pattern is checked per alert."""
    r = CliRunner().invoke(main, ["check-config", config])
    assert r.exit_code == 0, r.output
    tmp = rule_line(r.output, "flush-tmp")
    assert "needs approval" in tmp and "key_prefixes" in tmp and "risk high" in tmp
    assert "risk low" in rule_line(r.output, "flush-sessions")
    assert "needs approval" not in rule_line(r.output, "flush-sessions")
    assert "checked for each alert" in rule_line(r.output, "flush-label")


def test_simulate_refuses_a_hostile_label_pattern_and_flags_a_literal_one(
    config: str, tmp_path: Path
) -> None:
    """simulate: `[^~]*` from a label is refused, `cache:user:*` is low risk, and the literal
    `tmp:*` needs approval."""
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(make_notification([
        make_alert(alertname="CacheStale", labels={"keys": "[^~]*"}),
        make_alert(alertname="CacheStale", labels={"keys": "cache:user:*", "instance": "b"}),
        make_alert(alertname="TmpStale"),
    ])))
    r = CliRunner().invoke(main, ["simulate", "-c", config, str(payload), "--json"])
    assert r.exit_code == 0, r.output
    checks = {
        (rule["rule"], rule["params"]["pattern"]): rule["check"]
        for alert in json.loads(r.output)["alerts"]
        for rule in alert["rules"]
    }
    assert checks[("flush-label", "[^~]*")].startswith("refused: target not allowed")
    assert "risk low" in checks[("flush-label", "cache:user:*")]
    assert "needs approval" in checks[("flush-tmp", "tmp:*")]
