"""SQLite writers take turns: a thread lock within a process, a lock on ``<db>.writer``
between processes, tried finely until the busy timeout; SQLite's own write lock stays
the guarantee underneath (a writer that does not take the turn still meets BEGIN
IMMEDIATE)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from receiver.errors import StoreUnavailable
from receiver.store.db import PROBE_SQL
from receiver.store.sqlite import SqliteDatabase

HOLD_TURN = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    open(sys.argv[3], "w").close()  # the marker, written just before the turn is given back
    fcntl.flock(fd, fcntl.LOCK_UN)
""")


def _db(tmp_path: Path, busy_ms: int = 10000) -> SqliteDatabase:
    db = SqliteDatabase(tmp_path / "data" / "remediator.db", busy_timeout_ms=busy_ms)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY,"
                   " probed_at TEXT NOT NULL)")
    return db


def _holder(tmp_path: Path, seconds: float) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "released"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_TURN, str(tmp_path / "data" / "remediator.db.writer"),
         str(seconds), str(marker)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc, marker


def test_a_write_waits_for_another_process_turn_then_runs(tmp_path: Path) -> None:
    """While another process holds the write turn, a write does not begin; it begins once
    the turn is given back (the holder's marker is already there) and commits."""
    db = _db(tmp_path)
    proc, marker = _holder(tmp_path, 0.5)
    try:
        with db.transaction() as tx:
            began_after_release = marker.exists()
            tx.execute(PROBE_SQL, {"now": "2026-12-01T00:00:00+00:00"})
        assert began_after_release
        with db.transaction(write=False) as tx:
            assert tx.fetchone("SELECT count(*) AS n FROM store_probe")["n"] == 1
    finally:
        proc.wait(10)
        db.close()


def test_a_turn_held_past_the_busy_timeout_gives_store_unavailable(tmp_path: Path) -> None:
    """A turn another process keeps past the busy timeout is a StoreUnavailable (the
    webhook's 503 that Alertmanager retries), not a hang; reads go on meanwhile."""
    db = _db(tmp_path, busy_ms=300)
    proc, marker = _holder(tmp_path, 3.0)
    try:
        with pytest.raises(StoreUnavailable, match="another process kept the write turn"):
            with db.transaction():
                pass
        assert not marker.exists()  # refused while the turn was still held
        with db.transaction(write=False) as tx:
            assert tx.fetchone("SELECT count(*) AS n FROM store_probe")["n"] == 0
    finally:
        proc.kill()
        proc.wait(10)
        db.close()


def test_writers_of_one_process_follow_each_other(tmp_path: Path) -> None:
    """Eight threads, fifty writes each, all committed: none is refused as busy."""
    db = _db(tmp_path, busy_ms=5000)
    with db.transaction() as tx:
        tx.execute("CREATE TABLE n (id INTEGER PRIMARY KEY AUTOINCREMENT, t INTEGER)")
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for _ in range(50):
                with db.transaction() as tx:
                    tx.execute("INSERT INTO n (t) VALUES (:t)", {"t": t})
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    with db.transaction(write=False) as tx:
        assert tx.fetchone("SELECT count(*) AS n FROM n")["n"] == 400
    db.close()


def test_a_write_inside_a_write_of_the_same_thread_is_refused_at_once(tmp_path: Path) -> None:
    """A nested write on one thread is SQLite's refusal (no waiting for its own turn)."""
    db = _db(tmp_path)
    try:
        with db.transaction():
            with pytest.raises(StoreUnavailable, match="within a transaction"):
                with db.transaction():
                    pass
        with db.transaction() as tx:  # the turn was given back
            tx.execute(PROBE_SQL, {"now": "2026-12-01T00:00:00+00:00"})
    finally:
        db.close()
