"""The CLI acts as the person of the OS account (or of an operator API token it is given),
never as whoever ``--as`` names: one shell account can never cast two votes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from receiver.cli import main
from receiver.commands.identity import os_account
from receiver.config import parse_config
from receiver.errors import ConfigError
from receiver.store import AuditFilter, Store
from receiver.store import approvals as approval_store
from tests.conftest import Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

TOKENS = {"bob": "cli-identity-bob-token", "carol": "cli-identity-carol-token"}
TWO_DBAS = rule(approval={"mode": "required", "approvers": 2, "groups": ["dba"]})


@pytest.fixture(autouse=True)
def _tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RM_CLI_BOB", TOKENS["bob"])
    monkeypatch.setenv("RM_CLI_CAROL", TOKENS["carol"])
    monkeypatch.delenv("REMEDIATOR_TOKEN", raising=False)


def write_config(store_url: str, tmp_path: Path, os_person: str | None = "alice") -> str:
    ppl = people()
    if os_person is not None:
        ppl["users"][os_person]["os_user"] = os_account()
    ppl["api_tokens"]["bob-cli"] = {"token": "env:RM_CLI_BOB", "user": "bob",
                                    "scope": "operator"}
    ppl["api_tokens"]["carol-ro"] = {"token": "env:RM_CLI_CAROL", "user": "carol",
                                     "scope": "read"}
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump({"store": {"url": store_url}, "data_dir": str(tmp_path),
                                    "people": ppl, "rules": [TWO_DBAS]}))
    return str(path)


def parked_job(store: Store) -> int:
    kit = Kit(store, Clock(datetime.now(UTC)), [TWO_DBAS], people=people())
    kit.fire(make_notification([make_alert(labels={"container": "web1"})]))
    kit.drain()
    job_id: int = kit.jobs()[0]["id"]
    return job_id


def votes(store: Store, job_id: int) -> list[dict[str, Any]]:
    with store.db.transaction(write=False) as tx:
        approval = approval_store.for_job(tx, job_id)
        assert approval is not None
        return [dict(v) for v in approval_store.votes(tx, approval["id"])]


def run(cfg: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "-c", cfg], env=env)


def test_one_os_account_cannot_cast_two_votes(store: Store, store_url: str,
                                              tmp_path: Path) -> None:
    """The account votes as its person (alice); --as bob is refused; voting again is
    refused; and bob's own token used from the same account cannot add a second vote."""
    cfg = write_config(store_url, tmp_path)
    job = parked_job(store)
    first = run(cfg, "approve", str(job))
    assert first.exit_code == 0, first.output
    assert "approved by alice" in first.output
    as_bob = run(cfg, "approve", str(job), "--as", "bob")
    assert as_bob.exit_code == 2 and "does not match who you are: alice" in as_bob.output
    again = run(cfg, "approve", str(job))
    assert again.exit_code == 1 and "already decided" in again.output
    borrowed = run(cfg, "approve", str(job), env={"REMEDIATOR_TOKEN": TOKENS["bob"]})
    assert borrowed.exit_code != 0
    assert "already voted on this job as alice" in borrowed.output
    assert [v["approver"] for v in votes(store, job)] == ["alice"]
    assert votes(store, job)[0]["origin"]["os_user"] == os_account()
    assert store.get_incident(1)["jobs"][0]["state"] == "awaiting_approval"


def test_user_environment_variables_do_not_change_who_you_are(store: Store, store_url: str,
                                                              tmp_path: Path) -> None:
    """$USER and $LOGNAME are the caller's to set; the effective uid decides."""
    cfg = write_config(store_url, tmp_path)
    job = parked_job(store)
    r = run(cfg, "approve", str(job), env={"USER": "bob", "LOGNAME": "bob"})
    assert r.exit_code == 0 and "by alice" in r.output
    assert [v["approver"] for v in votes(store, job)] == ["alice"]


def test_a_token_votes_as_its_owner(store: Store, store_url: str, tmp_path: Path) -> None:
    """--token env:NAME / file:PATH acts as the token's owner and is audited as such; a
    read-only or unknown token cannot decide."""
    cfg = write_config(store_url, tmp_path, os_person=None)
    job = parked_job(store)
    ro = run(cfg, "approve", str(job), "--token", "env:RM_CLI_CAROL")
    assert ro.exit_code == 2 and "read-only" in ro.output
    unknown = run(cfg, "approve", str(job), env={"REMEDIATOR_TOKEN": "not-a-configured-token"})
    assert unknown.exit_code == 2 and "not one of people.api_tokens" in unknown.output
    secret = tmp_path / "bob.token"
    secret.write_text(TOKENS["bob"] + "\n")
    ok = run(cfg, "approve", str(job), "--token", f"file:{secret}", "--as", "bob")
    assert ok.exit_code == 0, ok.output
    entry = store.audit(AuditFilter(action="job.approved"))[0]
    assert entry["actor"] == "user:bob"
    assert entry["origin"]["auth"] == "api-token:bob-cli"
    assert TOKENS["bob"] not in str(store.audit(AuditFilter(limit=500)))


def test_an_unmapped_os_account_can_pause_but_not_decide(store: Store, store_url: str,
                                                          tmp_path: Path) -> None:
    """With no person for the OS account: approve, resume and incident actions are refused
    (exit 2, saying how to map it); the emergency pause works, audited as os:<account>."""
    cfg = write_config(store_url, tmp_path, os_person=None)
    job = parked_job(store)
    refused = run(cfg, "approve", str(job), "--as", "alice")
    assert refused.exit_code == 2 and f"os_user: {os_account()}" in refused.output
    assert run(cfg, "incident", "ack", "1").exit_code == 2
    paused = run(cfg, "pause", "--reason", "stop everything")
    assert paused.exit_code == 0, paused.output
    assert run(cfg, "resume").exit_code == 2
    entry = store.audit(AuditFilter(action="control.set"))[-1]
    assert entry["actor"] == f"os:{os_account()}"
    assert entry["origin"]["via"] == "cli" and entry["origin"]["auth"] == "os-account"
    assert votes(store, job) == []


def test_incident_commands_are_audited_with_the_os_account(store: Store, store_url: str,
                                                           tmp_path: Path) -> None:
    """incident ack acts as the mapped person; --as someone else is refused."""
    cfg = write_config(store_url, tmp_path, os_person="carol")
    parked_job(store)
    inc = "1"
    assert run(cfg, "incident", "ack", inc, "--as", "alice").exit_code == 2
    r = run(cfg, "incident", "ack", inc)
    assert r.exit_code == 0 and "commander carol" in r.output
    entry = [e for e in store.audit(AuditFilter(incident_id=1)) if e["actor"] == "user:carol"]
    assert entry and entry[0]["origin"]["os_user"] == os_account()


def test_one_os_account_maps_to_one_person() -> None:
    """Two people claiming the same OS account is a config error."""
    with pytest.raises(ConfigError, match="os_user 'ops' is given to both"):
        parse_config({"people": {"users": {"alice": {"os_user": "ops"},
                                           "bob": {"os_user": "ops"}}}})
    cfg = parse_config({"people": {"users": {"alice": {"os_user": "bob"}, "bob": {}}}})
    assert cfg.people.person_of_os_user("bob") == "alice"
    assert cfg.people.person_of_os_user("alice") is None
