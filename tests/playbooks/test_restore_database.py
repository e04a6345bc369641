"""Backups and restore_database against the real PostgreSQL and the real pg_dump/pg_restore/psql."""

from __future__ import annotations

import gzip
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest

from playbooks.restore_database import RestoreDatabase, RestoreDatabaseParams
from receiver.errors import AdapterError, PlaybookError, TargetNotAllowed
from receiver.remediation import backups
from tests.playbooks.conftest import (
    CLOSED_PG_ENV,
    PG_BIN,
    PG_DSN_ENV,
    make_ctx,
    make_targets,
    pg_url,
)

PLAYBOOK = RestoreDatabase()


@pytest.fixture
def db(pg_database: str) -> str:
    """The module's database, reset to three known rows for each test."""
    with psycopg.connect(pg_url(pg_database), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    return pg_database


def rows(db: str) -> list[tuple[int, str]]:
    with psycopg.connect(pg_url(db), autocommit=True) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, name FROM items ORDER BY id")]


def execute(db: str, statement: str) -> None:
    with psycopg.connect(pg_url(db), autocommit=True) as conn:
        conn.execute(statement)


def targets_for(db: str, directory: Path, *, dsn_env: str = PG_DSN_ENV, **location: Any) -> Any:
    return make_targets(
        postgres={
            "main": {
                "dsn": f"env:{dsn_env}",
                "databases": [db],
                "bin_dir": str(PG_BIN),
                "connect_timeout_s": 2,
            }
        },
        backups={
            "app": {
                "directory": str(directory),
                "postgres": "main",
                "database": db,
                "verify_query": "SELECT count(*) >= 3 FROM items",
                "dump_timeout_s": 60,
                "restore_timeout_s": 60,
                **location,
            }
        },
    )


def test_create_list_and_verify_backups(db: str, tmp_path: Path) -> None:
    """create_backup writes a private dump and manifest; list is newest first; both verify."""
    targets = targets_for(db, tmp_path / "b")
    first = backups.create_backup(targets, "app", kind="scheduled")
    second = backups.create_backup(targets, "app", fmt="sql.gz")
    listing = backups.list_backups(targets, "app")
    assert [b.name for b in listing.backups] == [second.name, first.name]
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["sha256"] == first.sha256 and manifest["database"] == db
    assert manifest["kind"] == "scheduled" and manifest["format"] == "custom"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    for b in listing.backups:
        check = backups.verify_backup(targets, "app", b)
        assert check.ok, check.problems
    assert not list((tmp_path / "b").glob(".*partial"))


def test_plan_names_backup_and_safety_path_and_changes_nothing(db: str, tmp_path: Path) -> None:
    """plan() names the newest verified backup and the safety dump path, and writes no file."""
    targets = targets_for(db, tmp_path)
    newest = backups.create_backup(targets, "app")
    files = sorted(tmp_path.iterdir())
    plan = PLAYBOOK.plan(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert plan.detail["backup"]["name"] == newest.name
    assert plan.detail["safety_dump"].startswith(str(tmp_path))
    assert "safety" in plan.detail["safety_dump"]
    assert sorted(tmp_path.iterdir()) == files
    assert rows(db) == [(1, "one"), (2, "two"), (3, "three")]


@pytest.mark.parametrize("fmt", ["custom", "sql.gz"])
def test_restore_brings_back_deleted_rows(
    db: str, tmp_path: Path, fmt: backups.BackupFormat
) -> None:
    """After rows are deleted, run() restores them, keeps a safety dump, and verify() passes."""
    targets = targets_for(db, tmp_path)
    backup = backups.create_backup(targets, "app", fmt=fmt)
    execute(db, "DELETE FROM items WHERE id > 1")
    ctx = make_ctx(targets)
    params = RestoreDatabaseParams(location="app")
    result = PLAYBOOK.run(params, ctx)
    assert result.ok, result.summary
    assert result.detail["backup"]["name"] == backup.name
    assert rows(db) == [(1, "one"), (2, "two"), (3, "three")]
    safety = Path(result.detail["safety_dump"]["path"])
    assert safety.is_file() and result.detail["safety_dump"]["kind"] == "safety"
    assert PLAYBOOK.verify(params, ctx, result).ok


def test_safety_dump_holds_the_state_before_restore(db: str, tmp_path: Path) -> None:
    """The safety dump taken before a restore can itself bring back the pre-restore rows."""
    targets = targets_for(db, tmp_path)
    backups.create_backup(targets, "app")
    execute(db, "INSERT INTO items VALUES (4, 'four')")
    result = PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert result.ok and (4, "four") not in rows(db)
    safety_name = result.detail["safety_dump"]["name"]
    again = PLAYBOOK.run(
        RestoreDatabaseParams(location="app", backup=safety_name), make_ctx(targets)
    )
    assert again.ok, again.summary
    assert (4, "four") in rows(db)


def test_newest_corrupt_backup_is_skipped_for_an_older_good_one(db: str, tmp_path: Path) -> None:
    """A newest backup whose bytes no longer match its manifest is rejected; the older is used."""
    targets = targets_for(db, tmp_path)
    good = backups.create_backup(targets, "app")
    bad = backups.create_backup(targets, "app")
    with bad.path.open("r+b") as fh:
        fh.seek(bad.size // 2)
        fh.write(b"\x00garbage\x00")
    execute(db, "DELETE FROM items")
    result = PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert result.ok
    assert result.detail["backup"]["name"] == good.name
    assert result.detail["rejected"][0]["name"] == bad.name
    assert "sha256" in " ".join(result.detail["rejected"][0]["problems"])
    assert len(rows(db)) == 3


def rewrite_manifest(backup: backups.Backup) -> None:
    """Make the manifest match the (damaged) file, so that only a content check can catch it."""
    body = json.loads(backup.manifest_path.read_text())
    data = backup.path.read_bytes()
    body["sha256"], body["size"] = hashlib.sha256(data).hexdigest(), len(data)
    backup.manifest_path.write_text(json.dumps(body))


@pytest.mark.parametrize("fmt", ["custom", "sql.gz"])
def test_corrupt_only_backup_is_refused_and_database_untouched(
    db: str, tmp_path: Path, fmt: backups.BackupFormat
) -> None:
    """A truncated dump, even with a matching checksum, is refused; no safety dump, no change."""
    targets = targets_for(db, tmp_path)
    backup = backups.create_backup(targets, "app", fmt=fmt)
    backup.path.write_bytes(backup.path.read_bytes()[: backup.size // 2])
    rewrite_manifest(backup)
    execute(db, "INSERT INTO items VALUES (4, 'four')")
    before = rows(db)
    with pytest.raises(PlaybookError, match="no backup .* verifies"):
        PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert rows(db) == before
    [listed] = backups.list_backups(targets, "app").backups
    assert listed.kind == "manual"
    check = backups.verify_backup(targets, "app", listed)
    assert not check.ok
    assert ("pg_restore --list" if fmt == "custom" else "gzip") in check.problems[0]


def test_manifest_pointing_outside_the_location_is_ignored(db: str, tmp_path: Path) -> None:
    """A manifest naming '../../etc/passwd' is listed as invalid and never restored."""
    targets = targets_for(db, tmp_path)
    evil = tmp_path / "x.dump.manifest.json"
    evil.write_text(json.dumps({"manifest_version": 1, "file": "../../etc/passwd"}))
    listing = backups.list_backups(targets, "app")
    assert listing.backups == []
    assert listing.invalid[0][0] == evil
    with pytest.raises(PlaybookError, match="not a plain file name"):
        PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))


def test_failing_verify_query_makes_the_run_not_ok(db: str, tmp_path: Path) -> None:
    """A restore whose verify query returns false is reported ok=False."""
    targets = targets_for(db, tmp_path, verify_query="SELECT count(*) > 100 FROM items")
    backups.create_backup(targets, "app")
    result = PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert result.ok is False
    assert result.detail["restored"] is True and result.detail["verify_value"] == "False"


def test_failed_restore_rolls_back(db: str, tmp_path: Path) -> None:
    """A plain dump that errors half-way is rolled back whole: the database keeps its rows."""
    targets = targets_for(db, tmp_path)
    backup = backups.create_backup(targets, "app", fmt="sql.gz")
    script = gzip.decompress(backup.path.read_bytes()) + b"\nSELECT no_such_function();\n"
    backup.path.write_bytes(gzip.compress(script))
    rewrite_manifest(backup)
    execute(db, "DELETE FROM items WHERE id = 3")
    result = PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert result.ok is False and result.detail["restored"] is False
    assert "no_such_function" in result.detail["error"]
    assert rows(db) == [(1, "one"), (2, "two")]


def test_unreachable_database_is_an_adapter_error(db: str, tmp_path: Path) -> None:
    """With the server unreachable, run() raises AdapterError before any dump is taken."""
    targets = targets_for(db, tmp_path / "b", dsn_env=CLOSED_PG_ENV)
    with pytest.raises(AdapterError, match="unreachable"):
        PLAYBOOK.run(RestoreDatabaseParams(location="app"), make_ctx(targets))
    assert not (tmp_path / "b").exists()
    with pytest.raises(AdapterError):
        backups.create_backup(targets, "app")


def test_location_not_allowed_is_refused(db: str, tmp_path: Path) -> None:
    """An unknown backup location is refused, from plan and run alike."""
    ctx = make_ctx(targets_for(db, tmp_path))
    with pytest.raises(TargetNotAllowed, match="targets.backups"):
        PLAYBOOK.plan(RestoreDatabaseParams(location="prod"), ctx)
    with pytest.raises(TargetNotAllowed):
        PLAYBOOK.run(RestoreDatabaseParams(location="prod"), ctx)


def test_tools_found_on_path_with_a_scrubbed_environment(db: str, tmp_path: Path) -> None:
    """Without bin_dir the tools come from PATH, and they see PATH and PG* variables only."""
    targets = targets_for(db, tmp_path)
    target = targets.postgres_target("main").model_copy(update={"bin_dir": None})
    tools = make_ctx(targets).adapters.pg_tools(target)
    env = tools.env(db)
    assert set(env) <= {"PATH"} | {k for k in env if k.startswith("PG")}
    assert env["PGDATABASE"] == db
    assert tools.version("pg_dump").startswith("pg_dump (PostgreSQL)")
