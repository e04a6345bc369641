"""Long command-line work shows progress on a terminal and nothing otherwise: the commands
run as real processes, once with stderr on a pseudo-terminal and once on a pipe, and print
the same results on stdout either way."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from receiver.audit.checkpoints import store_options
from receiver.config import parse_config
from receiver.store import audit as audit_store
from receiver.store import open_store
from tests.conftest import PG_DSN, pg_url

CLI = [sys.executable, "-c", "from receiver.cli import main; main()"]
PG_BIN = os.environ.get("REMEDIATOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin")
TIMEOUT = 60.0

pytestmark = pytest.mark.slow  # each case starts the CLI a few times (seconds each)


def run(argv: list[str], *, tty: bool, env: dict[str, str] | None = None
        ) -> tuple[int, str, str]:
    """Run the CLI; stderr on a pseudo-terminal when ``tty``, else on a pipe."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "100"}
    if not tty:
        p = subprocess.run([*CLI, *argv], capture_output=True, text=True, env=full_env,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        return p.returncode, p.stdout, p.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=full_env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(TIMEOUT)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def write_config(tmp_path: Path, store_url: str, **extra: object) -> Path:
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump({"store": {"url": store_url},
                                    "data_dir": str(tmp_path / "data"), **extra}),
                    encoding="utf-8")
    return path


def test_audit_verify_shows_progress_only_on_a_terminal(store_url: str,
                                                        tmp_path: Path) -> None:
    """On a terminal: a bar labelled with the work and its count of entries; on a pipe:
    no bar; stdout says the same either way."""
    cfg_path = write_config(tmp_path, store_url)
    cfg = parse_config(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
    store = open_store(store_url, **store_options(cfg))
    try:
        at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
        with store.db.transaction() as tx:
            for i in range(40):
                audit_store.append(tx, at=at + timedelta(seconds=i), actor="user:alice",
                                   action="test.action", subject=f"thing:{i}",
                                   incident_id=None, details={"i": i})
    finally:
        store.close()
    code, out, err = run(["audit", "verify", "-c", str(cfg_path)], tty=True)
    assert code == 0, (out, err)
    assert "verifying the audit chain" in err and "40/40" in err
    code2, out2, err2 = run(["audit", "verify", "-c", str(cfg_path)], tty=False)
    assert code2 == 0 and out2 == out and "ok: 40 entries" in out
    assert "verifying" not in err2 and "40/40" not in err2 and "\r" not in err2


def test_report_shows_progress_only_on_a_terminal(store_url: str, tmp_path: Path) -> None:
    """report --html: its steps as a bar on a terminal, none on a pipe; the file either way."""
    cfg_path = write_config(tmp_path, store_url)
    for tty in (True, False):
        html = tmp_path / f"report-{tty}.html"
        code, out, err = run(["report", "-c", str(cfg_path), "--since", "90d",
                              "--html", str(html)], tty=tty)
        assert code == 0, (out, err)
        assert "incidents since" in out and html.read_text(encoding="utf-8").startswith(
            "<!doctype html>")
        assert ("4/4" in err and "report" in err) is tty, err
        assert ("\r" in err or "\x1b" in err) is tty, err


@pytest.fixture
def backup_db() -> Iterator[str]:
    """A small database of its own for pg_dump to back up, dropped afterwards."""
    name = f"t_backup_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO items SELECT generate_series(1, 1000)")
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_create_and_verify_show_progress_only_on_a_terminal(
        backup_db: str, tmp_path: Path) -> None:
    """backup create shows how long the dump has taken, backup verify a bar over the
    backups, on a terminal only; their results on stdout are the same either way."""
    env = {"RMTEST_PROGRESS_PG_DSN": pg_url(backup_db)}
    targets = {
        "postgres": {"main": {"dsn": "env:RMTEST_PROGRESS_PG_DSN", "databases": [backup_db],
                              "bin_dir": PG_BIN, "connect_timeout_s": 5}},
        "backups": {"app": {"directory": str(tmp_path / "backups"), "postgres": "main",
                            "database": backup_db, "dump_timeout_s": 60}},
    }
    cfg_path = write_config(tmp_path, f"sqlite:///{tmp_path}/r.db", targets=targets)
    code, out, err = run(["backup", "create", "-c", str(cfg_path), "app"], tty=True, env=env)
    assert code == 0, (out, err)
    assert out.startswith("created ") and "dumping app" in err
    time.sleep(1.1)  # backup names carry the second they were made
    code, out, err = run(["backup", "create", "-c", str(cfg_path), "app"], tty=False, env=env)
    assert code == 0, (out, err)
    assert out.startswith("created ") and err == ""
    code, out, err = run(["backup", "verify", "-c", str(cfg_path), "app"], tty=True, env=env)
    assert code == 0, (out, err)
    assert "verifying backups" in err and "2/2" in err
    code2, out2, err2 = run(["backup", "verify", "-c", str(cfg_path), "app"], tty=False,
                            env=env)
    assert code2 == 0 and out2 == out and out.count("ok  ") == 2
    assert err2 == ""
