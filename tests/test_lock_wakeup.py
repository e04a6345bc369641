"""A job waiting for a target lock runs as soon as the lock is released, on both backends.

The clock is not moved between the release and the next claim: the waiting job must be
runnable at once, not at its timed retry. The retry stays a fallback, and only a wait for the
released target is cut short (not another target's, nor a retry's backoff).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from receiver.store import Store
from receiver.store import jobs as job_store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification


def fire(kit: Kit, container: str, group: str) -> int:
    labels = {"container": container, "instance": container}
    r = kit.fire(make_notification([make_alert(labels=labels)], group_key=group))
    return int(r.incident_id)


def holding(kit: Kit) -> threading.Thread:
    """Job #1 running in a thread, its playbook blocked until ``kit.playbook.block`` is set."""
    kit.playbook.block = threading.Event()
    t = threading.Thread(target=kit.worker.run_once)
    t.start()
    assert kit.playbook.started.wait(10)
    return t


def two_jobs_on_one_target(store: Store, clock: Clock) -> Kit:
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"})])
    fire(kit, "web1", "g-web1")  # one alert, two rules: two jobs on fake:web1
    return kit


def test_release_makes_the_waiting_job_runnable_at_once(store: Store, clock: Clock) -> None:
    kit = two_jobs_on_one_target(store, clock)
    t = holding(kit)
    other = kit.new_worker("w2")
    assert other.run_once()  # claims job #2, finds fake:web1 held, puts it back to wait
    waiter = kit.jobs()[1]["id"]
    row = kit.job(waiter)
    assert row["state"] == "queued" and row["not_before"] > clock()
    assert not other.run_once()  # nothing runnable while the lock is held

    kit.playbook.block.set()  # type: ignore[union-attr]
    t.join()
    assert kit.job(1)["state"] == "succeeded"
    assert kit.job(waiter)["not_before"] is None  # released in job #1's last commit
    assert other.run_once()  # same instant: no retry delay
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded"]


def test_release_wakes_only_waits_for_the_released_target(store: Store, clock: Clock) -> None:
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"})])
    fire(kit, "web1", "g-web1")
    t = holding(kit)  # job #1 holds fake:web1
    other = kit.new_worker("w2")
    assert other.run_once()  # job #2 waits for fake:web1
    # A job queued for its retry after a backoff, and one waiting for another target.
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET not_before = :t WHERE id = 2",
                   {"t": clock() + timedelta(hours=1)})
        backoff = tx.fetchone("SELECT not_before FROM jobs WHERE id = 2")
        tx.execute("INSERT INTO target_locks (target, job_id, expires_at) VALUES"
                   " ('fake:other', 99, :t)", {"t": clock() + timedelta(hours=1)})
    fire(kit, "other", "g-other")  # jobs #3 and #4 on fake:other
    assert other.run_once()  # job #3 waits for fake:other (held by "job #99")
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET waiting_for = NULL WHERE id = 2")  # now a plain retry
        rows = {r["id"]: r for r in tx.fetchall(
            "SELECT id, state, not_before, waiting_for FROM jobs ORDER BY id")}
    assert rows[3]["state"] == "queued" and rows[3]["waiting_for"] == "fake:other"

    kit.playbook.block.set()  # type: ignore[union-attr]
    t.join()  # job #1 releases fake:web1
    assert kit.job(2)["not_before"] == backoff["not_before"]  # type: ignore[index]
    assert kit.job(3)["not_before"] is not None and kit.job(3)["not_before"] > clock()

    with store.db.transaction() as tx:
        job_store.release_locks(tx, 99)
    assert kit.job(3)["not_before"] is None


def test_a_wait_never_outlasts_the_held_lock(store: Store, clock: Clock) -> None:
    """The timed retry is at the latest when the holder's lock expires (a holder that died
    loses its lock then); while the lock is live the waiting job is not claimed, even past
    its retry time; a second wait for the same target is not said again."""
    kit = two_jobs_on_one_target(store, clock)
    t = holding(kit)
    with store.db.transaction() as tx:
        tx.execute("UPDATE target_locks SET expires_at = :t",
                   {"t": clock() + timedelta(milliseconds=300)})
    other = kit.new_worker("w2")
    assert other.run_once()
    assert kit.job(2)["not_before"] == clock() + timedelta(milliseconds=300)
    with store.db.transaction() as tx:  # the holder renews its lease (and lock)
        tx.execute("UPDATE target_locks SET expires_at = :t",
                   {"t": clock() + timedelta(seconds=30)})
    clock.advance(seconds=1)
    assert not other.run_once()  # past its retry time, but the lock is live
    # A job that still finds the target held (it lost a race for it) waits again, unsaid.
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET state = 'running', lease_owner = 'w2' WHERE id = 2")
        moved, held, new = job_store.wait_for_target(
            tx, 2, "fake:web1", owner="w2", now=clock(),
            retry_at=clock() + timedelta(seconds=2), attempts=1)
    assert moved is not None and held is not None and held["job_id"] == 1 and not new
    kit.playbook.block.set()  # type: ignore[union-attr]
    t.join()
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded", "succeeded"]
    inc = store.get_incident(1)
    assert inc is not None
    assert [e["kind"] for e in inc["timeline"]].count("job_waiting") == 1


def test_postgres_release_notifies_the_workers(store: Store, clock: Clock) -> None:
    """On PostgreSQL, releasing a lock that a job waits for sends the workers' NOTIFY (other
    worker processes LISTEN for it); SQLite's workers watch the commit itself."""
    if store.dialect != "postgres":
        pytest.skip("PostgreSQL only")
    kit = two_jobs_on_one_target(store, clock)
    t = holding(kit)
    assert kit.new_worker("w2").run_once()  # job #2 waits
    with psycopg.connect(store.db.url, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute("LISTEN remediator_jobs")
        kit.playbook.block.set()  # type: ignore[union-attr]
        t.join()
        got = list(conn.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in got] == ["remediator_jobs"]


def test_jobs_woken_together_take_the_target_in_turn(store: Store, clock: Clock) -> None:
    """A release wakes every job waiting for the target; the oldest takes it, and while it
    holds it the others are not claimed (and put back) again."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"}),
                             rule("poke-3", guards={"cooldown": "0s"})])
    fire(kit, "web1", "g-web1")  # three jobs on fake:web1
    t = holding(kit)
    other = kit.new_worker("w2")
    assert other.run_once() and other.run_once()  # jobs #2 and #3 wait
    kit.playbook.block.set()  # type: ignore[union-attr]
    t.join()  # job #1 releases fake:web1: #2 and #3 are both runnable now
    assert kit.job(2)["not_before"] is None and kit.job(3)["not_before"] is None
    with store.db.transaction() as tx:  # another job takes the target first
        tx.execute("INSERT INTO target_locks (target, job_id, expires_at)"
                   " VALUES ('fake:web1', 99, :t)", {"t": clock() + timedelta(hours=1)})
    claims = {j["id"]: j["attempts"] for j in kit.jobs()}
    assert not other.run_once()  # neither is claimed while the target is held
    assert {j["id"]: j["attempts"] for j in kit.jobs()} == claims
    with store.db.transaction() as tx:
        job_store.release_locks(tx, 99)
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded"] * 3
    inc = store.get_incident(1)
    assert inc is not None
    assert [e["kind"] for e in inc["timeline"]].count("job_waiting") == 2


def test_a_released_target_goes_to_the_jobs_that_waited_in_turn(store: Store,
                                                                 clock: Clock) -> None:
    """After a release, one waiting job is claimed at a time (the oldest), and a job that
    did not wait cannot take the target from it."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}),
                             rule("poke-2", guards={"cooldown": "0s"}),
                             rule("poke-3", guards={"cooldown": "0s"})])
    fire(kit, "web1", "g-web1")  # jobs #1-#3 on fake:web1
    t = holding(kit)
    other = kit.new_worker("w2")
    assert other.run_once() and other.run_once()  # #2 and #3 wait
    kit.playbook.block.set()  # type: ignore[union-attr]
    t.join()  # #1 releases fake:web1
    lease = timedelta(seconds=60)
    with store.db.transaction() as tx:
        first = job_store.claim(tx, worker="w3", now=clock(), lease=lease)
        assert first is not None and first["id"] == 2
        # #3 stays queued while #2 is on its way to the target ...
        assert job_store.claim(tx, worker="w4", now=clock(), lease=lease) is None
        # ... and a job that did not wait for it (#3 taken as one) cannot have it first.
        tx.execute("UPDATE jobs SET waiting_for = NULL WHERE id = 3")
        until = clock() + lease
        assert job_store.acquire_locks(tx, 3, ["fake:web1"], now=clock(),
                                       until=until) == ["fake:web1"]
        assert job_store.acquire_locks(tx, 2, ["fake:web1"], now=clock(), until=until) == []
    with store.db.transaction() as tx:
        job_store.release_locks(tx, 2)
        tx.execute("UPDATE jobs SET state = 'queued', lease_owner = NULL WHERE id = 2")
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["succeeded"] * 3
