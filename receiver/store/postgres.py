"""The PostgreSQL backend: a psycopg connection pool, ``:name`` parameters rewritten to
psycopg's ``%(name)s``, row locks, advisory locks and LISTEN/NOTIFY."""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg.errors
import psycopg_pool
import structlog
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from receiver.errors import StoreConflict, StoreError, StoreUnavailable
from receiver.store.db import Database, Listener, LockStrength, Row, Tx, _decode_row

log = structlog.get_logger(__name__)

_NAMED = re.compile(r"(?<![:\w]):([a-zA-Z_][a-zA-Z0-9_]*)")


@lru_cache(maxsize=512)
def _to_pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))



_PG_LOCK_STRENGTH: dict[str, str] = {"update": " FOR UPDATE",
                                     "no key update": " FOR NO KEY UPDATE"}


class _PgTx(Tx):
    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.before_commit = []
        self.scratch = {}

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        if params:
            self.conn.execute(_to_pyformat(sql), params)
        else:
            self.conn.execute(sql.encode())

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = self.conn.cursor(row_factory=dict_row)
        if params:
            cur.execute(_to_pyformat(sql), params)
        else:
            cur.execute(sql.encode())
        return [_decode_row(r, False) for r in cur.fetchall()]

    def json(self, value: Any) -> Any:
        return Jsonb(value)

    def lock_rows(
        self,
        table: str,
        where: str,
        params: Mapping[str, Any] | None = None,
        *,
        columns: str = "id",
        order_by: str | None = None,
        limit: int | None = None,
        skip_locked: bool = False,
        strength: LockStrength = "update",
        of: str | None = None,
    ) -> list[Row]:
        clause = _PG_LOCK_STRENGTH[strength]
        if of is not None:
            clause += f" OF {of}"
        if skip_locked:
            clause += " SKIP LOCKED"
        return self.fetchall(self._select(table, where, columns, order_by, limit) + clause,
                             params)

    def advisory_lock(self, key: int | str) -> None:
        if isinstance(key, str):
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended(:key, 7))",
                         {"key": key})
        else:
            self.execute("SELECT pg_advisory_xact_lock(:id)", {"id": key})

    def notify(self, channel: str, payload: str = "") -> None:
        # PostgreSQL delivers one of identical notifications of a transaction anyway: the
        # repeats are not even sent.
        sent: set[tuple[str, str]] = self.scratch.setdefault("notified", set())
        if (channel, payload) in sent:
            return
        sent.add((channel, payload))
        self.execute("SELECT pg_notify(:channel, :payload)",
                     {"channel": channel, "payload": payload})


class _PgListener(Listener):
    """``LISTEN channel`` on an autocommit connection of its own (a pooled connection
    would stop hearing once returned to the pool)."""

    tick = 1.0

    def __init__(self, url: str, channel: str, timeout: float) -> None:
        try:
            self._conn = psycopg.connect(url, autocommit=True,
                                         connect_timeout=max(1, int(timeout)))
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        try:
            self._conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreUnavailable(f"PostgreSQL LISTEN failed: {exc}") from exc

    def wait(self, timeout: float) -> bool:
        try:
            return bool(list(self._conn.notifies(timeout=timeout, stop_after=1)))
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL listener lost: {exc}") from exc

    def close(self) -> None:
        self._conn.close()


RECENTLY_USED_S = 1.0
"""A pooled connection returned less than this ago is handed out without a check."""
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
    weakref.WeakKeyDictionary())


def _mark_returned(conn: psycopg.Connection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _check_unless_just_used(conn: psycopg.Connection[Any]) -> None:
    """The pool's check (an empty query: one round trip) for a connection that has been
    idle for a while; one that answered a moment ago is taken as it is: under load that
    saves a round trip per transaction, and a connection the server dropped meanwhile
    fails that one transaction (StoreUnavailable, a 503 that Alertmanager retries) and
    is then discarded by the pool."""
    at = _returned_at.get(conn)
    if at is not None and time.monotonic() - at < RECENTLY_USED_S:
        return
    psycopg_pool.ConnectionPool.check_connection(conn)


_UNAVAILABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.InterfaceError)


class PostgresDatabase(Database):
    """PostgreSQL through a psycopg_pool connection pool."""

    dialect = "postgres"
    MIGRATION_LOCK_ID = 0x72656D65  # "reme"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 3.0):
        self.timeout = timeout
        self.url = url
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"connect_timeout": max(1, int(timeout)), "autocommit": False},
            # no ``reset``: with one, the pool hands every returned connection to its
            # worker thread, a thread switch per transaction
            check=_check_unless_just_used,
            open=False,
            name="remediator",
        )
        self.pool.open(wait=False)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        # No pipeline mode: on a nearby server it costs more client and server CPU than
        # the round trips it saves (bench/floor.py --profile measures both).
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                with conn.transaction():
                    tx = _PgTx(conn)
                    tx.audit_key = self.audit_key
                    tx.redactor = self.redactor
                    yield tx
                    for hook in tx.before_commit:
                        hook(tx)
                _mark_returned(conn)  # committed: it answered just now
        except psycopg.errors.SerializationFailure as exc:
            raise StoreConflict(f"transaction conflict, retry: {exc}") from exc
        except psycopg.errors.DeadlockDetected as exc:
            raise StoreConflict(f"deadlock, retry: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    @contextmanager
    def migration_lock(self) -> Iterator[Tx]:
        with self.transaction() as tx:
            tx.advisory_lock(self.MIGRATION_LOCK_ID)
            yield tx

    def listen(self, channel: str) -> Listener:
        return _PgListener(self.url, channel, self.timeout)

    def close(self) -> None:
        self.pool.close()
