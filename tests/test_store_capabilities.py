"""The transaction's backend capabilities: row locks, advisory locks, notify and listen.

Each backend implements every capability explicitly (they are abstract on ``Tx`` and
``Database``), and each behaves as its callers rely on, on both backends: PostgreSQL with
real row and advisory locks and LISTEN/NOTIFY, SQLite through BEGIN IMMEDIATE (one writer at
a time) and a listener that hears commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.errors import StoreError
from receiver.store import Store
from receiver.store.db import Database, Listener, Row, Tx
from receiver.store.dialects import DIALECTS, PerDialect

NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --- a backend must implement every capability ---------------------------------------

class _FullTx(Tx):
    """Every abstract method of Tx, each doing nothing."""

    dialect = "third"

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return []

    def json(self, value: Any) -> Any:
        return value

    def lock_rows(self, table: str, where: str, params: Mapping[str, Any] | None = None,
                  **options: Any) -> list[Row]:
        return []

    def advisory_lock(self, key: int | str) -> None: ...

    def notify(self, channel: str, payload: str = "") -> None: ...


class _FullDatabase(Database):
    dialect = "third"

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        yield _FullTx()

    def close(self) -> None: ...

    @contextmanager
    def migration_lock(self) -> Iterator[Tx]:
        yield _FullTx()

    def listen(self, channel: str) -> Listener:
        raise NotImplementedError


def _without(base: type, name: str) -> type:
    """A subclass of ``base``'s abstract parent with every method of ``base`` but ``name``."""
    parent = base.__mro__[1]
    body = {k: v for k, v in vars(base).items() if k != name and not k.startswith("__")}
    return type(f"Missing_{name}", (parent,), body)


def test_a_complete_third_backend_can_be_created() -> None:
    assert isinstance(_FullTx(), Tx)
    assert isinstance(_FullDatabase(), Database)


@pytest.mark.parametrize("capability", ["lock_rows", "advisory_lock", "notify"])
def test_a_transaction_missing_a_capability_cannot_be_created(capability: str) -> None:
    cls = _without(_FullTx, capability)
    with pytest.raises(TypeError, match=capability):
        cls()


def test_a_database_without_listen_cannot_be_created() -> None:
    cls = _without(_FullDatabase, "listen")
    with pytest.raises(TypeError, match="listen"):
        cls()


def test_a_per_dialect_statement_needs_every_backend() -> None:
    both = PerDialect(postgres="p", sqlite="s")
    assert [both[d] for d in DIALECTS] == ["p", "s"]
    with pytest.raises(TypeError):
        PerDialect(postgres="p")  # type: ignore[call-arg]
    with pytest.raises(StoreError, match="third"):
        both["third"]
    with pytest.raises(StoreError, match="third"):
        both.of(_FullTx())


# --- lock_rows ------------------------------------------------------------------------

def _seed(store: Store, *names: str) -> None:
    with store.db.transaction() as tx:
        for name in names:
            tx.execute("INSERT INTO controls (name, value, reason, updated_by, updated_at)"
                       " VALUES (:n, 'v', '', 'test', :now)", {"n": name, "now": NOW})


def _value(tx: Tx, name: str) -> str | None:
    row = tx.fetchone("SELECT value FROM controls WHERE name = :n", {"n": name})
    return row["value"] if row else None


def test_lock_rows_returns_the_rows_it_selects(store: Store) -> None:
    _seed(store, "cap-c", "cap-a", "cap-b", "other")
    with store.db.transaction() as tx:
        rows = tx.lock_rows("controls", "name LIKE :p", {"p": "cap-%"},
                            columns="name, value", order_by="name", limit=2)
        assert rows == [{"name": "cap-a", "value": "v"}, {"name": "cap-b", "value": "v"}]
        assert tx.lock_row("controls", "name = :n", {"n": "cap-c"},
                           columns="name", skip_locked=True) == {"name": "cap-c"}
        assert tx.lock_row("controls", "name = :n", {"n": "none"}, columns="name",
                           strength="no key update") is None


def test_a_second_writer_waits_for_the_rows_the_first_locked(store: Store) -> None:
    """PostgreSQL: the row lock; SQLite: the write lock of BEGIN IMMEDIATE. Either way the
    second writer reads the row only after the first committed, and sees its change."""
    _seed(store, "cap-a")
    seen: list[str | None] = []

    def second() -> None:
        with store.db.transaction() as tx:
            row = tx.lock_row("controls", "name = :n", {"n": "cap-a"}, columns="value")
            seen.append(row["value"] if row else None)

    with store.db.transaction() as tx:
        assert tx.lock_row("controls", "name = :n", {"n": "cap-a"}, columns="name") is not None
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and seen == []  # waiting
        tx.execute("UPDATE controls SET value = 'first' WHERE name = 'cap-a'")
    thread.join(15)
    assert seen == ["first"]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_skip_locked_skips_a_row_another_transaction_holds(store: Store) -> None:
    _seed(store, "cap-a", "cap-b", "cap-c")
    args = ("controls", "name LIKE 'cap-%'")
    with store.db.transaction() as holder:
        assert holder.lock_row(*args, columns="name", order_by="name", limit=1,
                               skip_locked=True) == {"name": "cap-a"}
        with store.db.transaction() as other:  # another pooled connection
            assert other.lock_rows(*args, columns="name", order_by="name",
                                   skip_locked=True) == [{"name": "cap-b"}, {"name": "cap-c"}]
            assert other.lock_row(*args, columns="name", order_by="name", limit=1,
                                  skip_locked=True) == {"name": "cap-b"}
        # Without skip_locked the held row is waited for (here: until lock_timeout).
        with pytest.raises(StoreError, match="lock timeout"), store.db.transaction() as other:
            other.execute("SET LOCAL lock_timeout = '100ms'")
            other.lock_rows(*args, columns="name", order_by="name", limit=1)
        # A NO KEY UPDATE lock conflicts with the FOR UPDATE one too.
        with pytest.raises(StoreError, match="lock timeout"), store.db.transaction() as other:
            other.execute("SET LOCAL lock_timeout = '100ms'")
            other.lock_rows("controls", "name = 'cap-a'", columns="name",
                            strength="no key update")


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_lock_rows_of_a_join_locks_the_named_table_only(store: Store) -> None:
    _seed(store, "cap-a")
    with store.db.transaction() as tx:
        tx.execute("CREATE TABLE cap_side (name text PRIMARY KEY)")
        tx.execute("INSERT INTO cap_side VALUES ('cap-a')")
    join = "controls c JOIN cap_side s ON s.name = c.name"
    with store.db.transaction() as holder:
        assert holder.lock_rows(join, "c.name = 'cap-a'", columns="c.name", of="c") == [
            {"name": "cap-a"}]
        with store.db.transaction() as other:
            other.execute("SET LOCAL lock_timeout = '100ms'")
            other.execute("UPDATE cap_side SET name = name WHERE name = 'cap-a'")  # not locked
        with pytest.raises(StoreError, match="lock timeout"), store.db.transaction() as other:
            other.execute("SET LOCAL lock_timeout = '100ms'")
            other.execute("UPDATE controls SET value = 'x' WHERE name = 'cap-a'")


# --- advisory_lock ----------------------------------------------------------------------

@pytest.mark.parametrize("key", ["incident-key", 0x5EED])
def test_advisory_lock_makes_a_second_transaction_wait_until_the_first_commits(
    store: Store, key: int | str
) -> None:
    seen: list[str | None] = []

    def second() -> None:
        with store.db.transaction() as tx:
            tx.advisory_lock(key)
            seen.append(_value(tx, "cap-adv"))

    with store.db.transaction() as tx:
        tx.advisory_lock(key)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and seen == []  # waiting for the lock
        tx.execute("INSERT INTO controls (name, value, reason, updated_by, updated_at)"
                   " VALUES ('cap-adv', 'first', '', 'test', :now)", {"now": NOW})
    thread.join(15)
    assert seen == ["first"]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_advisory_locks_of_other_keys_do_not_wait(store: Store) -> None:
    with store.db.transaction() as holder:
        holder.advisory_lock("incident-key")
        holder.advisory_lock(7)
        with store.db.transaction() as other:
            other.execute("SET LOCAL lock_timeout = '100ms'")
            other.advisory_lock("another-key")
            other.advisory_lock(8)
        for key in ("incident-key", 7):
            with pytest.raises(StoreError, match="lock timeout"), store.db.transaction() as other:
                other.execute("SET LOCAL lock_timeout = '100ms'")
                other.advisory_lock(key)
    with store.db.transaction() as after:  # released at commit
        after.execute("SET LOCAL lock_timeout = '100ms'")
        after.advisory_lock("incident-key")


# --- notify and listen ------------------------------------------------------------------

def _write(tx: Tx, name: str) -> None:
    tx.execute("INSERT INTO controls (name, value, reason, updated_by, updated_at)"
               " VALUES (:n, 'v', '', 'test', :now)", {"n": name, "now": NOW})


def test_notify_reaches_a_listener_only_after_commit(store: Store) -> None:
    listener = store.db.listen("cap_jobs")
    try:
        with store.db.transaction() as tx:
            tx.notify("cap_jobs")
            tx.notify("cap_jobs")
            _write(tx, "cap-n1")
            assert listener.wait(0.3) is False  # not before the commit
        assert listener.wait(10) is True
        assert listener.wait(0.3) is False  # heard once

        with pytest.raises(RuntimeError), store.db.transaction() as tx:
            tx.notify("cap_jobs", "payload")
            _write(tx, "cap-n2")
            raise RuntimeError("rolled back")
        assert listener.wait(0.5) is False  # a rolled-back transaction is never heard
    finally:
        listener.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_listener_hears_its_own_channel_only(store: Store) -> None:
    mine, other = store.db.listen("cap_jobs"), store.db.listen("cap_other")
    try:
        assert mine.tick > 0 and other.tick > 0
        with store.db.transaction() as tx:
            tx.notify("cap_jobs", "x")
        assert mine.wait(10) is True
        assert other.wait(0.3) is False
    finally:
        mine.close()
        other.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_listener_on_an_unreachable_store_raises_store_unavailable(store: Store) -> None:
    from receiver.store.postgres import PostgresDatabase

    db = store.db
    assert isinstance(db, PostgresDatabase)
    dead = PostgresDatabase.__new__(PostgresDatabase)
    dead.url, dead.timeout = "postgresql://postgres@127.0.0.1:9/nowhere", 1.0
    with pytest.raises(StoreError):
        dead.listen("cap_jobs")
