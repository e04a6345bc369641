"""The job engine on both backends: states, guards, approvals, retries, chains, leases.

The playbook here is a fake (pure engine logic); real playbooks are tested on real systems.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from receiver.audit.chain import verify_chain
from receiver.people.approvals import DecisionError, decide_job
from receiver.remediation import guards
from receiver.store import Store
from receiver.store import audit as audit_store
from receiver.store import jobs as job_store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification


def fire_web(kit: Kit, container: str = "web1", **alert_over: object) -> int:
    labels = {"container": container, "instance": container}
    labels.update(alert_over.pop("labels", {}))  # type: ignore[arg-type]
    r = kit.fire(make_notification([make_alert(labels=labels, **alert_over)],
                                   group_key=f"g-{container}"))
    return r.incident_id


def test_matching_alert_enqueues_one_job_that_runs_once(store: Store, clock: Clock) -> None:
    """A rule's job runs once, the incident becomes mitigated, and every step is on record."""
    kit = Kit(store, clock, [rule()])
    inc = fire_web(kit)
    fire_web(kit)  # a duplicate delivery adds no job
    assert kit.drain() == 1
    assert kit.playbook.calls == ["web1"]
    job = kit.jobs()[0]
    assert job["state"] == "succeeded"
    assert store.get_incident(inc)["state"] == "mitigated"
    kinds = kit.kinds(inc)
    for k in ("job_enqueued", "job_claimed", "job_started", "job_succeeded", "state_changed"):
        assert k in kinds
    # causes before effects: started before mitigating, succeeded before mitigated
    assert kinds.index("job_started") < kinds.index("state_changed")
    assert kinds.index("job_succeeded") < len(kinds) - 1 - kinds[::-1].index("state_changed")
    with store.db.transaction(write=False) as tx:
        assert verify_chain(audit_store.walk(tx)).ok


def test_kill_switch_blocks_and_says_who(store: Store, clock: Clock) -> None:
    """A global pause blocks the job with the pauser's name and reason; nothing runs."""
    kit = Kit(store, clock, [rule()])
    with store.db.transaction() as tx:
        job_store.set_control(tx, guards.PAUSED, "true", reason="db migration", actor="alice",
                              now=clock())
    fire_web(kit)
    kit.drain()
    job = kit.jobs()[0]
    assert job["state"] == "blocked" and "alice" in job["reason"] and "db migration" in job["reason"]
    assert kit.playbook.calls == []


def test_per_rule_kill_switch_blocks_only_that_rule(store: Store, clock: Clock) -> None:
    """Pausing one rule leaves another rule's job running."""
    other = rule("poke-too", matchers=['alertname="AppDown"'])
    kit = Kit(store, clock, [rule(), other])
    with store.db.transaction() as tx:
        job_store.set_control(tx, guards.rule_paused("poke"), "true", reason="flaky",
                              actor="bob", now=clock())
    fire_web(kit)
    kit.drain()
    states = {j["rule"]: j["state"] for j in kit.jobs()}
    assert states == {"poke": "blocked", "poke-too": "succeeded"}


def test_dry_run_records_the_plan_and_touches_nothing(store: Store, clock: Clock) -> None:
    """In shadow mode the exact plan is recorded and the playbook never runs."""
    kit = Kit(store, clock, [rule(guards={"dry_run": True})])
    fire_web(kit)
    kit.drain()
    job = kit.job(kit.jobs()[0]["id"])
    assert job["state"] == "dry_run" and job["plan"]["steps"] == ["poke web1"]
    assert kit.playbook.calls == []


def test_maintenance_window_blocks_inside_and_not_outside(store: Store, clock: Clock) -> None:
    """A recurring window blocks actions during it; the same job an hour later runs."""
    windows = [{"name": "nightly", "days": ["mon"], "start": "09:30", "end": "10:30"}]
    kit = Kit(store, clock, [rule()], remediation={"maintenance_windows": windows})
    fire_web(kit, "web1")  # Monday 10:00 UTC
    kit.drain()
    clock.advance(hours=1)
    fire_web(kit, "web2")
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["blocked", "succeeded"]
    assert "nightly" in kit.jobs()[0]["reason"]


def test_cooldown_blocks_a_second_action_on_the_same_target(store: Store, clock: Clock) -> None:
    """Within the cooldown the same rule may not act on the same target again; after, it may."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "10m"})])
    fire_web(kit, starts_at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    kit.drain()
    clock.advance(minutes=5)
    fire_web(kit, starts_at=datetime(2026, 1, 1, 12, 5, tzinfo=UTC))
    kit.drain()
    clock.advance(minutes=6)
    fire_web(kit, starts_at=datetime(2026, 1, 1, 12, 11, tzinfo=UTC))
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "blocked", "succeeded"]
    assert "cooldown" in kit.jobs()[1]["reason"]


def test_rate_budget_per_rule(store: Store, clock: Clock) -> None:
    """A rule with a budget of 2 per hour acts twice and is then blocked."""
    kit = Kit(store, clock, [rule(guards={"rate": {"max": 2, "per": "1h"}})])
    for c in ("a1", "a2", "a3"):
        fire_web(kit, c)
        kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded", "blocked"]
    assert "rate budget" in kit.jobs()[2]["reason"]


def test_global_rate_budget(store: Store, clock: Clock) -> None:
    """The global budget counts every rule's actions."""
    kit = Kit(store, clock, [rule()], remediation={"rate_budget": {"max": 1, "per": "1h"}})
    fire_web(kit, "b1")
    fire_web(kit, "b2")
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "blocked"]
    assert "global" in kit.jobs()[1]["reason"]


def test_blast_radius_per_job(store: Store, clock: Clock) -> None:
    """A job touching more targets than allowed is blocked before it runs."""
    kit = Kit(store, clock, [rule(params={"target": "{{ labels.container }}", "count": 6},
                                  guards={"blast_radius": {"max_targets_per_job": 5}})])
    fire_web(kit)
    kit.drain()
    job = kit.jobs()[0]
    assert job["state"] == "blocked" and "6 targets" in job["reason"]


def test_blast_radius_per_window(store: Store, clock: Clock) -> None:
    """The rule's targets per window add up across jobs."""
    g = {"blast_radius": {"max_targets_per_job": 5, "max_targets_per_window": 5}}
    kit = Kit(store, clock, [rule(params={"target": "{{ labels.container }}", "count": 3},
                                  guards=g)])
    fire_web(kit, "c1")
    fire_web(kit, "c2")
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "blocked"]


def test_high_risk_job_waits_for_approval_then_runs(store: Store, clock: Clock) -> None:
    """A high-risk job parks with its plan; an approval re-queues it and it runs once."""
    kit = Kit(store, clock, [rule(params={"target": "{{ labels.container }}", "risk": "high"})])
    fire_web(kit)
    kit.drain()
    job = kit.job(kit.jobs()[0]["id"])
    assert job["state"] == "awaiting_approval" and job["plan"]["summary"] == "poke web1"
    assert kit.playbook.calls == []
    assert decide_job(store, kit.config, job["id"], approve=True, user="carol", reason="",
                      now=clock()).state == "queued"
    with pytest.raises(DecisionError, match="no longer waiting"):  # single use
        decide_job(store, kit.config, job["id"], approve=False, user="dave", reason="late",
                   now=clock())
    kit.drain()
    assert kit.job(job["id"])["state"] == "succeeded" and kit.playbook.calls == ["web1"]


def test_denied_job_never_runs(store: Store, clock: Clock) -> None:
    """A denial is final and recorded with the reason."""
    kit = Kit(store, clock, [rule(approval={"mode": "required"})])
    fire_web(kit)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    decide_job(store, kit.config, job_id, approve=False, user="erin", reason="not now",
               now=clock())
    kit.drain()
    job = kit.job(job_id)
    assert job["state"] == "denied" and "not now" in job["reason"] and kit.playbook.calls == []


def test_approval_per_severity(store: Store, clock: Clock) -> None:
    """Approval can be required at P1 and automatic at P2."""
    kit = Kit(store, clock, [rule(approval={"mode": "auto", "per_severity": {"P1": "required"}})])
    fire_web(kit, "p1", labels={"severity": "critical"})
    fire_web(kit, "p2", labels={"severity": "warning"})
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["awaiting_approval", "succeeded"]


def test_pause_wins_over_an_earlier_approval(store: Store, clock: Clock) -> None:
    """An approved job is still blocked by a pause set after the approval."""
    kit = Kit(store, clock, [rule(approval={"mode": "required"})])
    fire_web(kit)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    decide_job(store, kit.config, job_id, approve=True, user="carol", reason="", now=clock())
    with store.db.transaction() as tx:
        job_store.set_control(tx, guards.PAUSED, "true", reason="freeze", actor="ops", now=clock())
    kit.drain()
    assert kit.job(job_id)["state"] == "blocked"


def test_label_naming_a_forbidden_target_is_refused(store: Store, clock: Clock) -> None:
    """A target outside the allowlist is refused, audited, and shown on the incident."""
    kit = Kit(store, clock, [rule()])
    inc = fire_web(kit, "forbidden-db")
    kit.drain()
    job = kit.jobs()[0]
    assert job["state"] == "refused" and "allowlist" in job["reason"]
    assert "job_refused" in kit.kinds(inc) and kit.playbook.calls == []
    with store.db.transaction(write=False) as tx:
        actions = [e["action"] for e in audit_store.walk(tx)]
    assert "job.refused" in actions


def test_hostile_label_fails_params_validation(store: Store, clock: Clock) -> None:
    """A label value like '$(reboot)' never passes the Params model."""
    kit = Kit(store, clock, [rule()])
    fire_web(kit, "$(reboot)")
    kit.drain()
    job = kit.jobs()[0]
    assert job["state"] == "refused" and "invalid params" in job["reason"]


def test_failure_escalates_and_trips_the_circuit_breaker(store: Store, clock: Clock) -> None:
    """K failures escalate each time and open the breaker: the next job needs approval."""
    r = rule(params={"target": "{{ labels.container }}", "fail": True},
             guards={"circuit_breaker": {"failures": 2, "window": "1h"}, "cooldown": "0s"})
    kit = Kit(store, clock, [r])
    incs = [fire_web(kit, f"d{i}") for i in range(3)]
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["failed", "failed", "awaiting_approval"]
    assert "escalated" in kit.kinds(incs[0])
    assert store.get_incident(incs[0])["state"] == "open"  # handed back to people
    assert "circuit_opened" in kit.kinds(incs[1])
    assert "circuit breaker" in kit.jobs()[2]["reason"]


def test_retry_with_backoff(store: Store, clock: Clock) -> None:
    """on_failure retry re-queues with growing delays, then fails for good."""
    r = rule(params={"target": "{{ labels.container }}", "fail": True},
             on_failure={"action": "retry", "retries": 2, "backoff": "30s"},
             guards={"cooldown": "0s"})
    kit = Kit(store, clock, [r])
    fire_web(kit)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    assert kit.job(job_id)["state"] == "queued"
    assert kit.job(job_id)["not_before"] == clock() + timedelta(seconds=30)
    assert kit.drain() == 0  # not due yet
    clock.advance(seconds=31)
    kit.drain()
    assert kit.job(job_id)["not_before"] == clock() + timedelta(seconds=60)
    clock.advance(seconds=61)
    kit.drain()
    assert kit.job(job_id)["state"] == "failed" and len(kit.playbook.calls) == 3


def test_failure_runs_the_next_rule(store: Store, clock: Clock) -> None:
    """restart fails -> the chained rule runs next, once."""
    first = rule(params={"target": "{{ labels.container }}", "fail": True},
                 on_failure={"action": "next", "next_rule": "fallback"})
    fallback = rule("fallback", params={"target": "fallback-{{ labels.container }}"},
                    chain_only=True)
    kit = Kit(store, clock, [first, fallback])
    inc = fire_web(kit)
    kit.drain()
    jobs = kit.jobs()
    assert [(j["rule"], j["state"]) for j in jobs] == [("poke", "failed"), ("fallback", "succeeded")]
    assert kit.playbook.calls == ["web1", "fallback-web1"]
    assert store.get_incident(inc)["state"] == "mitigated"


def test_expired_lease_requeues_an_idempotent_job(store: Store, clock: Clock) -> None:
    """A claimed job whose worker vanished is re-run when its playbook is idempotent."""
    kit = Kit(store, clock, [rule()])
    fire_web(kit)
    with store.db.transaction() as tx:
        job = job_store.claim(tx, worker="dead-worker", now=clock(), lease=timedelta(seconds=60))
    clock.advance(seconds=61)
    assert kit.worker.sweep() == [job["id"]]
    kit.drain()
    assert kit.job(job["id"])["state"] == "succeeded" and kit.playbook.calls == ["web1"]


def test_expired_lease_escalates_a_non_idempotent_job(store: Store, clock: Clock) -> None:
    """A non-idempotent job interrupted mid-run is escalated, never re-run."""
    kit = Kit(store, clock, [rule()])
    kit.playbook.idempotent = False
    inc = fire_web(kit)
    with store.db.transaction() as tx:
        job = job_store.claim(tx, worker="dead-worker", now=clock(), lease=timedelta(seconds=60))
        tx.execute("UPDATE jobs SET idempotent = 0 WHERE id = :id", {"id": job["id"]})
    clock.advance(seconds=61)
    kit.worker.sweep()
    kit.drain()
    assert kit.job(job["id"])["state"] == "escalated" and kit.playbook.calls == []
    assert "escalated" in kit.kinds(inc)


def test_two_workers_never_run_one_job_twice(store: Store, clock: Clock) -> None:
    """Two workers draining the same queue concurrently run each job exactly once."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"})])
    for i in range(20):
        fire_web(kit, f"x{i}")
    workers = [kit.worker, kit.new_worker("w2")]
    threads = [threading.Thread(target=lambda w=w: [None for _ in iter(w.run_once, False)])
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(kit.playbook.calls) == sorted(f"x{i}" for i in range(20))
    assert {j["state"] for j in kit.jobs()} == {"succeeded"}


def test_target_lock_serialises_jobs_on_one_target(store: Store, clock: Clock) -> None:
    """While one job holds a target, another job on it waits and runs after."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"})])
    kit.playbook.block = threading.Event()
    fire_web(kit)
    t = threading.Thread(target=kit.worker.run_once)
    t.start()
    assert kit.playbook.started.wait(10)
    other = kit.new_worker("w2")
    other.run_once()  # the second job finds the target locked and goes back to the queue
    second = kit.jobs()[1]
    assert second["state"] == "queued" and kit.playbook.calls == []
    kit.playbook.block.set()
    t.join()
    clock.advance(seconds=6)
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded"]


def test_verification_waits_for_the_alert_to_resolve(store: Store, clock: Clock) -> None:
    """With 'alert_resolved' verification, a job succeeds only once the alert has resolved."""
    r = rule(verify={"alert_resolved": {"within": "0s"}})
    kit = Kit(store, clock, [r])
    fire_web(kit)
    kit.drain()
    assert kit.jobs()[0]["state"] == "failed"
    assert "verification failed" in kit.jobs()[0]["reason"]


def test_two_person_rule_needs_two_distinct_approvers(store: Store, clock: Clock) -> None:
    """With approvers: 2, one person approving twice is refused; a second person releases it."""
    people = {"users": {"ann": {"groups": ["dba"]}, "ben": {"groups": ["dba"]},
                        "eve": {"groups": ["web"]}}}
    kit = Kit(store, clock, [rule(approval={"mode": "required", "approvers": 2,
                                            "groups": ["dba"]})], people=people)
    fire_web(kit)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    with pytest.raises(DecisionError, match="not in an approving group"):
        decide_job(store, kit.config, job_id, approve=True, user="eve", reason="", now=clock())
    assert decide_job(store, kit.config, job_id, approve=True, user="ann", reason="",
                      now=clock()).state == "awaiting_approval"
    with pytest.raises(DecisionError, match="already decided"):
        decide_job(store, kit.config, job_id, approve=True, user="ann", reason="", now=clock())
    assert decide_job(store, kit.config, job_id, approve=True, user="ben", reason="",
                      now=clock()).state == "queued"
    kit.drain()
    assert kit.job(job_id)["state"] == "succeeded"
    with store.db.transaction(write=False) as tx:
        refused = [e for e in audit_store.walk(tx) if e["action"] == "approval.refused"]
    assert [e["details"]["code"] for e in refused] == ["not_allowed", "already_voted"]


def test_unanswered_approval_expires_and_escalates(store: Store, clock: Clock) -> None:
    """Past its expiry an approval is expired, the job ends expired, the incident escalates."""
    kit = Kit(store, clock, [rule(approval={"mode": "required", "expires": "30m"})])
    inc = fire_web(kit)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    clock.advance(minutes=31)
    kit.worker.sweep()
    assert kit.job(job_id)["state"] == "expired"
    assert "escalated" in kit.kinds(inc)
    with pytest.raises(DecisionError, match="no longer waiting"):
        decide_job(store, kit.config, job_id, approve=True, user="x", reason="", now=clock())


def test_zero_cooldown_never_blocks_even_with_clock_skew(store: Store, clock: Clock) -> None:
    """With cooldown 0s, an action stamped slightly 'in the future' by another worker's
    clock does not block the next job on the same target."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"})])
    fire_web(kit, starts_at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    kit.drain()
    with store.db.transaction() as tx:
        tx.execute("UPDATE job_targets SET acted_at = :t", {"t": clock() + timedelta(seconds=2)})
    fire_web(kit, starts_at=datetime(2026, 1, 1, 12, 1, tzinfo=UTC))
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded"]


def test_waiting_for_a_target_is_on_the_timeline_once(store: Store, clock: Clock) -> None:
    """A job that finds its target locked says so once, naming the holder, and waits (for
    the release; a timed retry within two poll intervals is the fallback)."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"})])
    kit.playbook.block = threading.Event()
    inc = fire_web(kit)
    t = threading.Thread(target=kit.worker.run_once)
    t.start()
    assert kit.playbook.started.wait(10)
    other = kit.new_worker("w2")
    other.run_once()
    clock.advance(seconds=5)  # past the fallback retry
    assert not other.run_once()  # not claimed while the lock is live: no second event
    waiting = [e for e in kit.store.get_incident(inc)["timeline"] if e["kind"] == "job_waiting"]
    assert len(waiting) == 1 and "held by job #1" in waiting[0]["message"]
    second = kit.job(kit.jobs()[1]["id"])
    assert second["not_before"] - clock() <= 2 * kit.config.remediation.poll_interval
    kit.playbook.block.set()
    t.join()
    clock.advance(seconds=1)
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded"]
