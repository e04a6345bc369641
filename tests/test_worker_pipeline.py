"""How many transactions the worker's steps write for one job, on both backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from receiver.remediation import controls
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification


@contextmanager
def counting_transactions(store: Store) -> Iterator[list[bool]]:
    """Each transaction the store opens meanwhile, as its ``write`` flag."""
    seen: list[bool] = []
    plain = store.db.transaction

    @contextmanager
    def counted(*, write: bool = True) -> Iterator[Any]:
        seen.append(write)
        with plain(write=write) as tx:
            yield tx

    store.db.transaction = counted  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        store.db.transaction = plain  # type: ignore[method-assign]


def fire(kit: Kit, container: str) -> None:
    kit.fire(make_notification([make_alert(labels={"container": container})],
                               group_key=f"g-{container}"))


def test_a_successful_job_takes_three_write_transactions(store: Store, clock: Clock) -> None:
    """Claim (with its guards and target locks), start and conclusion: three writes."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"})])
    fire(kit, "web1")
    with counting_transactions(store) as seen:
        assert kit.worker.run_once()
    assert kit.jobs()[0]["state"] == "succeeded"
    assert kit.playbook.calls == ["web1"]
    assert seen.count(True) == 3


def test_a_blocked_job_takes_one_write_transaction(store: Store, clock: Clock) -> None:
    """A job that a guard blocks is claimed and blocked in the same transaction."""
    kit = Kit(store, clock, [rule()])
    controls.pause(store, actor="user:alice", reason="change freeze", now=clock())
    fire(kit, "web1")
    with counting_transactions(store) as seen:
        assert kit.worker.run_once()
    assert kit.jobs()[0]["state"] == "blocked"
    assert seen.count(True) == 1


def test_a_job_that_waits_for_a_target_takes_one_write_transaction(store: Store,
                                                                  clock: Clock) -> None:
    """A job that finds its target locked by another job is claimed and put back to wait in
    one transaction."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}, params={"target": "shared"})])
    fire(kit, "web1")
    fire(kit, "web2")
    first, second = (j["id"] for j in kit.jobs())
    with store.unit() as uow:  # the other job holds the target
        assert uow.targets.acquire(second, ["fake:shared"], now=clock(),
                                   until=clock() + kit.config.remediation.lease) == []
    with counting_transactions(store) as seen:
        assert kit.worker.run_once()
    job = kit.job(first)
    assert job["state"] == "queued" and job["attempts"] == 0
    assert kit.playbook.calls == []
    assert seen.count(True) == 1


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_release_skips_a_waiting_job_that_a_worker_is_claiming(store: Store,
                                                                 clock: Clock) -> None:
    """On PostgreSQL, freeing a target does not wait for the row of a job waiting for it
    that another transaction holds (a worker claiming it, which locks the target next):
    waiting there while that worker waits for the freed target would deadlock the two."""
    kit = Kit(store, clock, [rule(guards={"cooldown": "0s"}, params={"target": "shared"})])
    fire(kit, "web1")
    fire(kit, "web2")
    first, second = (j["id"] for j in kit.jobs())
    with store.unit() as uow:
        assert uow.targets.acquire(first, ["fake:shared"], now=clock(),
                                   until=clock() + kit.config.remediation.lease) == []
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET waiting_for = 'fake:shared' WHERE id = :id", {"id": second})
    released = threading.Event()

    def release() -> None:
        with store.unit() as uow:
            uow.targets.release(first)
        released.set()

    with psycopg.connect(store.db.url) as claimer:  # type: ignore[attr-defined]
        claimer.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (second,))
        t = threading.Thread(target=release, daemon=True)
        t.start()
        done = released.wait(5)
        claimer.rollback()
    t.join(10)
    assert done
    with store.db.transaction(write=False) as tx:
        assert tx.fetchall("SELECT target FROM target_locks") == []
