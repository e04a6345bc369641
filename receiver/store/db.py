"""The two database backends behind one small transaction interface.

SQL in the store package is written once with ``:name`` parameters; the PostgreSQL
backend rewrites them to psycopg's ``%(name)s``. Timestamps are ``timestamptz`` on
PostgreSQL and ISO-8601 UTC text on SQLite (so they sort as text); JSON is ``jsonb`` on
PostgreSQL and text on SQLite. Rows come back as dicts with datetimes and decoded JSON on
both backends, so the code above this module never sees the difference.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from receiver.errors import StoreConflict, StoreError, StoreUnavailable
from receiver.secrets import NO_SECRETS, Redactor

log = structlog.get_logger(__name__)

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

    def maintain(self) -> int:
        """Periodic upkeep, run from the workers' chores (SQLite: the WAL checkpoint)."""
        return 0

    PROBE_TTL = 1.5
    _probed: tuple[float, StoreUnavailable | None] = (float("-inf"), None)

    def probe_commit(self) -> None:
        """Raise StoreUnavailable unless the store can commit now (a one-row write, and on
        SQLite enough free disk space). Answered from a cache for PROBE_TTL seconds, so a
        readiness probe costs at most one small write per interval and process."""
        at, failure = self._probed
        now = time.monotonic()
        if now - at >= self.PROBE_TTL:
            failure = self._probe()
            self._probed = (now, failure)
        if failure is not None:
            raise failure

    def _probe(self) -> StoreUnavailable | None:
        try:
            with self.transaction() as tx:
                tx.execute(PROBE_SQL, {"now": datetime.now(UTC)})
        except StoreUnavailable as exc:
            return exc
        except StoreError as exc:  # e.g. a read-only PostgreSQL standby
            return StoreUnavailable(f"the store cannot commit: {exc}")
        return None


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


# SQLite result codes (the low byte of an extended code) that say "not now": a full or
# failing disk, a lock, a file that cannot be opened or written. Retrying later can succeed,
# so callers answer 503 (Alertmanager retries) instead of failing the request for good.
_SQLITE_UNAVAILABLE = {
    5: "busy", 6: "locked", 7: "out of memory", 8: "read-only", 10: "disk I/O error",
    13: "disk full", 14: "cannot open",
}


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _SQLITE_UNAVAILABLE:
        return None
    return StoreUnavailable(f"SQLite store cannot write now ({_SQLITE_UNAVAILABLE[code & 0xFF]}):"
                            f" {exc}")


def _raise_unavailable(exc: sqlite3.Error) -> None:
    """Raise StoreUnavailable from ``exc`` if it is one of the "not now" errors."""
    unavailable = _unavailable(exc)
    if unavailable is not None:
        raise unavailable from exc


PROBE_SQL = """INSERT INTO store_probe (id, probed_at) VALUES (1, :now)
ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at"""
"""The write of the readiness probe (migration 0011: one row, rewritten)."""


def _private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm files take the
    database file's mode), and take group and other access away from an existing one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # SQLite reports it, as a StoreUnavailable, at the first connection
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


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
        try:
            self.conn.execute(sql, self._params(params))
        except sqlite3.OperationalError as exc:
            _raise_unavailable(exc)
            raise

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            cur = self.conn.execute(sql, self._params(params))
            rows = cur.fetchall()
        except sqlite3.OperationalError as exc:
            _raise_unavailable(exc)
            raise
        names = [d[0] for d in cur.description or ()]
        return [_decode_row(dict(zip(names, r, strict=True)), True) for r in rows]

    def json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteDatabase(Database):
    """SQLite in WAL mode; one connection per thread; writers serialised by BEGIN IMMEDIATE."""

    dialect = "sqlite"

    WAL_AUTOCHECKPOINT_PAGES = 1000
    """Each commit that leaves the WAL above this many pages (~4 MB) checkpoints it
    (PASSIVE: it never waits, so readers can starve it; see :meth:`checkpoint`)."""
    JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024
    """A WAL file left larger than this after a checkpoint is truncated back to it."""
    MIN_FREE_BYTES = 1024 * 1024
    """Below this much free space in the database's directory the store is not ready."""

    def __init__(self, path: Path, busy_timeout_ms: int = 10000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_file(path)

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
                conn.execute(f"PRAGMA wal_autocheckpoint = {self.WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit = {self.JOURNAL_SIZE_LIMIT}")
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

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database and truncate it to zero bytes
        (``wal_checkpoint(TRUNCATE)``, waiting up to busy_timeout for readers and writers).
        Returns (frames in the WAL, frames checkpointed); raises StoreUnavailable if it
        could not complete (a reader held an old snapshot, or the disk is full)."""
        try:
            row = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            _raise_unavailable(exc)
            raise StoreUnavailable(f"SQLite checkpoint failed: {exc}") from exc
        busy, frames, done = (int(v) for v in row)
        if busy:
            raise StoreUnavailable(f"SQLite checkpoint incomplete ({done} of {frames} frames)")
        return frames, done

    CHECKPOINT_INTERVAL = 60.0
    _checkpointed_at = float("-inf")

    def maintain(self) -> int:
        """Checkpoint and truncate the WAL once a CHECKPOINT_INTERVAL, and at once when it
        has grown past JOURNAL_SIZE_LIMIT or past a quarter of the free space left (the
        checkpoint itself needs room to grow the database file). The commits' own PASSIVE
        checkpoints never shrink the file and can be starved by readers, so without this
        the WAL of a busy receiver only grows. Cheap when nothing is due (two stat calls).
        Returns 1 when it checkpointed."""
        now = time.monotonic()
        try:
            wal = os.stat(f"{self.path}-wal").st_size
            free = self.free_bytes()
        except OSError:
            return 0
        due = now - self._checkpointed_at >= self.CHECKPOINT_INTERVAL
        if not wal or not (due or wal > self.JOURNAL_SIZE_LIMIT or wal > free // 4):
            return 0
        self._checkpointed_at = now
        try:
            frames, _ = self.checkpoint()
        except StoreUnavailable as exc:
            log.warning("sqlite_checkpoint_failed", path=str(self.path), wal_bytes=wal,
                        error=str(exc))
            return 0
        log.debug("sqlite_checkpoint", path=str(self.path), wal_bytes=wal, frames=frames)
        return 1

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.path.parent).free

    def _probe(self) -> StoreUnavailable | None:
        """Enough free space beside the database file, then the one-row write."""
        try:
            free = self.free_bytes()
        except OSError as exc:
            return StoreUnavailable(f"cannot read free space of {self.path.parent}: {exc}")
        if free < self.MIN_FREE_BYTES:
            return StoreUnavailable(f"no space left in {self.path.parent} ({free} bytes free)")
        return super()._probe()

    def change_probe(self) -> SqliteChangeProbe:
        """A probe of commits made to this database file by any connection of any process
        (see :class:`SqliteChangeProbe`); the caller closes it."""
        return SqliteChangeProbe(self.path)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class SqliteChangeProbe:
    """``PRAGMA data_version`` on a connection of its own.

    The value changes whenever another connection, in this process or any other, has
    committed a change to the database since the last call (a transaction that wrote nothing
    does not count). In WAL mode a call reads the WAL index header in shared memory: no disk
    I/O, no write lock, a few microseconds. The connection must be used for nothing else: its
    own commits would not change the value it reports.
    """

    def __init__(self, path: Path) -> None:
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                         timeout=1)
            self._conn.execute("PRAGMA busy_timeout = 1000")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {path}: {exc}") from exc

    def version(self) -> int:
        try:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite data_version failed: {exc}") from exc
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


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
