"""remediator.yml validation: a bad file is refused with the path to each bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from receiver.config import load_config, parse_config
from receiver.errors import ConfigError
from tests.conftest import ROOT


def problems(data: object) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.yml")
    return dict(err.value.problems)


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """remediator.example.yml loads, with its severity rules and auth."""
    monkeypatch.setenv("REMEDIATOR_WEBHOOK_TOKEN", "t" * 32)
    config = load_config(ROOT / "remediator.example.yml")
    assert config.auth.configured and len(config.severity.rules) >= 3
    assert config.data_dir == (ROOT / "data").resolve()


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"severity": {"rules": [{"severity": "P1"}, {"match": {"severity": 3}, "severity": "P1"}]}},
         "severity.rules[1].match.severity", "valid string"),
        ({"severity": {"rules": [{"match_re": {"alertname": "(x"}, "severity": "P1"}]}},
         "severity.rules[0].match_re", "invalid regex"),
        ({"severity": {"rules": [{"matchers": ["no operator"], "severity": "P1"}]}},
         "severity.rules[0].matchers", "cannot parse matcher"),
        ({"severity": {"rules": [{"match": {}, "severity": "P7"}]}}, "severity.rules[0].severity", "P0"),
        ({"server": {"workers": 0}}, "server.workers", "greater than or equal to 1"),
        ({"server": {"bind": "nowhere"}}, "server.bind", "pattern"),
        ({"sla": {"P1": "soon"}}, "sla.P1", "invalid duration"),
        ({"sla": {"business_hours": {"timezone": "Mars/Olympus"}}}, "sla.business_hours.timezone", "unknown time zone"),
        ({"sla": {"business_hours": {"start": "18:00", "end": "09:00"}}}, "sla.business_hours", "start must be before end"),
        ({"auth": {"bearer_token": "plain-text-secret"}}, "auth.bearer_token", "env:NAME"),
        ({"auth": {"bearer_token": "env:SURELY_NOT_SET_ANYWHERE"}}, "auth.bearer_token", "not set"),
        ({"auth": {"basic": {"username": "a", "password": "file:/nonexistent/x"}}}, "auth.basic.password", "cannot read"),
        ({"store": {"url": "mysql://x"}}, "store.url", "must start with"),
        ({"incidents": {"key": {"by": "labels"}}}, "incidents.key", "non-empty"),
        ({"unknown_section": {}}, "unknown_section", "Extra inputs"),
        ({"rules": [{"name": "r1", "playbook": "restart_container", "params": {"x": "{{ labels.a | upper }}"}}]},
         "rules[0].params", "unsupported template"),
        ({"rules": [{"name": "r1", "playbook": "restart_container"}, {"name": "r2", "playbook": "x",
          "match": {"severity": ["critical"]}}]}, "rules[1].match.severity", "valid string"),
        ({"rules": [{"name": "Bad Name!", "playbook": "restart_container"}]}, "rules[0].name", "pattern"),
    ],
)
def test_bad_fields_are_named_by_path(data: dict, path: str, fragment: str) -> None:
    """Each invalid field is reported with its dotted/indexed path and a reason."""
    found = problems(data)
    assert path in found, found
    assert fragment in found[path]


def test_unknown_playbook_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule naming a playbook that does not exist is refused with the known ones listed."""
    found = problems({"rules": [{"name": "r", "playbook": "reboot_everything"}]})
    assert "restart_container" in found["rules[0].playbook"]


def test_secret_values_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolved secret shows its reference, not its value, in repr and dumps."""
    monkeypatch.setenv("TOK", "hunter2-very-secret")
    config = parse_config({"auth": {"bearer_token": "env:TOK"}})
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.model_dump())
    assert config.auth.bearer_token.reveal() == "hunter2-very-secret"


def test_secret_from_file(tmp_path: Path) -> None:
    """file: secrets are read and stripped of the trailing newline."""
    f = tmp_path / "tok"
    f.write_text("from-file\n")
    assert parse_config({"auth": {"bearer_token": f"file:{f}"}}).auth.bearer_token.reveal() == "from-file"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with its line."""
    f = tmp_path / "bad.yml"
    f.write_text("server:\n  bind: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert err.value.problems[0][0].startswith("line ")


def test_non_mapping_file_is_refused(tmp_path: Path) -> None:
    """A file holding a list instead of a mapping is refused."""
    f = tmp_path / "list.yml"
    f.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)
