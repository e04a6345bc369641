"""One job, one session: the worker builds each adapter once for plan, run and verify, and
checks the allowlist once, with the real flush_cache on the real Redis (both store backends)."""

from __future__ import annotations

from typing import Any

import redis

from playbooks.base import Playbook, PlaybookContext
from playbooks.flush_cache import FlushCache, FlushCacheParams
from receiver.adapters import AdapterFactory, RedisApi
from receiver.config import parse_config
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.remediation.targets import RedisTarget
from receiver.remediation.worker import Worker
from receiver.store import Store
from tests.conftest import Clock
from tests.factories import make_alert, make_notification
from tests.playbooks.conftest import PREFIX, REDIS_DB, REDIS_URL_ENV


class CountingAdapters(AdapterFactory):
    """The real factory, counting the Redis adapters it builds and their closes."""

    def __init__(self) -> None:
        self.built = 0
        self.closed = 0

    def redis(self, target: RedisTarget, *, db: int) -> RedisApi:
        self.built += 1
        adapter: Any = super().redis(target, db=db)
        close = adapter.close

        def counted_close() -> None:
            self.closed += 1
            close()

        adapter.close = counted_close
        return adapter  # type: ignore[no-any-return]


class CountingFlushCache(FlushCache):
    """flush_cache, counting its allowlist checks."""

    def __init__(self) -> None:
        self.checks = 0

    def check_allowed(self, params: FlushCacheParams, ctx: PlaybookContext) -> None:
        self.checks += 1
        super().check_allowed(params, ctx)


def run_one(store: Store, clock: Clock, adapters: AdapterFactory,
            playbook: FlushCache) -> dict[str, Any]:
    registry: dict[str, Playbook[Any]] = {"flush_cache": playbook}
    config = parse_config({
        "data_dir": "/tmp/remediator-test-data",
        "rules": [{"name": "flush", "matchers": ['alertname="CacheStale"'],
                   "playbook": "flush_cache", "approval": {"mode": "auto"},
                   "guards": {"cooldown": "0s"},
                   "params": {"target": "cache", "mode": "pattern", "db": REDIS_DB,
                              "pattern": f"{PREFIX}:sess:*"}}],
        "targets": {"redis": {"cache": {"url": f"env:{REDIS_URL_ENV}", "dbs": [REDIS_DB]}}},
    }, registry=registry)
    Intake(config, store, clock).accept(*_notification())
    worker = Worker(config, store, clock=clock, worker_id="w1", adapters=adapters,
                    registry=registry, sleep=lambda _s: None)
    assert worker.run_once()
    with store.unit(write=False) as uow:
        (job,) = uow.jobs.for_incident(1)
    return {"state": job.state, "result": job.result}


def _notification() -> tuple[Notification, str]:
    import json

    raw = json.dumps(make_notification([make_alert(labels={"alertname": "CacheStale"})],
                                       group_key="g-cache"))
    return Notification.model_validate_json(raw), raw


def fill(client: redis.Redis, count: int) -> None:
    with client.pipeline() as pipe:
        for i in range(count):
            pipe.set(f"{PREFIX}:sess:{i}", "v")
        pipe.execute()


def test_plan_run_and_verify_share_one_redis_adapter(store: Store, clock: Clock,
                                                     redis_db: redis.Redis) -> None:
    """A job's plan, run and verify use one Redis adapter, built once and closed once."""
    fill(redis_db, 5)
    adapters = CountingAdapters()
    job = run_one(store, clock, adapters, FlushCache())
    assert job["state"] == "succeeded"
    assert job["result"]["detail"]["unlinked"] == 5
    assert not list(redis_db.scan_iter(match=f"{PREFIX}:sess:*"))
    assert (adapters.built, adapters.closed) == (1, 1)


def test_a_job_checks_its_allowlist_once(store: Store, clock: Clock,
                                         redis_db: redis.Redis) -> None:
    """The allowlist check runs once per job, not again in plan and in run."""
    fill(redis_db, 2)
    playbook = CountingFlushCache()
    job = run_one(store, clock, AdapterFactory(), playbook)
    assert job["state"] == "succeeded"
    assert playbook.checks == 1
