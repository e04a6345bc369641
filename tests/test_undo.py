"""Undo jobs through the worker's pipeline, on both store backends: when a rule's ``undo``
queues one, that a job is undone at most once, that an undo is never undone automatically,
and that a playbook's refusal ends the undo ``refused``. The playbook is a fake with an
in-memory replica count (the real scale_service on the real Swarm is in
tests/playbooks/test_undo_swarm.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import Field

from playbooks.base import Plan, Playbook, PlaybookContext, Risk, RunResult, StrictParams
from playbooks.base import Verification as Check
from receiver.config import parse_config
from receiver.errors import ActionError, ConfigError, PlaybookError
from receiver.remediation import undo
from receiver.store import AuditFilter, Store
from tests.conftest import Clock
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification


class CountParams(StrictParams):
    target: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    step: int = Field(default=1, ge=1, le=5)
    verify_ok: bool = True


@dataclass
class FakeScale(Playbook[CountParams]):
    """Scales an in-memory count; undo puts the count back while it is what the run left.
    Named scale_service so that the built-in registry (the CLI's and the pages') finds an
    undoable playbook by that name."""

    name = "scale_service"
    Params = CountParams
    idempotent = True
    risk = Risk.LOW
    undoable = True
    counts: dict[str, int] = field(default_factory=dict)
    undone: list[str] = field(default_factory=list)
    undo_verifies: bool = True

    def targets(self, params: CountParams) -> list[str]:
        return [f"fake:{params.target}"]

    def check_allowed(self, params: CountParams, ctx: PlaybookContext) -> None:
        return None

    def plan(self, params: CountParams, ctx: PlaybookContext) -> Plan:
        return Plan(f"scale {params.target} by {params.step}", [], self.targets(params))

    def run(self, params: CountParams, ctx: PlaybookContext) -> RunResult:
        before = self.counts.get(params.target, 1)
        self.counts[params.target] = before + params.step
        return RunResult(True, f"{params.target}: {before} -> {before + params.step}",
                         {"before": before, "after": before + params.step})

    def verify(self, params: CountParams, ctx: PlaybookContext, result: RunResult) -> Check:
        if result.detail.get("undo"):
            return Check(self.undo_verifies, f"{params.target} back to {result.detail['after']}")
        return Check(params.verify_ok, f"{params.target} verified: {params.verify_ok}")

    def undo_plan(self, params: CountParams, ctx: PlaybookContext, result: RunResult) -> Plan:
        now, left = self.counts.get(params.target, 1), result.detail["after"]
        if now != left:
            raise PlaybookError(f"{params.target} has {now}, not the {left} the run left; it "
                                "changed since")
        return Plan(f"undo: back to {result.detail['before']}", [], self.targets(params))

    def undo(self, params: CountParams, ctx: PlaybookContext, result: RunResult) -> RunResult:
        self.undo_plan(params, ctx, result)
        self.counts[params.target] = result.detail["before"]
        self.undone.append(params.target)
        return RunResult(True, f"undo: {params.target} back to {result.detail['before']}",
                         {"undo": True, "after": result.detail["before"]})


def scale_rule(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "scale-up", "matchers": ['alertname="Slow"'], "playbook": "scale_service",
        "params": {"target": "web"}, "approval": {"mode": "auto"},
    }
    base.update(over)
    return base


def kit_for(store: Store, clock: Clock, **rule: Any) -> Kit:
    return Kit(store, clock, [scale_rule(**rule)], playbook=FakeScale())


def fire(kit: Kit, status: str = "firing") -> None:
    kit.fire(make_notification([make_alert(labels={"alertname": "Slow"}, status=status)],
                               group_key="g-slow"))


def timeline(kit: Kit) -> list[tuple[str, str]]:
    with kit.store.unit(write=False) as uow:
        inc = uow.incidents.detail(1)
    assert inc is not None
    return [(e.kind, e.message) for e in inc.timeline]


def audited(store: Store, action: str) -> list[Any]:
    with store.unit(write=False) as uow:
        return [e for e in uow.audit.query(AuditFilter(incident_id=1, limit=500))
                if e.action == action]


def fake(kit: Kit) -> FakeScale:
    assert isinstance(kit.playbook, FakeScale)
    return kit.playbook


def test_undo_needs_a_playbook_that_can_undo() -> None:
    """``undo`` on a rule whose playbook cannot undo is refused with the field's path."""
    rule = {"name": "r", "matchers": ['alertname="X"'], "playbook": "restart_container",
            "params": {"container": "web1"}, "undo": {"when": "verification_failed"}}
    with pytest.raises(ConfigError) as err:
        parse_config({"data_dir": "/tmp/remediator-test-data", "rules": [rule]})
    assert "rules[0].undo" in str(err.value) and "cannot be undone" in str(err.value)
    with pytest.raises(ConfigError, match=r"rules\[0\]\.undo: after is only for when: resolved"):
        parse_config({"data_dir": "/tmp/remediator-test-data", "rules": [
            {**rule, "playbook": "scale_service",
             "undo": {"when": "verification_failed", "after": "10m"}}]})


def test_resolved_for_ten_minutes_undoes_the_job_once(store: Store, clock: Clock) -> None:
    """``undo: {when: resolved, after: 10m}``: nothing before 10m, one undo after, none again;
    the count is back and the undo is on the timeline and in the audit log."""
    kit = kit_for(store, clock, undo={"when": "resolved", "after": "10m"})
    fire(kit)
    kit.drain()
    assert fake(kit).counts == {"web": 2}
    clock.advance(minutes=1)
    fire(kit, "resolved")
    assert undo.run_due(store, kit.config, now=clock.advance(minutes=9)) == 0
    assert kit.drain() == 0
    assert undo.run_due(store, kit.config, now=clock.advance(minutes=2)) == 1
    assert kit.drain() == 1
    assert fake(kit).counts == {"web": 1} and fake(kit).undone == ["web"]
    jobs = kit.jobs()
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    assert kit.job(2)["undoes_job_id"] == 1
    # never again, and never the undo itself
    assert undo.run_due(store, kit.config, now=clock.advance(minutes=30)) == 0
    assert kit.drain() == 0 and len(kit.jobs()) == 2
    kinds = [k for k, _ in timeline(kit)]
    assert "undo_requested" in kinds
    assert audited(store, "job.undo_requested")[0].actor == "system"
    with store.unit(write=False) as uow:
        inc = uow.incidents.head(1)
    assert inc is not None and inc.state == "resolved"  # the undo did not move the incident


def test_the_worker_chores_queue_the_undo(store: Store, clock: Clock) -> None:
    """The worker's chores run the rules' undo timers."""
    kit = kit_for(store, clock, undo={"when": "resolved", "after": "10m"})
    fire(kit)
    kit.drain()
    fire(kit, "resolved")
    clock.advance(minutes=11)
    kit.worker.chores()
    assert kit.drain() == 1
    assert fake(kit).counts == {"web": 1}


def test_verification_failed_queues_the_undo_then_escalates(store: Store,
                                                           clock: Clock) -> None:
    """A failed verification queues the undo first, then the on_failure path (escalate)
    goes on; the undo puts the count back."""
    kit = kit_for(store, clock, params={"target": "web", "verify_ok": False},
                  undo={"when": "verification_failed"})
    fire(kit)
    kit.drain()
    assert fake(kit).counts == {"web": 1}
    assert [(j["state"]) for j in kit.jobs()] == ["failed", "succeeded"]
    kinds = [k for k, _ in timeline(kit)]
    assert kinds.index("undo_requested") < kinds.index("job_failed") < kinds.index("escalated")
    started = [m for k, m in timeline(kit) if k == "job_started"]
    assert "undo of job #1" in started[-1]


def test_verification_failed_then_the_next_rule(store: Store, clock: Clock) -> None:
    """With ``on_failure: next`` the next rule's job is queued after the undo."""
    rules = [scale_rule(params={"target": "web", "verify_ok": False},
                        undo={"when": "verification_failed"},
                        on_failure={"action": "next", "next_rule": "scale-more"}),
             scale_rule(name="scale-more", chain_only=True, params={"target": "web", "step": 2})]
    kit = Kit(store, clock, rules, playbook=FakeScale())
    fire(kit)
    kit.drain()
    jobs = kit.jobs()
    assert [(j["rule"], j["state"]) for j in jobs] == [
        ("scale-up", "failed"), ("scale-up", "succeeded"), ("scale-more", "succeeded")]
    assert kit.job(2)["undoes_job_id"] == 1
    assert fake(kit).counts == {"web": 3}  # 1, +1, undone to 1, then +2


def test_a_failed_undo_is_never_undone(store: Store, clock: Clock) -> None:
    """An undo whose own verification fails ends failed and escalated; nothing undoes it."""
    kit = kit_for(store, clock, params={"target": "web", "verify_ok": False},
                  undo={"when": "verification_failed"})
    fake(kit).undo_verifies = False
    fire(kit)
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["failed", "failed"]
    assert undo.run_due(store, kit.config, now=clock.advance(hours=1)) == 0
    assert kit.drain() == 0 and len(kit.jobs()) == 2
    assert [m for k, m in timeline(kit) if k == "escalated"][-1].startswith(
        "escalated to a human: the undo of job #1 failed")


def test_an_undo_refuses_when_the_system_moved_on(store: Store, clock: Clock) -> None:
    """Someone changed the count after the run: the undo ends refused with the playbook's
    reason on the timeline, and the count is left alone."""
    kit = kit_for(store, clock)
    fire(kit)
    kit.drain()
    fake(kit).counts["web"] = 5
    undo.request(store, 1, user="alice", reason="", now=clock(), via="test")
    kit.drain()
    job = kit.job(2)
    assert job["state"] == "refused" and "changed since" in job["reason"]
    assert fake(kit).counts == {"web": 5}
    assert any(k == "job_refused" and "changed since" in m for k, m in timeline(kit))


def test_a_job_is_undone_at_most_once(store: Store, clock: Clock) -> None:
    """The second request is refused already_undone (409) and audited; an undo cannot be
    undone; an unknown job is not_found (404)."""
    kit = kit_for(store, clock)
    fire(kit)
    kit.drain()
    first = undo.request(store, 1, user="alice", reason="back", now=clock(), via="test")
    with pytest.raises(ActionError) as again:
        undo.request(store, 1, user="bob", reason="", now=clock(), via="test")
    assert (again.value.code, again.value.status) == ("already_undone", 409)
    assert f"job #{first.id}" in str(again.value)
    kit.drain()
    with pytest.raises(ActionError) as of_undo:
        undo.request(store, first.id, user="alice", reason="", now=clock(), via="test")
    assert of_undo.value.code == "not_undoable" and "itself an undo" in str(of_undo.value)
    with pytest.raises(ActionError) as missing:
        undo.request(store, 999, user="alice", reason="", now=clock(), via="test")
    assert missing.value.status == 404
    asked = audited(store, "job.undo_requested")
    assert [(e.actor, e.details["reason"]) for e in asked] == [("user:alice", "back")]
    refused = audited(store, "job.undo_refused")
    assert [(e.actor, e.details["code"]) for e in refused] == [
        ("user:bob", "already_undone"), ("user:alice", "not_undoable")]
    assert len(kit.jobs()) == 2


def test_an_undo_goes_through_the_approval_policy(store: Store, clock: Clock) -> None:
    """A rule that needs approval parks its undo for approval too."""
    kit = kit_for(store, clock)
    fire(kit)
    kit.drain()
    kit.config = parse_config({"data_dir": "/tmp/remediator-test-data", "rules": [
        scale_rule(approval={"mode": "required"})]}, registry=kit.registry)
    kit.worker = kit.new_worker("w2")
    undo.request(store, 1, user="alice", reason="", now=clock(), via="test")
    kit.drain()
    assert kit.job(2)["state"] == "awaiting_approval"
    assert kit.job(2)["plan"]["summary"] == "undo: back to 1"
    assert fake(kit).counts == {"web": 2}


def test_a_job_that_did_not_act_cannot_be_undone(store: Store, clock: Clock) -> None:
    """A job whose playbook failed, or that is still queued, is refused not_undoable."""
    kit = kit_for(store, clock, approval={"mode": "required"})
    fire(kit)
    kit.drain()
    with pytest.raises(ActionError, match="only a job that acted") as err:
        undo.request(store, 1, user="alice", reason="", now=clock(), via="test")
    assert err.value.status == 409
