"""The two database backends behind one small transaction interface.

SQL in the store package is written once with ``:name`` parameters; the PostgreSQL
backend rewrites them to psycopg's ``%(name)s``. Timestamps are ``timestamptz`` on
PostgreSQL and ISO-8601 UTC text on SQLite (so they sort as text); JSON is ``jsonb`` on
PostgreSQL and text on SQLite. Rows come back as dicts with datetimes and decoded JSON on
both backends, so the code above this module never sees the difference.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from receiver.errors import StoreError, StoreUnavailable
from receiver.secrets import NO_SECRETS, Redactor

JSON_COLUMNS = frozenset(
    {"labels", "annotations", "group_labels", "detail", "params", "result", "plan", "details",
     "groups", "origin", "targets"}
)
TIME_COLUMNS = frozenset({"at", "not_before"})
"""Timestamp columns besides the ``*_at`` ones (decoded from text on SQLite)."""
Row = dict[str, Any]

_NAMED = re.compile(r"(?<![:\w]):([a-zA-Z_][a-zA-Z0-9_]*)")


@lru_cache(maxsize=512)
def _to_pyformat(sql: str) -> str:
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


class Tx(ABC):
    """One open transaction.

    ``before_commit`` callbacks run, in order, after the body and just before COMMIT: the
    audit log appends its entries there, so that the audit chain's lock is the last lock
    any transaction takes (no lock-order cycle can include it).
    """

    dialect: str
    before_commit: list[Callable[[Tx], None]]
    scratch: dict[str, Any]
    audit_key: Any = None  # the Database's AuditKey, for the audit chain's HMAC
    redactor: Redactor = NO_SECRETS  # the Database's: secrets cut from events and audit details

    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    def json(self, value: Any) -> Any:
        """A JSON value as this backend takes it as a parameter."""


class Database(ABC):
    dialect: str
    audit_key: Any = None  # receiver.audit.AuditKey: entries appended are HMAC-chained with it
    redactor: Redactor = NO_SECRETS  # the config's secrets, redacted from what is written

    @abstractmethod
    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    @contextmanager
    def migration_lock(self) -> Iterator[Tx]:
        """A transaction holding a lock that only one migrating process gets at a time."""


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime passed to the store")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _decode_row(row: Mapping[str, Any], parse_times: bool) -> Row:
    out: Row = {}
    for key, value in row.items():
        if isinstance(value, str):
            if parse_times and (key.endswith("_at") or key in TIME_COLUMNS):
                value = datetime.fromisoformat(value)
            elif key in JSON_COLUMNS:
                value = json.loads(value)
        out[key] = value
    return out


class _SqliteTx(Tx):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.before_commit = []
        self.scratch = {}

    @staticmethod
    def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
        if not params:
            return {}
        return {k: _iso(v) if isinstance(v, datetime) else v for k, v in params.items()}

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.conn.execute(sql, self._params(params))

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = self.conn.execute(sql, self._params(params))
        names = [d[0] for d in cur.description or ()]
        return [_decode_row(dict(zip(names, r, strict=True)), True) for r in cur.fetchall()]

    def json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteDatabase(Database):
    """SQLite in WAL mode; one connection per thread; writers serialised by BEGIN IMMEDIATE."""

    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_ms: int = 10000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                self._wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @staticmethod
    def _wal(conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment without writers; another process creating the
        # same fresh file may hold one, and this pragma does not wait on busy_timeout.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.05)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite store busy: {exc}") from exc
        try:
            tx = _SqliteTx(conn)
            tx.audit_key = self.audit_key
            tx.redactor = self.redactor
            yield tx
            for hook in tx.before_commit:
                hook(tx)
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except sqlite3.OperationalError as exc:
            conn.rollback()
            raise StoreUnavailable(f"SQLite commit failed: {exc}") from exc

    @contextmanager
    def migration_lock(self) -> Iterator[Tx]:
        with self.transaction(write=True) as tx:
            yield tx

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class StoreConflict(StoreUnavailable):
    """The database gave up on this transaction to let a concurrent one finish (deadlock
    victim, serialization failure): running it again is expected to succeed."""


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
            check=psycopg_pool.ConnectionPool.check_connection,
            open=False,
            name="remediator",
        )
        self.pool.open(wait=False)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                with conn.transaction():
                    tx = _PgTx(conn)
                    tx.audit_key = self.audit_key
                    tx.redactor = self.redactor
                    yield tx
                    for hook in tx.before_commit:
                        hook(tx)
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
            tx.execute("SELECT pg_advisory_xact_lock(:id)", {"id": self.MIGRATION_LOCK_ID})
            yield tx

    def close(self) -> None:
        self.pool.close()


def open_database(
    url: str, *, pool_min: int = 1, pool_max: int = 10, timeout: float = 3.0
) -> Database:
    """Open the database named by a store URL (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite:///"):
        # sqlite:///relative/path, sqlite:////absolute/path (the SQLAlchemy convention)
        return SqliteDatabase(Path(url[len("sqlite:///") :]))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, min_size=pool_min, max_size=pool_max, timeout=timeout)
    raise StoreError("unsupported store URL scheme")
