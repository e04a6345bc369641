"""Redis connections are reused across adapters of one target and db, on a private
redis-server whose connection counter shows every connection it accepted."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from receiver.adapters import AdapterFactory
from receiver.adapters import redis as redis_adapter
from receiver.adapters.protocols import RedisApi
from receiver.remediation.targets import RedisTarget
from tests.playbooks.conftest import PrivateRedis, make_targets, redis_at

FACTORY = AdapterFactory()


def target(private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> RedisTarget:
    monkeypatch.setenv("RMTEST_POOLED_REDIS", private_redis.url)
    targets = make_targets(redis={"cache": {"url": "env:RMTEST_POOLED_REDIS",
                                            "dbs": [0, 1, 2]}})
    return targets.redis_target("cache")


def accepted(private_redis: PrivateRedis) -> int:
    return int(private_redis.client.info("stats")["total_connections_received"])


def ping(cache: RedisTarget, db: int) -> None:
    adapter: RedisApi
    with FACTORY.redis(cache, db=db) as adapter:
        adapter.ping()


def test_adapters_of_one_db_reuse_one_connection(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five adapters one after the other (a job's plan, run and check, the next job) open
    one connection to the server, not five."""
    cache = target(private_redis, monkeypatch)
    before = accepted(private_redis)
    for _ in range(5):
        ping(cache, 0)
    assert accepted(private_redis) - before == 1


def test_a_pooled_connection_only_serves_its_own_db(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adapters of db 0 and db 1 of one server, used in turn, each count their own db."""
    cache = target(private_redis, monkeypatch)
    private_redis.client.set("only-db0", "v")
    db1 = redis_at(private_redis.url, 1)
    try:
        for i in range(3):
            db1.set(f"db1:{i}", "v")
        for _ in range(3):
            for db, keys in ((0, 1), (1, 3)):
                with FACTORY.redis(cache, db=db) as adapter:
                    assert adapter.dbsize() == keys, db
    finally:
        db1.flushdb()
        db1.close()


def test_a_connection_the_server_dropped_is_replaced(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server closes the pooled connection (CLIENT KILL, a restart, its idle
    timeout), the next adapter connects again instead of failing."""
    cache = target(private_redis, monkeypatch)
    ping(cache, 0)
    killed = private_redis.client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    before = accepted(private_redis)
    ping(cache, 0)
    assert accepted(private_redis) - before == 1


def test_past_the_bound_the_least_recently_used_pool_is_closed(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for two pools, a third db closes the idle connection of the least
    recently used one; that db still works afterwards, on a new connection."""
    cache = target(private_redis, monkeypatch)
    monkeypatch.setattr(redis_adapter, "MAX_POOLS", 2)
    monkeypatch.setattr(redis_adapter, "_pools", OrderedDict())  # this test's pools only

    def connected() -> int:  # besides the fixture's own client
        return int(private_redis.client.info("clients")["connected_clients"]) - 1

    for db in (0, 1):
        ping(cache, db)
    assert connected() == 2
    ping(cache, 2)
    assert connected() == 2, "db 0's pool was closed"
    before = accepted(private_redis)
    ping(cache, 0)
    assert accepted(private_redis) - before == 1
    assert len(redis_adapter._pools) == 2
