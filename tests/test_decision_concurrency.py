"""Decisions and timers that race each other decide once.

The interleaved tests hold one transaction open on PostgreSQL (the first actor, not yet
committed) while a thread runs the second actor on another connection; the test waits until
PostgreSQL shows that second backend waiting for a lock, then commits the first. The second
must then see what the first did: refused with who decided and when, nothing of its own
recorded, no job moved twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from receiver.errors import InvalidTransition
from receiver.incidents import timers
from receiver.people import approvals
from receiver.people.approvals import DecisionError, decide_job
from receiver.store import Store, UnitOfWork
from receiver.store import approvals as approval_store
from receiver.store import incidents as incident_store
from receiver.store import jobs as job_store
from tests.conftest import Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

postgres_only = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


def parked_job(store: Store, clock: Clock, **rule_over: Any) -> tuple[Kit, int]:
    """A kit whose one job waits for approval."""
    kit = Kit(store, clock, [rule(approval={"mode": "required"}, **rule_over)])
    kit.fire(make_notification([make_alert(labels={"container": "web1"})], group_key="g"))
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    assert kit.job(job_id)["state"] == "awaiting_approval"
    return kit, job_id


class Second:
    """The second actor, run in a thread; keeps what it returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's assertions
            self.error = exc

    def start_and_wait_for_lock(self, store_url: str, timeout: float = 10.0) -> None:
        """Start the thread and return once its backend waits for a row lock (or it ended)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        with psycopg.connect(store_url, autocommit=True) as conn:
            while self.thread.is_alive() and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'").fetchone()
                if row and row[0] >= 1:
                    return
                time.sleep(0.01)
        assert not self.thread.is_alive(), "the second actor neither waited nor finished"

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the second actor hung"


def votes(store: Store, job_id: int) -> list[tuple[str, str]]:
    with store.db.transaction(write=False) as tx:
        approval = approval_store.for_job(tx, job_id)
        assert approval is not None
        return [(v["approver"], v["decision"]) for v in approval_store.votes(tx, approval["id"])]


def event_kinds(kit: Kit) -> Counter[str]:
    with kit.store.db.transaction(write=False) as tx:
        rows = tx.fetchall("SELECT kind FROM incident_events")
    return Counter(r["kind"] for r in rows)


@postgres_only
def test_late_approval_never_requeues_a_job_a_worker_has_claimed(store: Store, store_url: str,
                                                                 clock: Clock) -> None:
    """An approval that started while the job still waited, and got its locks only after
    another approval released the job and a worker claimed it, is refused with who decided;
    the job stays with its worker and only the first vote is recorded."""
    kit, job_id = parked_job(store, clock)
    second = Second(lambda: decide_job(store, kit.config, job_id, approve=True, user="bob",
                                       reason="", now=clock()))
    with store.db.transaction() as tx:
        approvals._decide(UnitOfWork(tx), kit.config, job_id, True, "ann", "", clock(), {})  # noqa: SLF001
        claimed = job_store.claim(tx, worker="w-run", now=clock(), lease=timedelta(minutes=1))
        assert claimed is not None and claimed["id"] == job_id
        second.start_and_wait_for_lock(store_url)
    second.join()
    assert isinstance(second.error, DecisionError), second.error or second.result
    assert second.error.code == "not_waiting" and "approved by ann at " in str(second.error)
    job = kit.job(job_id)
    assert job["state"] == "running" and job["lease_owner"] == "w-run"
    assert votes(store, job_id) == [("ann", "approve")]
    assert event_kinds(kit)["job_approved"] == 1


@postgres_only
def test_denial_racing_an_approval_is_refused_and_leaves_no_vote(store: Store, store_url: str,
                                                                 clock: Clock) -> None:
    """A denial waiting behind an approval is refused (409-worthy, not a crash); the job is
    queued once, no denial is on record."""
    kit, job_id = parked_job(store, clock)
    second = Second(lambda: decide_job(store, kit.config, job_id, approve=False, user="bob",
                                       reason="no", now=clock()))
    with store.db.transaction() as tx:
        approvals._decide(UnitOfWork(tx), kit.config, job_id, True, "ann", "", clock(), {})  # noqa: SLF001
        second.start_and_wait_for_lock(store_url)
    second.join()
    assert isinstance(second.error, DecisionError), second.error or second.result
    assert second.error.code == "not_waiting" and "by ann at " in str(second.error)
    assert kit.job(job_id)["state"] == "queued"
    assert votes(store, job_id) == [("ann", "approve")]
    kinds = event_kinds(kit)
    assert kinds["job_approved"] == 1 and kinds["job_denied"] == 0


@postgres_only
def test_approval_waiting_behind_the_expiry_is_refused(store: Store, store_url: str,
                                                       clock: Clock) -> None:
    """An approval that waits for the rows an expiry is changing is refused as expired by
    the system, and the expired job is not re-queued."""
    kit, job_id = parked_job(store, clock)
    second = Second(lambda: decide_job(store, kit.config, job_id, approve=True, user="bob",
                                       reason="", now=clock()))
    with store.db.transaction() as tx:
        approval = approval_store.for_job(tx, job_id)
        assert approval is not None
        assert job_store.move(tx, job_id, "expired", now=clock(), reason="approval expired")
        assert approval_store.close(tx, approval["id"], "expired", by="system", now=clock())
        second.start_and_wait_for_lock(store_url)
    second.join()
    assert isinstance(second.error, DecisionError), second.error or second.result
    assert second.error.code == "not_waiting" and "expired by system at " in str(second.error)
    assert kit.job(job_id)["state"] == "expired"
    assert votes(store, job_id) == []


def test_twenty_simultaneous_decisions_decide_once(store: Store, clock: Clock) -> None:
    """Twenty people deciding one job from twenty threads: one decision wins, nineteen are
    refused not_waiting naming the winner, one vote is recorded, nothing else is raised."""
    kit, job_id = parked_job(store, clock)
    start = threading.Barrier(20)
    outcomes: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        user = f"op{n:02d}"
        start.wait(10)
        try:
            got: Any = decide_job(store, kit.config, job_id, approve=n % 2 == 0, user=user,
                                  reason="race", now=clock()).state
        except DecisionError as exc:
            got = exc
        except Exception as exc:  # noqa: BLE001 - any other failure is what this test looks for
            got = ("crash", exc)
        with lock:
            outcomes.append((user, got))

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [(u, g) for u, g in outcomes if isinstance(g, str)]
    assert len(outcomes) == 20 and len(winners) == 1, outcomes
    (winner, state), = winners
    refused = [g for _, g in outcomes if isinstance(g, DecisionError)]
    assert len(refused) == 19, outcomes
    assert all(e.code == "not_waiting" and f"by {winner} at " in str(e) for e in refused)
    assert votes(store, job_id) == [(winner, "approve" if state == "queued" else "deny")]
    assert kit.job(job_id)["state"] == state
    kinds = event_kinds(kit)
    assert kinds["job_approved"] + kinds["job_denied"] == 1


def test_a_decision_never_moves_a_claimed_or_running_job(store: Store, clock: Clock) -> None:
    """The store's decide() moves a job only from awaiting_approval: a running job, or one
    back in the queue, is left alone; and no move without the lease owner touches a running
    job."""
    kit, job_id = parked_job(store, clock)
    with store.db.transaction() as tx:
        assert job_store.decide(tx, job_id, approve=True, actor="ann", reason="", now=clock())
        assert job_store.decide(tx, job_id, approve=True, actor="bob", reason="",
                                now=clock()) is None  # queued: not waiting any more
        assert job_store.claim(tx, worker="w1", now=clock(), lease=timedelta(minutes=1))
        for approve in (True, False):
            assert job_store.decide(tx, job_id, approve=approve, actor="bob", reason="x",
                                    now=clock()) is None
        assert job_store.move(tx, job_id, "queued", now=clock()) is None
        assert job_store.move(tx, job_id, "interrupted", now=clock()) is None
        assert job_store.move(tx, job_id, "queued", now=clock(), owner="w2") is None
    job = kit.job(job_id)
    assert job["state"] == "running" and job["lease_owner"] == "w1"


def test_move_refuses_a_from_state_the_table_does_not_allow(store: Store, clock: Clock) -> None:
    """Naming a from-state that the job state table does not allow is a bug, said at once."""
    kit, job_id = parked_job(store, clock)
    with store.db.transaction() as tx, pytest.raises(InvalidTransition):
        job_store.move(tx, job_id, "queued", now=clock(), from_states=("succeeded",))
    assert kit.job(job_id)["state"] == "awaiting_approval"


def test_worker_that_lost_its_lease_does_not_act(store: Store, clock: Clock) -> None:
    """A worker whose lease ran out while it planned (the job swept, re-queued and run by
    another worker) does not run the playbook a second time."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"})])
    kit.fire(make_notification([make_alert(labels={"container": "web1"})], group_key="g"))
    with store.unit() as uow:
        stale = uow.jobs.claim(worker="w-slow", now=clock(), lease=timedelta(seconds=60))
    assert stale is not None
    clock.advance(seconds=61)
    other = kit.new_worker("w-next")
    assert other.sweep() == [stale.id]  # interrupted, re-queued (idempotent)
    assert other.run_once()
    assert kit.playbook.calls == ["web1"]
    kit.new_worker("w-slow")._process(stale)  # noqa: SLF001 - the stale worker goes on
    assert kit.playbook.calls == ["web1"]
    assert event_kinds(kit)["job_started"] == 1
    with store.db.transaction(write=False) as tx:
        assert tx.fetchall("SELECT target FROM target_locks") == []


def test_breaker_opens_once(store: Store, clock: Clock) -> None:
    """Opening a breaker is one conditional upsert: the second opener learns it was open."""
    with store.db.transaction() as tx:
        assert job_store.set_control_unless(tx, "breaker:r", "open", reason="3 failures",
                                            actor="system", now=clock())
        assert not job_store.set_control_unless(tx, "breaker:r", "open", reason="4 failures",
                                                actor="system", now=clock())
        assert job_store.get_control(tx, "breaker:r")["reason"] == "3 failures"


CHAIN = {"P1": [{"name": "secondary-oncall", "channels": ["pager"]},
                {"name": "engineering-manager", "channels": ["mgr"], "after": "30m"}]}


@postgres_only
def test_escalation_waiting_behind_a_resolution_does_not_page(store: Store, store_url: str,
                                                              clock: Clock) -> None:
    """The next escalation level, found due just before a person resolved the incident and
    applied after, is not fired for the resolved incident."""
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN, "reminders": {}})
    inc = kit.fire(make_notification([make_alert()])).incident_id  # P1: ack due in 1h
    clock.advance(minutes=61)
    timers.run_due(store, kit.config, now=clock())
    clock.advance(minutes=31)  # level 2 is due
    second = Second(lambda: timers.run_due(store, kit.config, now=clock()))
    with store.db.transaction() as tx:
        incident_store.lock(tx, inc)
        assert incident_store.transition(tx, inc, "resolved", now=clock(), actor="user:alice")
        second.start_and_wait_for_lock(store_url)
    second.join()
    assert second.error is None, second.error
    assert event_kinds(kit)["escalated"] == 0
    assert store.get_incident(inc)["state"] == "resolved"


def test_one_os_account_counts_once_even_deciding_at_the_same_instant(
        store: Store, clock: Clock) -> None:
    """Two CLI votes from one OS account on one host, as two people (its own mapping and
    someone else's token), sent at once towards a two-person approval: the store counts one;
    the other is refused same_account, and the approval is still pending."""
    kit = Kit(store, clock, [rule(approval={"mode": "required", "approvers": 2})])
    kit.fire(make_notification([make_alert(labels={"container": "web1"})], group_key="g"))
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    assert kit.job(job_id)["state"] == "awaiting_approval"
    origin = {"via": "cli", "os_user": "deploy", "host": "ops-1", "auth": "os"}
    start = threading.Barrier(2)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def vote(user: str) -> None:
        start.wait(10)
        try:
            got: Any = decide_job(store, kit.config, job_id, approve=True, user=user,
                                  reason="ok", now=clock(), origin=origin).state
        except DecisionError as exc:
            got = exc
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=vote, args=(u,)) for u in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refused = [g for g in outcomes if isinstance(g, DecisionError)]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    assert refused[0].code == "same_account" and "deploy" in str(refused[0])
    assert len(votes(store, job_id)) == 1
    assert kit.job(job_id)["state"] == "awaiting_approval"
    other = decide_job(store, kit.config, job_id, approve=True, user="carol", reason="ok",
                       now=clock(), origin={"via": "cli", "os_user": "carol", "host": "ops-1"})
    assert other.state == "queued"  # a second account completes the two-person rule
