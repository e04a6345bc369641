"""The SQLite backend: one connection per thread, WAL, BEGIN IMMEDIATE for writes, taken
in turn (a thread lock within a process, a file lock beside the database between them).

Timestamps are ISO-8601 UTC text and JSON is text; rows are decoded to the same Python
values as PostgreSQL's (see :mod:`receiver.store.db`)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from receiver.errors import StoreUnavailable
from receiver.store.db import (
    Database,
    Listener,
    LockStrength,
    Row,
    Tx,
    _decode_row,
    _iso,
)

log = structlog.get_logger(__name__)


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
        # This process's writers queue here, woken the moment the one before commits:
        # SQLite's busy handler would have them sleep and retry (up to 100 ms a nap), which
        # made the tail of a busy receiver's latency. Other processes still meet at
        # BEGIN IMMEDIATE, one writer each.
        self._writer = threading.Lock()
        self._turn_fd: int | None = None
        self._turn_pid = 0
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
        if not write or getattr(self._local, "writing", False):
            # a read; or a write inside this thread's write, which SQLite refuses at once
            with self._transaction(write=write) as tx:
                yield tx
            return
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        if not self._writer.acquire(timeout=self.busy_timeout_ms / 1000):
            raise StoreUnavailable("SQLite store busy: this process's writers did not get a turn")
        try:
            fd = self._writer_turn(deadline)
            self._local.writing = True
            try:
                with self._transaction(write=True) as tx:
                    yield tx
            finally:
                self._local.writing = False
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._writer.release()

    def _writer_turn(self, deadline: float) -> int:
        """This process's turn among the processes writing the file: a lock on a file
        beside it, tried every fraction of a millisecond until ``deadline`` (the busy
        timeout), so a writer starts right after the one before it commits."""
        if self._turn_fd is None or self._turn_pid != os.getpid():  # none yet, or forked
            try:
                self._turn_fd = os.open(self.path.with_name(self.path.name + ".writer"),
                                        os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreUnavailable(f"cannot open the SQLite store's write turn: {exc}"
                                       ) from exc
            self._turn_pid = os.getpid()
        nap = 0.0001
        while True:
            try:
                fcntl.flock(self._turn_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self._turn_fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        "SQLite store busy: another process kept the write turn") from None
                time.sleep(nap)
                nap = min(nap * 2, 0.001)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Tx]:
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
        if self._turn_fd is not None and self._turn_pid == os.getpid():
            os.close(self._turn_fd)
        self._turn_fd = None


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
