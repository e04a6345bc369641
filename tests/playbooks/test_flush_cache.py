"""flush_cache against the real Redis (a distinct db), and a private redis-server for FLUSHALL."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from playbooks.flush_cache import FlushCache, FlushCacheParams
from receiver.errors import AdapterError, TargetNotAllowed
from tests.playbooks.conftest import (
    CLOSED_REDIS_ENV,
    PREFIX,
    REDIS_DB,
    REDIS_URL,
    REDIS_URL_ENV,
    PrivateRedis,
    make_ctx,
    make_targets,
    redis_at,
)

PLAYBOOK = FlushCache()


def ctx_for(url_env: str = REDIS_URL_ENV, **target: Any) -> Any:
    cache = {"url": f"env:{url_env}", "dbs": [REDIS_DB], **target}
    return make_ctx(make_targets(redis={"cache": cache}))


def fill(client: redis.Redis, group: str, count: int) -> None:
    with client.pipeline() as pipe:
        for i in range(count):
            pipe.set(f"{PREFIX}:{group}:{i}", "v")
        pipe.execute()


def count(client: redis.Redis, group: str) -> int:
    return sum(1 for _ in client.scan_iter(match=f"{PREFIX}:{group}:*", count=1000))


def test_plan_counts_matching_keys_and_deletes_nothing(redis_db: redis.Redis) -> None:
    """plan() reports how many keys match, and they are all still there."""
    fill(redis_db, "sess", 30)
    plan = PLAYBOOK.plan(FlushCacheParams(target="cache", pattern=f"{PREFIX}:sess:*"), ctx_for())
    assert plan.detail["matching"] == 30
    assert count(redis_db, "sess") == 30


def test_pattern_unlinks_matches_in_batches_and_keeps_others(redis_db: redis.Redis) -> None:
    """Keys matching the pattern are gone, in several batches, and other keys remain."""
    fill(redis_db, "sess", 1200)
    fill(redis_db, "keep", 10)
    params = FlushCacheParams(target="cache", pattern=f"{PREFIX}:sess:*", batch=100)
    ctx = ctx_for()
    result = PLAYBOOK.run(params, ctx)
    assert result.ok
    assert result.detail["unlinked"] == 1200
    assert result.detail["batches"] >= 10
    assert count(redis_db, "sess") == 0
    assert count(redis_db, "keep") == 10
    assert PLAYBOOK.verify(params, ctx, result).ok


def test_max_keys_stops_the_unlink(redis_db: redis.Redis) -> None:
    """With max_keys below the match count, exactly max_keys go and the result says so."""
    fill(redis_db, "sess", 50)
    params = FlushCacheParams(target="cache", pattern=f"{PREFIX}:sess:*", batch=7, max_keys=20)
    result = PLAYBOOK.run(params, ctx_for())
    assert (result.detail["unlinked"], result.detail["truncated"]) == (20, True)
    assert count(redis_db, "sess") == 30


def test_flushdb_empties_only_its_db(redis_db: redis.Redis) -> None:
    """mode=db empties the test db and leaves a key in another db alone."""
    fill(redis_db, "sess", 5)
    other = redis_at(REDIS_URL, REDIS_DB - 1)
    other_key = f"{PREFIX}:other-db"
    other.set(other_key, "v")
    try:
        params = FlushCacheParams(target="cache", mode="db", db=REDIS_DB)
        result = PLAYBOOK.run(params, ctx_for())
        assert result.detail["keys_before"] >= 5
        assert redis_db.connection_pool.connection_kwargs["db"] == REDIS_DB
        assert redis_db.dbsize() == 0
        assert other.get(other_key) == b"v"
    finally:
        other.delete(other_key)
        other.close()


def test_db_outside_the_allowlist_is_refused(redis_db: redis.Redis) -> None:
    """A db the target does not list is refused and its keys stay."""
    fill(redis_db, "sess", 3)
    with pytest.raises(TargetNotAllowed, match="dbs"):
        PLAYBOOK.run(FlushCacheParams(target="cache", mode="db", db=REDIS_DB), ctx_for(dbs=[0]))
    assert count(redis_db, "sess") == 3


def test_flushall_refused_unless_allowed(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLUSHALL without allow_flushall is TargetNotAllowed and nothing is removed."""
    monkeypatch.setenv("RMTEST_PRIVATE_REDIS", private_redis.url)
    private_redis.client.set("k", "v")
    with pytest.raises(TargetNotAllowed, match="allow_flushall"):
        PLAYBOOK.run(FlushCacheParams(target="cache", mode="all"), ctx_for("RMTEST_PRIVATE_REDIS"))
    assert private_redis.client.get("k") == b"v"


def test_flushall_empties_every_db_when_allowed(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With allow_flushall, mode=all empties every db of its own server."""
    monkeypatch.setenv("RMTEST_PRIVATE_REDIS", private_redis.url)
    private_redis.client.set("k0", "v")
    db1 = redis_at(private_redis.url, 1)
    db1.set("k1", "v")
    params = FlushCacheParams(target="cache", mode="all")
    ctx = ctx_for("RMTEST_PRIVATE_REDIS", allow_flushall=True)
    assert PLAYBOOK.plan(params, ctx).detail["keyspace"] == {0: 1, 1: 1}
    result = PLAYBOOK.run(params, ctx)
    assert result.detail["keyspace_before"] == {0: 1, 1: 1}
    assert private_redis.client.dbsize() == 0 and db1.dbsize() == 0
    assert PLAYBOOK.verify(params, ctx, result).ok
    db1.close()


def test_unknown_target_is_refused() -> None:
    """A Redis target missing from the allowlist is refused."""
    with pytest.raises(TargetNotAllowed, match="targets.redis"):
        PLAYBOOK.run(FlushCacheParams(target="sessions", pattern="s:*"), ctx_for())


def test_unreachable_redis_is_an_adapter_error() -> None:
    """A target on a closed port raises AdapterError."""
    ctx = ctx_for(CLOSED_REDIS_ENV, socket_timeout_s=1)
    with pytest.raises(AdapterError, match="unreachable"):
        PLAYBOOK.run(FlushCacheParams(target="cache", pattern=f"{PREFIX}:*"), ctx)
