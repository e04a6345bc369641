"""The two database backends behind one small transaction interface.

SQL in the store package is written once with ``:name`` parameters; the PostgreSQL
backend rewrites them to psycopg's ``%(name)s``. Timestamps are ``timestamptz`` on
PostgreSQL and ISO-8601 UTC text on SQLite (so they sort as text); JSON is ``jsonb`` on
PostgreSQL and text on SQLite. Rows come back as dicts with datetimes and decoded JSON on
both backends, so the code above this module never sees the difference.

What the backends do their own way is a capability of the transaction, abstract on
:class:`Tx` and :class:`Database` so that each backend implements every one:
:meth:`Tx.lock_rows` (row locks, ``SKIP LOCKED``), :meth:`Tx.advisory_lock`,
:meth:`Tx.notify` and :meth:`Database.listen`. The few statements written differently per
backend are declared with :class:`receiver.store.dialects.PerDialect`.
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
from typing import Any, Literal

import psycopg
import psycopg.errors
import psycopg_pool
import structlog
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from receiver.errors import StoreConflict, StoreError, StoreUnavailable
from receiver.secrets import NO_SECRETS, Redactor

log = structlog.get_logger(__name__)

JSON_COLUMNS = frozenset(
    {"labels", "annotations", "group_labels", "detail", "params", "result", "plan", "details",
     "groups", "origin", "targets", "figures"}
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

    # -- capabilities: what each backend does its own way, named once -------------------
    # Every backend implements each one explicitly (they are abstract): a new backend
    # cannot inherit another's locking or signalling by accident.

    @abstractmethod
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
        """``SELECT columns FROM table WHERE where [ORDER BY] [LIMIT]``, the rows locked
        until this transaction ends, so that no concurrent writer changes them meanwhile.

        ``skip_locked``: rows another transaction holds are left out instead of waited
        for (the claim of a queue). ``strength="no key update"`` does not block inserts of
        rows that reference the locked ones. ``of`` names the alias whose rows are locked
        when ``table`` is a join. PostgreSQL: ``FOR UPDATE`` / ``FOR NO KEY UPDATE``
        [``OF``] [``SKIP LOCKED``]. SQLite: a plain SELECT, since a write transaction
        (``BEGIN IMMEDIATE``) already excludes every other writer."""

    def lock_row(self, table: str, where: str, params: Mapping[str, Any] | None = None,
                 **options: Any) -> Row | None:
        """:meth:`lock_rows`, for the one row ``where`` selects (None when there is none)."""
        rows = self.lock_rows(table, where, params, **options)
        return rows[0] if rows else None

    @abstractmethod
    def advisory_lock(self, key: int | str) -> None:
        """Take the lock named ``key`` until this transaction ends, waiting while another
        transaction holds it: callers that must take turns on something that is not one
        row (an incident key before its row exists, the audit chain's tail). PostgreSQL:
        ``pg_advisory_xact_lock`` (a text key hashed with ``hashtextextended``). SQLite:
        nothing to do, a write transaction already excludes every other writer."""

    @abstractmethod
    def notify(self, channel: str, payload: str = "") -> None:
        """Signal the :meth:`Database.listen` listeners of ``channel`` when, and only if,
        this transaction commits. PostgreSQL: ``pg_notify`` (sent at commit, one per
        channel and payload). SQLite: nothing to send, its listeners hear every commit that
        changed the database, so a notifying transaction must also write (every caller
        does: the notification says that it queued or freed something)."""

    @staticmethod
    def _select(table: str, where: str, columns: str, order_by: str | None,
                limit: int | None) -> str:
        sql = f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608 - store-internal fragments
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return sql


LockStrength = Literal["update", "no key update"]
"""Row lock strength for :meth:`Tx.lock_rows` (PostgreSQL's ``FOR UPDATE`` and
``FOR NO KEY UPDATE``)."""


class Listener(ABC):
    """A connection of its own that hears :meth:`Tx.notify` signals after their
    transaction commits. Used from one thread; the caller closes it."""

    tick: float
    """The timeout a loop that must also notice a stop flag gives :meth:`wait`: as long as
    one wait may block for (a wake-up) without costing CPU."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as a signal has arrived since the
        last call, False when none did. Raises StoreUnavailable when the connection is
        lost (open a new listener)."""

    @abstractmethod
    def close(self) -> None: ...


class Database(ABC):
    dialect: str
    # receiver.audit.chain.AuditKey: entries appended are HMAC-chained with it
    audit_key: Any = None
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

    @abstractmethod
    def listen(self, channel: str) -> Listener:
        """A :class:`Listener` for ``channel``'s :meth:`Tx.notify` signals, on a connection
        of its own (raises StoreUnavailable when the store cannot be reached)."""

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
        # BEGIN IMMEDIATE holds the database's write lock: no other writer runs until this
        # transaction ends, so the rows read here are already safe from change.
        return self.fetchall(self._select(table, where, columns, order_by, limit), params)

    def advisory_lock(self, key: int | str) -> None:
        """Nothing to take: the write lock of BEGIN IMMEDIATE already serialises writers."""

    def notify(self, channel: str, payload: str = "") -> None:
        """Nothing to send: a :class:`SqliteListener` hears the commit itself."""


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

    def listen(self, channel: str) -> Listener:
        """SQLite has no channels: the listener hears every commit that changed the
        database (see :class:`SqliteListener`), whatever ``channel`` is."""
        return SqliteListener(self.change_probe())

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


class SqliteListener(Listener):
    """A listener on SQLite: a signal is any commit that changed the database, by any
    connection of any process, read as a change of :class:`SqliteChangeProbe`'s value
    every ``tick`` seconds.

    Why this and not a signal sent by the notifying process: the transactions that notify
    commit in gunicorn workers, in other ``remediator worker`` processes and in CLI
    commands, each a process of its own; data_version sees every one of them, with nothing
    to set up and nothing to lose if a process dies. A check reads SQLite's shared-memory
    WAL index (no disk I/O, no lock that a writer waits for), so checking every 15 ms costs
    well under 1 % of a core while idle. Commits that notified nothing wake the listener
    too: its owner then finds nothing to do and writes nothing, so they do not feed back.
    """

    tick = 0.015

    def __init__(self, probe: SqliteChangeProbe) -> None:
        self._probe = probe
        try:
            self._seen = probe.version()
        except StoreUnavailable:
            probe.close()
            raise

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            # time.sleep, not Event.wait: at this rate the latter costs twice the CPU.
            time.sleep(max(min(self.tick, deadline - time.monotonic()), 0.0))
            version = self._probe.version()
            if version != self._seen:
                self._seen = version
                return True
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        self._probe.close()


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
            tx.advisory_lock(self.MIGRATION_LOCK_ID)
            yield tx

    def listen(self, channel: str) -> Listener:
        return _PgListener(self.url, channel, self.timeout)

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
