"""Earned autonomy on both backends: a rule with ``approval: {mode: earned}`` needs approval
until its approved runs verified and stuck, and needs it again after a setback.

The playbook is the engine kit's fake; the clock is moved by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playbooks.base import PlaybookContext, RunResult
from receiver.config import parse_config
from receiver.errors import ConfigError
from receiver.people.approvals import decide_job
from receiver.remediation import autonomy
from receiver.remediation.rules import ApprovalPolicy
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import TEST_CONFIG, FakeParams, FakePlaybook, Kit, rule
from tests.factories import make_alert, make_notification

EARNED = {"mode": "earned", "promote_after": 5, "window": "30d", "recurrence": "1h"}


def earned_rule(**approval: Any) -> dict[str, Any]:
    return rule(approval={**EARNED, **approval}, guards={"cooldown": "0s"})


def fire(kit: Kit, container: str, *, starts: Any = None) -> int:
    labels = {"container": container, "instance": container}
    alert = make_alert(labels=labels, starts_at=starts or kit.clock())
    return kit.fire(make_notification([alert], group_key=f"g-{container}")).incident_id


def last_job(kit: Kit) -> dict[str, Any]:
    return kit.job(kit.jobs()[-1]["id"])


def approved_run(kit: Kit, container: str, *, settle: timedelta = timedelta(hours=2)) -> int:
    """An alert, its job awaiting approval, approved, run and verified; then time passes."""
    inc = fire(kit, container)
    kit.drain()
    job = last_job(kit)
    assert job["state"] == "awaiting_approval", job
    kit.clock.advance(minutes=1)  # someone reads the plan and approves
    decide_job(kit.store, kit.config, job["id"], approve=True, user="carol", reason="",
               now=kit.clock())
    kit.drain()
    assert kit.job(job["id"])["state"] == "succeeded"
    kit.clock.advance(seconds=settle.total_seconds())
    return inc


def events(store: Store, kind: str) -> list[dict[str, Any]]:
    with store.db.transaction(write=False) as tx:
        return tx.fetchall("SELECT incident_id, kind, message, detail, job_id FROM"
                           " incident_events WHERE kind = :k ORDER BY id", {"k": kind})


def audit_actions(store: Store) -> list[str]:
    with store.db.transaction(write=False) as tx:
        return [r["action"] for r in tx.fetchall("SELECT action FROM audit_log ORDER BY id")]


def level(kit: Kit) -> str:
    with kit.store.unit(write=False) as uow:
        found = uow.autonomy.level("poke")
    return found.level if found else "approval"


def test_five_approved_sticking_runs_let_the_sixth_run_alone(store: Store, clock: Clock) -> None:
    """The first five jobs wait for approval; once all five verified and did not recur
    within an hour, the sixth runs without approval, and the promotion is on its incident's
    timeline and in the audit log with the five runs as evidence."""
    kit = Kit(store, clock, [earned_rule()])
    for i in range(5):
        approved_run(kit, f"web{i}")
    inc = fire(kit, "web5")
    kit.drain()
    sixth = last_job(kit)
    assert sixth["state"] == "succeeded" and sixth["approved_at"] is None
    promoted = events(store, "autonomy_promoted")
    assert len(promoted) == 1 and promoted[0]["incident_id"] == inc
    assert [r["job_id"] for r in promoted[0]["detail"]["runs"]] == [
        j["id"] for j in kit.jobs()[:5]]
    assert "job.autonomy_promoted" in audit_actions(store)
    assert level(kit) == "autonomous"


def test_runs_count_only_once_past_recurrence(store: Store, clock: Clock) -> None:
    """A fifth run that verified but whose recurrence window is still open does not count
    yet: the next job waits for approval, saying how many runs are still pending."""
    kit = Kit(store, clock, [earned_rule()])
    for i in range(4):
        approved_run(kit, f"web{i}")
    approved_run(kit, "web4", settle=timedelta(minutes=30))
    fire(kit, "web5")
    kit.drain()
    job = last_job(kit)
    assert job["state"] == "awaiting_approval"
    assert "4 of 5" in job["reason"] and "1 more verified" in job["reason"]


def test_a_failed_verification_demotes_at_once(store: Store, clock: Clock) -> None:
    """An autonomous rule whose job fails its verification needs approval for its next job;
    the demotion is audited and on the failing job's incident, naming the job."""
    kit = Kit(store, clock, [earned_rule(), rule("check", matchers=['alertname="Never"'])])
    for i in range(5):
        approved_run(kit, f"web{i}")
    fire(kit, "web5")
    kit.drain()
    assert level(kit) == "autonomous"
    kit.playbook.verify = lambda *_a: _failed()  # type: ignore[method-assign]
    bad_inc = fire(kit, "web6")
    kit.drain()
    bad = last_job(kit)
    assert bad["state"] == "failed" and level(kit) == "approval"
    demoted = events(store, "autonomy_demoted")
    assert len(demoted) == 1 and demoted[0]["incident_id"] == bad_inc
    assert demoted[0]["detail"]["cause"] == "verification_failed"
    assert demoted[0]["detail"]["job_id"] == bad["id"]
    assert "job.autonomy_demoted" in audit_actions(store)
    del kit.playbook.verify
    fire(kit, "web7")
    kit.drain()
    assert last_job(kit)["state"] == "awaiting_approval"


def _failed() -> Any:
    from playbooks.base import Verification

    return Verification(False, "still down")


def test_a_recurrence_within_the_window_demotes(store: Store, clock: Clock) -> None:
    """The alert of an autonomous rule's job fires again 20 minutes after it verified: the
    job for that new episode needs approval, and the demotion names the recurrence."""
    kit = Kit(store, clock, [earned_rule()])
    for i in range(5):
        approved_run(kit, f"web{i}")
    fire(kit, "web5")
    kit.drain()
    first = last_job(kit)
    assert first["state"] == "succeeded" and level(kit) == "autonomous"
    kit.clock.advance(minutes=20)
    again = fire(kit, "web5")  # a new episode: a later startsAt of the same alert
    kit.drain()
    job = last_job(kit)
    assert job["id"] != first["id"] and job["state"] == "awaiting_approval"
    demoted = events(store, "autonomy_demoted")
    assert len(demoted) == 1 and demoted[0]["detail"]["cause"] == "recurred"
    assert demoted[0]["detail"]["job_id"] == first["id"] and demoted[0]["incident_id"] == again


def test_a_recurrence_while_learning_restarts_the_count(store: Store, clock: Clock) -> None:
    """A run whose alert came back within the hour sets the count back: the runs before it
    no longer count, five runs after it are needed (and then suffice)."""
    kit = Kit(store, clock, [earned_rule()])
    for i in range(4):
        approved_run(kit, f"web{i}")
    approved_run(kit, "web4", settle=timedelta(minutes=10))
    approved_run(kit, "web4")  # the same alert again, 10 minutes after it verified
    setback = events(store, "autonomy_set_back")
    assert len(setback) == 1 and setback[0]["detail"]["cause"] == "recurred"
    for i in range(3):
        approved_run(kit, f"db{i}")
    fire(kit, "db8")
    kit.drain()
    job = last_job(kit)
    assert job["state"] == "awaiting_approval" and "4 of 5" in job["reason"]
    decide_job(store, kit.config, job["id"], approve=True, user="carol", reason="",
               now=clock())
    kit.drain()
    clock.advance(hours=2)
    fire(kit, "db9")
    kit.drain()
    assert last_job(kit)["state"] == "succeeded" and level(kit) == "autonomous"


def test_promotion_counts_only_runs_within_the_window(store: Store, clock: Clock) -> None:
    """Runs that verified longer ago than ``window`` do not count towards a promotion."""
    kit = Kit(store, clock, [earned_rule(window="1d")])
    for i in range(3):
        approved_run(kit, f"web{i}")
    clock.advance(days=1)
    for i in range(2):
        approved_run(kit, f"db{i}")
    fire(kit, "db9")
    kit.drain()
    job = last_job(kit)
    assert job["state"] == "awaiting_approval" and "2 of 5" in job["reason"]


class AlwaysApprove(FakePlaybook):
    def approval_required(self, params: FakeParams, ctx: PlaybookContext) -> str | None:
        return "a person must always approve this"


def test_a_playbook_that_always_needs_approval_is_never_promoted(store: Store,
                                                                 clock: Clock) -> None:
    """The playbook's own policy wins: after five sticking runs its jobs still wait."""
    kit = Kit(store, clock, [earned_rule()], playbook=AlwaysApprove())
    for i in range(6):
        approved_run(kit, f"web{i}")
    fire(kit, "web9")
    kit.drain()
    job = last_job(kit)
    assert job["state"] == "awaiting_approval" and "always approve" in job["reason"]
    assert events(store, "autonomy_promoted") == [] and level(kit) == "approval"


def test_high_risk_calls_are_waived_once_earned(store: Store, clock: Clock) -> None:
    """Earned autonomy waives what risk mode would have asked for (a high-risk call), but a
    per-severity ``required`` still needs approval."""
    params = {"target": "{{ labels.container }}", "risk": "high"}
    kit = Kit(store, clock, [{**earned_rule(per_severity={"P1": "required"}),
                              "params": params}])
    for i in range(5):
        fire_warning = make_alert(labels={"container": f"w{i}", "instance": f"w{i}",
                                          "severity": "warning"}, starts_at=clock())
        kit.fire(make_notification([fire_warning], group_key=f"g{i}"))
        kit.drain()
        job = last_job(kit)
        assert job["state"] == "awaiting_approval"
        decide_job(store, kit.config, job["id"], approve=True, user="c", reason="",
                   now=clock())
        kit.drain()
        clock.advance(hours=2)
    warn = make_alert(labels={"container": "w9", "instance": "w9", "severity": "warning"},
                      starts_at=clock())
    kit.fire(make_notification([warn], group_key="g9"))
    kit.drain()
    assert last_job(kit)["state"] == "succeeded"
    fire(kit, "crit")  # severity critical: P1, where the rule says required
    kit.drain()
    assert last_job(kit)["state"] == "awaiting_approval"


@dataclass
class UndoableFake(FakePlaybook):
    undoable = True  # type: ignore[misc]

    def undo(self, params: FakeParams, ctx: PlaybookContext, result: RunResult) -> RunResult:
        return RunResult(True, f"put {params.target} back", {})


def autonomous_kit(store: Store, clock: Clock, **over: Any) -> tuple[Kit, dict[str, Any]]:
    """An earned rule promoted by five runs; its sixth job, run alone."""
    kit = Kit(store, clock, [{**earned_rule(), **over}], playbook=UndoableFake())
    for i in range(5):
        approved_run(kit, f"web{i}")
    fire(kit, "web5")
    kit.drain()
    assert level(kit) == "autonomous"
    return kit, last_job(kit)


def test_an_undo_a_person_asks_for_demotes(store: Store, clock: Clock) -> None:
    """A person undoing an autonomous rule's job is a setback: the rule needs approval
    again, audited and on the job's incident (seen by the workers' chore at once)."""
    from receiver.remediation import undo

    kit, done = autonomous_kit(store, clock)
    undo.request(store, done["id"], user="carol", reason="made it worse", now=clock(),
                 via="cli", registry=kit.registry)
    assert autonomy.refresh(store, kit.config.rules, clock()) == 1
    assert level(kit) == "approval"
    demoted = events(store, "autonomy_demoted")
    assert demoted[0]["detail"]["cause"] == "undone" and demoted[0]["job_id"] == done["id"]
    assert autonomy.refresh(store, kit.config.rules, clock()) == 0  # recorded once


def test_a_scheduled_undo_does_not_demote(store: Store, clock: Clock) -> None:
    """``undo: {when: resolved}`` ending a temporary measure is no setback."""
    from receiver.remediation import undo

    kit, done = autonomous_kit(store, clock, undo={"when": "resolved", "after": "10m"})
    resolved = make_alert(labels={"container": "web5", "instance": "web5"}, status="resolved",
                          starts_at=clock(), ends_at=clock())  # the episode web5's job fixed
    kit.fire(make_notification([resolved], group_key="g-web5"))
    clock.advance(minutes=11)
    assert undo.run_due(store, kit.config, now=clock()) == 1
    assert autonomy.refresh(store, kit.config.rules, clock()) == 0
    assert level(kit) == "autonomous"


@pytest.mark.parametrize("approval, path", [
    ({"mode": "earned", "promote_after": 0}, "rules[0].approval.promote_after"),
    ({"mode": "earned", "window": "10m"}, "rules[0].approval.window"),
    ({"mode": "earned", "recurrence": "30d"}, "rules[0].approval.recurrence"),
    ({"mode": "earned", "window": "2h", "recurrence": "3h"}, "rules[0].approval"),
    ({"mode": "risk", "promote_after": 3}, "rules[0].approval"),
    ({"mode": "earnd"}, "rules[0].approval.mode"),
])
def test_bad_earned_settings_are_refused_with_the_field_path(approval: dict[str, Any],
                                                             path: str) -> None:
    """Each bad value is refused, naming the field under rules[0].approval."""
    with pytest.raises(ConfigError) as info:
        parse_config({**TEST_CONFIG, "rules": [rule(approval=approval)]},
                     registry={"restart_container": FakePlaybook()})
    assert path in [p for p, _ in info.value.problems]


def test_earned_defaults() -> None:
    """``mode: earned`` alone means 5 runs within 30 days, 1 hour of recurrence."""
    p = ApprovalPolicy.model_validate({"mode": "earned"})
    assert (p.promote_after, p.window, p.recurrence) == (5, timedelta(days=30),
                                                         timedelta(hours=1))


def test_incident_page_shows_the_promotion_and_the_demotion(
        store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """The incident whose job was the first to run alone shows the promotion with its
    evidence; the incident whose alert came back shows the demotion."""
    from receiver.app import create_app
    from tests.conftest import TOKEN, people
    from tests.test_pages import login

    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    kit = Kit(store, clock, [earned_rule()], people=people(),
              auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False})
    for i in range(5):
        approved_run(kit, f"web{i}")
    promoted_inc = fire(kit, "web5")
    kit.drain()
    first = last_job(kit)
    clock.advance(minutes=20)
    again = fire(kit, "web5")
    kit.drain()
    client = create_app(kit.config, store=store, clock=clock).test_client()
    login(client)
    page = client.get(f"/incidents/{promoted_inc}").get_data(as_text=True)
    assert "Earned autonomy" in page and f"job #{first['id']} and its next jobs" in page
    ids = ", ".join(f"#{j['id']}" for j in kit.jobs()[:5])
    assert ids in page
    other = client.get(f"/incidents/{again}").get_data(as_text=True)
    assert "Autonomy withdrawn" in other and "fired again 20m" in other


_T0 = Clock().now
_offsets = st.integers(min_value=0, max_value=60 * 24 * 60)  # minutes, about two months


@st.composite
def run_facts(draw: st.DrawFn, job_id: int) -> Any:
    from receiver.store.autonomy import RunFacts

    finished = _T0 + timedelta(minutes=draw(_offsets))
    maybe_at = st.none() | st.integers(min_value=1, max_value=600).map(
        lambda m: finished + timedelta(minutes=m))
    return RunFacts(job_id=job_id, rule="poke", playbook="restart_container", incident_id=1,
                    state=draw(st.sampled_from(["succeeded", "failed", "escalated"])),
                    approved_at=draw(st.none() | st.just(finished)),
                    started_at=finished, finished_at=finished, webhook_at=None,
                    verification_failed_at=draw(maybe_at), undone_at=draw(maybe_at),
                    next_episode_at=draw(maybe_at), next_episode_incident_id=None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(), max_size=25).flatmap(
    lambda xs: st.tuples(*(run_facts(i) for i in range(len(xs))))),
    st.integers(min_value=0, max_value=60 * 24 * 70))
def test_only_approved_verified_sticking_runs_in_the_window_count(runs: Any, at: int) -> None:
    """Whatever the runs, a counted run was approved, verified, never failed a verification
    nor was undone, finished within the window, and its alert did not come back within
    ``recurrence``, which has passed."""
    policy = ApprovalPolicy.model_validate(EARNED | {"window": "7d"})
    now = _T0 + timedelta(minutes=at)
    runs = [r for r in runs if r.finished_at <= now]
    st_ = autonomy.standing(policy, runs, None, now)
    for r in st_.streak:
        assert r.approved_at is not None and r.state == "succeeded"
        assert r.verification_failed_at is None and r.undone_at is None
        assert now - policy.window < r.finished_at <= now - policy.recurrence
        assert r.next_episode_at is None or r.next_episode_at > r.finished_at + policy.recurrence
