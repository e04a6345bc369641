"""The Redis adapter: count and unlink keys by pattern (SCAN + UNLINK), FLUSHDB, FLUSHALL.

One adapter talks to one logical db, whatever db the target's URL names. Errors: connection
failures and timeouts raise :class:`AdapterError`; a refused command (e.g. a renamed FLUSHALL)
raises :class:`PlaybookError`.

Counting and unlinking by pattern never trust SCAN MATCH alone: each key SCAN returns must
start with the pattern's literal prefix (and with one of ``key_prefixes`` when given), or it is
left alone and counted as ``skipped``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions

from receiver.adapters.base import ClosingAdapter
from receiver.errors import AdapterError, PlaybookError
from receiver.remediation.targets import literal_prefix
from receiver.secrets import Secret


@dataclass(frozen=True)
class UnlinkResult:
    """How many keys SCAN matched and UNLINK removed, and whether ``max_keys`` stopped it."""

    matched: int
    unlinked: int
    batches: int
    truncated: bool
    skipped: int = 0
    """Keys SCAN returned that are outside the literal prefix or ``key_prefixes``: kept."""


def key_filter(
    pattern: str, key_prefixes: Sequence[str] | None
) -> Callable[[bytes | str], bool]:
    """Whether a key (as Redis returns it) starts with ``pattern``'s literal prefix and, when
    ``key_prefixes`` is given, with one of them."""
    literal = literal_prefix(pattern).encode("utf-8")
    allowed = tuple(p.encode("utf-8") for p in key_prefixes) if key_prefixes is not None else None

    def keep(key: bytes | str) -> bool:
        if isinstance(key, str):
            key = key.encode("utf-8", "surrogateescape")
        if not key.startswith(literal):
            return False
        return allowed is None or key.startswith(allowed)

    return keep


MAX_POOLS = 64
"""Connection pools one process keeps at most (one per target URL, db and timeout; the
allowlist bounds them long before this)."""
_pools: OrderedDict[tuple[str, int, float], redis.ConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()


def _pool(url: Secret, db: int, timeout_s: float) -> redis.ConnectionPool:
    """The process's connection pool for one db of one target, so that the next job or
    diagnostics probe of that db reuses a connection instead of opening one (one job's
    steps already share their adapter; ``bench/redis_connect.py`` measures a use with and
    without a pooled connection). The db is part of the key, and set on the pool,
    so a connection only ever serves its own db; redis-py reconnects a pooled connection
    the server has closed, and starts afresh in a forked child."""
    key = (url.reveal(), db, timeout_s)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        try:
            pool = redis.ConnectionPool.from_url(
                key[0], socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        except ValueError as exc:
            raise PlaybookError(f"invalid redis URL ({url.ref})") from exc
        # A db in the URL would win over a keyword argument, so set it on the pool.
        pool.connection_kwargs["db"] = db
        _pools[key] = pool
        while len(_pools) > MAX_POOLS:
            _, oldest = _pools.popitem(last=False)
            oldest.disconnect(inuse_connections=False)  # a command in flight finishes
        return pool


class RedisAdapter(ClosingAdapter):
    """A narrow client for one Redis db; use it as a context manager."""

    def __init__(self, url: Secret, *, db: int, socket_timeout_s: float = 5) -> None:
        self._url = url
        self._db = db
        self._timeout = socket_timeout_s
        self._client: redis.Redis | None = None

    @property
    def db(self) -> int:
        return self._db

    def close(self) -> None:
        # The connections stay in the process's pool for the next use (see _pool).
        self._client = None

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(connection_pool=_pool(self._url, self._db,
                                                             self._timeout))
        return self._client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise AdapterError(f"redis unreachable ({self._url.ref}) to {action}: {exc}") from exc
        except redis.exceptions.RedisError as exc:
            raise PlaybookError(f"redis refused to {action}: {exc}") from exc

    def ping(self) -> None:
        with self._errors("ping"):
            self._redis().ping()

    def ping_ms(self) -> float:
        """Round trip of PING in milliseconds (the connection is opened first)."""
        client = self._redis()
        with self._errors("ping"):
            client.ping()
            started = time.perf_counter()
            client.ping()
            return (time.perf_counter() - started) * 1000

    def info(self, section: str) -> dict[str, Any]:
        """Read-only: one INFO section (``memory``, ``clients``...) as a dict."""
        with self._errors(f"read INFO {section}"):
            data: dict[str, Any] = self._redis().info(section)
        return data

    def dbsize(self) -> int:
        with self._errors("count keys"):
            return int(self._call("DBSIZE"))

    def keyspace_sizes(self) -> dict[int, int]:
        """Keys per db across the whole server (from INFO keyspace)."""
        with self._errors("read INFO keyspace"):
            info: dict[str, Any] = self._redis().info("keyspace")
        sizes = {}
        for name, stats in info.items():
            if name.startswith("db") and name[2:].isdigit() and isinstance(stats, dict):
                sizes[int(name[2:])] = int(stats.get("keys", 0))
        return sizes

    def count_matching(
        self, pattern: str, *, batch: int, limit: int, key_prefixes: Sequence[str] | None = None
    ) -> tuple[int, bool]:
        """Keys matching ``pattern`` (and :func:`key_filter`) seen by a SCAN, stopping at
        ``limit``: (count, truncated)."""
        keep = key_filter(pattern, key_prefixes)
        count = 0
        with self._errors(f"scan for {pattern!r}"):
            for key in self._redis().scan_iter(match=pattern, count=batch):
                if not keep(key):
                    continue
                count += 1
                if count >= limit:
                    return count, True
        return count, False

    def unlink_matching(
        self,
        pattern: str,
        *,
        batch: int,
        max_keys: int,
        key_prefixes: Sequence[str] | None = None,
    ) -> UnlinkResult:
        """SCAN for ``pattern`` and UNLINK what it finds, ``batch`` keys at a time; a key
        that :func:`key_filter` refuses is never unlinked."""
        keep = key_filter(pattern, key_prefixes)
        client = self._redis()
        matched = unlinked = batches = skipped = 0
        cursor = 0
        with self._errors(f"unlink keys matching {pattern!r}"):
            while True:
                cursor, found = client.scan(cursor=cursor, match=pattern, count=batch)
                keys = [key for key in found if keep(key)]
                skipped += len(found) - len(keys)
                taken = keys[: max_keys - matched]
                if taken:
                    matched += len(taken)
                    unlinked += int(client.unlink(*taken))
                    batches += 1
                if matched >= max_keys:
                    left = cursor != 0 or len(taken) < len(keys)
                    return UnlinkResult(matched, unlinked, batches, truncated=left,
                                        skipped=skipped)
                if cursor == 0:
                    return UnlinkResult(matched, unlinked, batches, truncated=False,
                                        skipped=skipped)

    def _call(self, *command: str) -> Any:
        return self._redis().execute_command(*command)

    def flushdb(self) -> None:
        with self._errors(f"FLUSHDB db {self._db}"):
            self._call("FLUSHDB")

    def flushall(self) -> None:
        with self._errors("FLUSHALL"):
            self._call("FLUSHALL")
