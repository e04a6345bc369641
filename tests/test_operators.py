"""Operator identity from a trusted proxy; terminal approvals and incident commands; the
two-person default for restores; configuration loads in the audit log."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from receiver.app import create_app
from receiver.cli import main
from receiver.commands.identity import os_account
from receiver.people.approvals import required_approvers
from receiver.remediation import controls
from receiver.store import AuditFilter, Store
from tests.conftest import Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification


def proxy_kit(store: Store, clock: Clock, tmp_path: Path) -> Kit:
    ppl = people() | {"trusted_proxy": {"header": "X-Forwarded-User",
                                        "addresses": ["127.0.0.1/32"]}}
    kit = Kit(store, clock, [], people=ppl, data_dir=str(tmp_path),
              auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              server={"secure_cookies": False})
    kit.app = create_app(kit.config, store=store, clock=clock)
    return kit


def test_proxy_header_is_trusted_only_from_the_proxy(store: Store, clock: Clock,
                                                     tmp_path: Path) -> None:
    """The identity header logs a known user in from 127.0.0.1, and is ignored from
    another address or for an unknown user."""
    kit = proxy_kit(store, clock, tmp_path)
    c = kit.app.test_client()
    ok = c.get("/incidents", headers={"X-Forwarded-User": "bob"},
               environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert ok.status_code == 200 and "bob" in ok.get_data(as_text=True)
    api = c.get("/api/v1/incidents", headers={"X-Forwarded-User": "bob"},
                environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert api.status_code == 200
    spoofed = c.get("/incidents", headers={"X-Forwarded-User": "bob"},
                    environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert spoofed.status_code == 302 and "/login" in spoofed.headers["Location"]
    stranger = c.get("/incidents", headers={"X-Forwarded-User": "mallory"},
                     environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert stranger.status_code == 302


CLI_TOKENS = {"bob": "cli-bob-operator-token", "carol": "cli-carol-operator-token"}


def cli_people(os_person: str = "alice") -> dict[str, Any]:
    """people() with this test's OS account mapped to ``os_person`` and an operator token
    each for bob and carol (env REMEDIATOR_TEST_CLI_<NAME>)."""
    ppl = people()
    ppl["users"][os_person]["os_user"] = os_account()
    for name in CLI_TOKENS:
        ppl["api_tokens"][f"cli-{name}"] = {"token": f"env:REMEDIATOR_TEST_CLI_{name.upper()}",
                                           "user": name, "scope": "operator"}
    return ppl


@pytest.fixture(autouse=True)
def _cli_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CLI_TOKENS.items():
        monkeypatch.setenv(f"REMEDIATOR_TEST_CLI_{name.upper()}", value)
    monkeypatch.delenv("REMEDIATOR_TOKEN", raising=False)


def cli_config(store_url: str, tmp_path: Path, **extra: Any) -> str:
    data = {"store": {"url": store_url}, "data_dir": str(tmp_path), "people": cli_people(),
            "rules": [rule(approval={"mode": "required", "groups": ["dba"]})]}
    data.update(extra)
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_approve_and_deny_apply_the_same_checks(store: Store, store_url: str,
                                                    clock: Clock, tmp_path: Path) -> None:
    """approve --as a user outside the group is refused (exit 1); a dba approves; a second
    decision says it is no longer waiting."""
    cfg = cli_config(store_url, tmp_path)
    now = Clock(datetime.now(UTC))  # the CLI decides at the real time
    kit = Kit(store, now, [rule(approval={"mode": "required", "groups": ["dba"]})],
              people=people())
    kit.fire(make_notification([make_alert(labels={"container": "web1"})]))
    kit.drain()
    job = str(kit.jobs()[0]["id"])
    runner = CliRunner()
    refused = runner.invoke(main, ["approve", job, "--token", "env:REMEDIATOR_TEST_CLI_CAROL",
                                   "-c", cfg])
    assert refused.exit_code == 1 and "not in an approving group" in refused.output
    ok = runner.invoke(main, ["approve", job, "--as", "bob", "-c", cfg],
                       env={"REMEDIATOR_TOKEN": CLI_TOKENS["bob"]})
    assert ok.exit_code == 0 and "queued" in ok.output
    late = runner.invoke(main, ["deny", job, "--reason", "no", "-c", cfg])  # alice: OS account
    assert late.exit_code == 1 and "no longer waiting" in late.output
    approved = store.audit(AuditFilter(action="job.approved"))
    assert [e["actor"] for e in approved] == ["user:bob"]
    assert approved[0]["origin"] == {"via": "cli", "os_user": os_account(),
                                     "host": socket.gethostname(),
                                     "auth": "api-token:cli-bob"}


def test_cli_incident_commands(store: Store, store_url: str, clock: Clock,
                               tmp_path: Path) -> None:
    """ack, assign, note, resolve and close work from the terminal, as the named user."""
    cfg = cli_config(store_url, tmp_path, rules=[])
    kit = Kit(store, clock, [], people=people())
    inc = str(kit.fire(make_notification([make_alert(labels={"severity": "warning"})]))
              .incident_id)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["incident", *args, "-c", cfg])

    bob = ("--token", "env:REMEDIATOR_TEST_CLI_BOB")
    assert "acknowledged" in run("ack", inc, "--as", "alice").output
    assert "commander bob" in run("assign", inc, "--value", "bob").output
    assert run("note", inc, *bob, "--text", "looking").exit_code == 0
    assert "resolved" in run("resolve", inc, *bob, "--reason", "fixed").output
    assert "closed" in run("close", inc, *bob, "--as", "bob").output
    bad = run("close", "999", *bob)
    assert bad.exit_code == 1 and "no incident" in bad.output
    actors = {e["actor"] for e in store.audit(AuditFilter(incident_id=int(inc)))
              if e["actor"].startswith("user:")}
    assert actors == {"user:alice", "user:bob"}


def test_restore_needs_two_approvers_by_default(store: Store, clock: Clock) -> None:
    """A restore_database rule without an explicit count needs two approvers; one with
    approvers: 3 needs three."""
    from receiver.config import parse_config

    cfg = parse_config({"rules": [
        {"name": "restore", "playbook": "restore_database", "params": {"location": "x"}},
        {"name": "restore3", "playbook": "restore_database", "params": {"location": "x"},
         "approval": {"approvers": 3}},
    ]})
    assert required_approvers(cfg, "restore", "restore_database")[0] == 2
    assert required_approvers(cfg, "restore3", "restore_database")[0] == 3


def test_configuration_loads_are_audited(store: Store, clock: Clock, tmp_path: Path) -> None:
    """Each process start records the config file's path and sha256 in the audit log."""
    path = tmp_path / "remediator.yml"
    path.write_text("rules: []\n")
    first = controls.record_config_loaded(store, str(path), process="serve", now=clock())
    path.write_text("rules: []\n# changed\n")
    second = controls.record_config_loaded(store, str(path), process="worker", now=clock())
    entries = store.audit(AuditFilter(action="config.loaded"))
    assert [e["details"]["sha256"] for e in entries] == [first, second] and first != second


@pytest.mark.parametrize("user", ["", "a" * 101, "bob\nmallory"])
def test_cli_refuses_odd_user_names(store_url: str, tmp_path: Path, user: str) -> None:
    """--as must be one short line."""
    cfg = cli_config(store_url, tmp_path, rules=[])
    r = CliRunner().invoke(main, ["incident", "ack", "1", "--as", user, "-c", cfg])
    assert r.exit_code != 0
