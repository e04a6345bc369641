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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from receiver.errors import StoreConflict, StoreError, StoreUnavailable
from receiver.secrets import NO_SECRETS, Redactor

__all__ = ["Database", "Listener", "LockStrength", "Row", "StoreConflict", "StoreError",
           "StoreUnavailable", "Tx", "open_database"]

log = structlog.get_logger(__name__)

JSON_COLUMNS = frozenset(
    {"labels", "annotations", "group_labels", "detail", "params", "result", "plan", "details",
     "groups", "origin", "targets", "figures"}
)
TIME_COLUMNS = frozenset({"at", "not_before"})
"""Timestamp columns besides the ``*_at`` ones (decoded from text on SQLite)."""
Row = dict[str, Any]

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


PROBE_SQL = """INSERT INTO store_probe (id, probed_at) VALUES (1, :now)
ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at"""
"""The write of the readiness probe (migration 0011: one row, rewritten)."""


def open_database(
    url: str, *, pool_min: int = 1, pool_max: int = 10, timeout: float = 3.0
) -> Database:
    """Open the database named by a store URL (``sqlite:///path`` or ``postgresql://...``)."""
    from receiver.store.postgres import PostgresDatabase
    from receiver.store.sqlite import SqliteDatabase

    if url.startswith("sqlite:///"):
        # sqlite:///relative/path, sqlite:////absolute/path (the SQLAlchemy convention)
        return SqliteDatabase(Path(url[len("sqlite:///") :]))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, min_size=pool_min, max_size=pool_max, timeout=timeout)
    raise StoreError("unsupported store URL scheme")
