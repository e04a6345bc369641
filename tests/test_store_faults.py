"""The embedded store under faults, on a real small filesystem (a 2 MiB tmpfs mounted for
the test), and the modes of the files it creates.

A full data directory makes /readyz say not ready and the webhook answer 503 (so that
Alertmanager retries); once space is freed both recover, the retried notification is
stored, and a checkpoint from the worker's chores truncates the WAL. ``remediator serve``
on a full data directory says so, and what to do.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from receiver.app import create_app
from receiver.config import Config
from receiver.remediation.worker import Worker
from receiver.store import Store, open_store
from tests.conftest import TOKEN, drop_pg_database, make_config, new_pg_database, pg_url
from tests.factories import make_alert, make_notification, unique_group
from tests.support import free_port, poll

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (room for the migrated schema, a WAL and its checkpoint), unmounted
    (lazily, should a test leave a file open) afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> Path:
    """Write a file until the filesystem is full; the file, to delete to free the space."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):  # then the last partial block, byte by byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    assert os.statvfs(fs).f_bavail == 0
    return filler


def web_config(data_dir: Path) -> Config:
    return make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, data_dir=str(data_dir),
                       server={"secure_cookies": False})


def client_for(config: Config) -> tuple[Any, Store]:
    store = open_store(config.store_url())
    store.migrate()
    app = create_app(config, store=store)
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return c, store


def alerts_stored(store: Store) -> int:
    with store.db.transaction(write=False) as tx:
        return int(tx.fetchone("SELECT COUNT(*) AS n FROM alerts")["n"])


def wal_bytes(config: Config) -> int:
    wal = Path(config.store_url().removeprefix("sqlite:///") + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def notification(size: int = 0) -> bytes:
    annotations = {"description": "trace line\n" * (size // 11)} if size else {}
    return json.dumps(make_notification([make_alert(
        labels={"instance": uuid.uuid4().hex}, annotations=annotations)],
        group_key=unique_group())).encode()


def post(client: Any, body: bytes) -> Any:
    return client.post("/api/v1/alerts", data=body, content_type="application/json")


def test_full_data_dir_is_not_ready_and_recovers(small_fs: Path) -> None:
    """With the data directory's filesystem full, /readyz answers 503 and the webhook 503
    (nothing stored); after space is freed both answer 200, the retried notification is
    stored, and the worker's chores keep the WAL bounded and truncate it."""
    config = web_config(small_fs / "data")
    client, store = client_for(config)
    worker = Worker(config, store, worker_id="faults")
    try:
        assert post(client, notification()).status_code == 200
        assert client.get("/readyz").status_code == 200

        filler = fill(small_fs)
        time.sleep(store.db.PROBE_TTL)  # past the probe's cache
        ready = client.get("/readyz")
        print(f"\nfull: /readyz {ready.status_code} {ready.json}")
        assert ready.status_code == 503
        assert ready.json["store"] == "cannot_commit"
        assert "no space left" in ready.json["detail"]

        retried = notification(200_000)
        before = alerts_stored(store)
        r = post(client, retried)
        print(f"full: webhook {r.status_code} {r.json}")
        assert r.status_code == 503, r.data[:300]  # Alertmanager retries a 5xx
        assert r.json["error"] == "store_unavailable"
        assert alerts_stored(store) == before

        filler.unlink()
        ready = poll(lambda: client.get("/readyz").status_code == 200, 5.0, 0.2)
        assert ready, "/readyz did not recover after space was freed"
        assert post(client, retried).status_code == 200  # the retry is stored
        assert alerts_stored(store) == before + 1

        # The worker runs its chores every poll interval; here once per notification.
        # The disk holds 2 MiB: without checkpoints 30 of these fill it (~130 kB of WAL each).
        seen = []
        for _ in range(30):
            assert post(client, notification(10_000)).status_code == 200
            worker.chores()
            seen.append(wal_bytes(config))
        print(f"WAL bytes after each round of chores: {seen}")
        assert max(seen) < 1024 * 1024
        store.db._checkpointed_at = float("-inf")  # CHECKPOINT_INTERVAL has passed
        worker.chores()
        assert wal_bytes(config) == 0
        assert client.get("/readyz").status_code == 200
    finally:
        store.close()


def test_a_checkpoint_that_failed_on_a_full_disk_succeeds_once_space_is_freed(
        small_fs: Path) -> None:
    """On a full disk the WAL cannot be copied into the database (it must grow): the
    checkpoint fails without breaking the chores, and the next one after space is freed
    truncates the WAL to zero bytes."""
    config = web_config(small_fs / "data")
    client, store = client_for(config)
    try:
        for _ in range(8):
            assert post(client, notification(10_000)).status_code == 200
        wal = wal_bytes(config)
        filler = fill(small_fs)
        assert store.db.maintain() == 0  # failed (logged), the chores carry on
        assert wal_bytes(config) == wal
        filler.unlink()
        store.db._checkpointed_at = float("-inf")  # as if CHECKPOINT_INTERVAL had passed
        assert store.db.maintain() == 1
        assert wal_bytes(config) == 0
    finally:
        store.close()


def _serve(config_path: Path, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REMEDIATOR_TEST_TOKEN": TOKEN}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "receiver", "serve", "-c", str(config_path),
         "--bind", f"127.0.0.1:{free_port()}", "--no-worker"],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_serve_on_a_full_data_dir_says_no_space_and_what_to_do(small_fs: Path,
                                                                tmp_path: Path) -> None:
    """`remediator serve` on a full data directory exits 1 naming DATA_DIR and the fix,
    not with SQLite's "disk I/O error"."""
    data_dir = small_fs / "data"
    data_dir.mkdir()
    config_path = tmp_path / "remediator.yml"
    config_path.write_text(yaml.safe_dump({
        "data_dir": str(data_dir), "auth": {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
    }), encoding="utf-8")
    fill(small_fs)
    done = _serve(config_path, data_dir)
    print(f"\nserve exited {done.returncode}:\n{done.stderr}")
    assert done.returncode == 1
    assert f"no space left in DATA_DIR ({data_dir})" in done.stderr
    assert "Free space on that filesystem" in done.stderr
    assert "disk I/O error" not in done.stderr


def test_data_dir_is_0700_and_store_files_0600(tmp_path: Path) -> None:
    """A new data directory is created 0700; the SQLite database, its -wal and -shm, its
    write-turn lock file and the generated secret_key are 0600."""
    data_dir = tmp_path / "fresh" / "data"
    config = web_config(data_dir)
    old = os.umask(0o022)  # the usual umask: without care, files would be 0644
    try:
        client, store = client_for(config)
        try:
            assert post(client, notification()).status_code == 200
            db = Path(config.store_url().removeprefix("sqlite:///"))
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.writer"),
                     data_dir / "secret_key"]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
            print(f"\n{data_dir}: {oct(stat.S_IMODE(data_dir.stat().st_mode))}, {modes}")
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            assert modes == {p.name: 0o600 for p in files}
        finally:
            store.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    """A database file left 0644 by an older version is 0600 once the store opens it."""
    config = web_config(tmp_path / "data")
    db = Path(config.store_url().removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True)
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    store = open_store(config.store_url())
    try:
        store.migrate()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
    finally:
        store.close()


def test_read_only_postgresql_is_not_ready(tmp_path: Path) -> None:
    """A PostgreSQL that answers queries but cannot commit a write (a read-only standby
    after a failover) is not ready: /readyz answers 503, not 200."""
    name = new_pg_database(None)
    url = pg_url(name)
    try:
        store = open_store(url)
        store.migrate()
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'.encode())
        config = make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
                             data_dir=str(tmp_path / "data"), store={"url": url})
        store = open_store(url)
        try:
            client = create_app(config, store=store).test_client()
            r = client.get("/readyz")
            print(f"\nread-only PostgreSQL: /readyz {r.status_code} {r.json}")
            assert r.status_code == 503
            assert r.json["store"] == "cannot_commit"
        finally:
            store.close()
    finally:
        drop_pg_database(name)
