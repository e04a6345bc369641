"""The audit log: the keyed (HMAC) chain, signed checkpoints, tamper detection done the way a
database owner would tamper (real SQL on both backends), the append-only triggers, concurrent
writers, unkeyed entries from before the key, CLI verify/export and the verify endpoint."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.audit.chain import GENESIS, AuditKey, chain_hash
from receiver.audit.checkpoints import audit_key, read_checkpoints, store_options, write_checkpoint
from receiver.cli import main
from receiver.config import Config, parse_config
from receiver.store import Store, open_store
from receiver.store import audit as audit_store
from tests.conftest import OP, Clock, drop_pg_database, new_pg_database, pg_url

KEY = AuditKey("test-audit-key-0123456789abcdef")
WRONG = AuditKey("someone-elses-key-0123456789abc")

SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log\n"
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log\n"
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
)

Statement = tuple[str, dict[str, Any]]


def fill(store: Store, clock: Clock, n: int = 5) -> None:
    for i in range(n):
        with store.db.transaction() as tx:
            audit_store.append(tx, at=clock() + timedelta(seconds=i), actor="user:alice",
                               action="test.action", subject=f"thing:{i}", incident_id=None,
                               details={"i": i, "password": "hunter2"})


def audit_config(tmp_path: Path, store_url: str, **audit: Any) -> Config:
    return parse_config({"store": {"url": store_url}, "data_dir": str(tmp_path / "data"),
                         "audit": audit})


@pytest.fixture
def keyed(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store that chains with KEY and verifies against tmp_path/checkpoints."""
    s = open_store(store_url, pool_min=1, pool_max=8, audit_key=KEY,
                   checkpoint_dir=tmp_path / "checkpoints")
    yield s
    s.close()


def checkpoint(store: Store, tmp_path: Path, store_url: str) -> dict[str, Any]:
    cfg = audit_config(tmp_path, store_url)
    body = write_checkpoint(store, cfg, reason="test", process="pytest")
    assert body is not None
    return body


def rows_of(store: Store) -> list[dict[str, Any]]:
    with store.db.transaction(write=False) as tx:
        return list(audit_store.walk(tx))


def owner_sql(store_url: str, statements: list[Statement], *, keep_triggers: bool = True) -> None:
    """Run SQL as the database's owner would: get the append-only triggers out of the way,
    change the rows, and (unless told otherwise) put the triggers back to hide it."""
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        for sql, params in statements:
            conn.execute(sql, params)
        if keep_triggers:
            for sql in SQLITE_TRIGGERS:
                conn.execute(sql)
        conn.commit()
        conn.close()
        return
    with psycopg.connect(store_url, autocommit=True) as pg:
        pg.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for sql, params in statements:
            if params:
                pg.execute(re.sub(r"(?<![\w:]):(\w+)", r"%(\1)s", sql).encode(), params)
            else:
                pg.execute(sql.encode())
        if keep_triggers:
            pg.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def rehash(rows: list[dict[str, Any]], start: int, *, key: AuditKey | None,
           key_id: str | None = None) -> list[Statement]:
    """Rewrite entry 3's actor and recompute every hash from ``start`` on: with plain sha256
    (key None), or HMAC with another key (claiming ``key_id``)."""
    prev = rows[start - 2]["hash"] if start > 1 else GENESIS
    out: list[Statement] = []
    for row in rows[start - 1:]:
        e = dict(row)
        if e["seq"] == 3:
            e["actor"] = "user:mallory"
        e["prev_hash"] = prev
        e["alg"] = "sha256" if key is None else "hmac-sha256"
        e["key_id"] = None if key is None else (key_id or key.id)
        e["hash"] = prev = chain_hash(prev, e, key)
        out.append(("UPDATE audit_log SET actor = :actor, prev_hash = :prev_hash, hash = :hash,"
                    " alg = :alg, key_id = :key_id WHERE seq = :seq",
                    {k: e[k] for k in ("actor", "prev_hash", "hash", "alg", "key_id", "seq")}))
    return out


def insert_middle(rows: list[dict[str, Any]]) -> list[Statement]:
    """Renumber entries 3..5 to 4..6 and put a forged entry 3 between 2 and the old 3."""
    out: list[Statement] = [("UPDATE audit_log SET seq = :new WHERE seq = :old",
                             {"new": s + 1, "old": s}) for s in (5, 4, 3)]
    out.append(("INSERT INTO audit_log (seq, at, actor, action, subject, incident_id, details,"
                " origin, prev_hash, hash, alg, key_id) VALUES (3, :at, 'user:mallory',"
                " 'test.action', 'thing:forged', NULL, '{}', '{}', :prev, :hash,"
                " 'hmac-sha256', :key_id)",
                {"at": "2026-03-02T10:00:02.500000+00:00", "prev": rows[1]["hash"],
                 "hash": "f" * 64, "key_id": KEY.id}))
    return out


Attack = Callable[[list[dict[str, Any]]], list[Statement]]

ATTACKS: dict[str, tuple[Attack, int, str]] = {
    "edited actor": (lambda rows: [("UPDATE audit_log SET actor = 'user:mallory'"
                                    " WHERE seq = 3", {})], 3, "edited"),
    "edited details": (lambda rows: [("UPDATE audit_log SET details = '{\"i\": 99}'"
                                      " WHERE seq = 4", {})], 4, "edited"),
    "deleted middle": (lambda rows: [("DELETE FROM audit_log WHERE seq = 2", {})], 3, "deleted"),
    "inserted middle": (insert_middle, 4, "entry seq 3 was inserted"),
    "deleted tail": (lambda rows: [("DELETE FROM audit_log WHERE seq >= 4", {})], 4,
                     "tail deleted"),
    "everything deleted": (lambda rows: [("DELETE FROM audit_log", {})], 1, "tail deleted"),
    "re-hashed with sha256 from seq 3": (lambda rows: rehash(rows, 3, key=None), 3,
                                         "re-hashed without the key"),
    "re-hashed with sha256 from seq 1": (lambda rows: rehash(rows, 1, key=None), 1,
                                         "re-hashed without the key"),
    "re-hashed with a wrong key": (lambda rows: rehash(rows, 3, key=WRONG), 3,
                                   "re-hashed with a different key"),
    "re-hashed with a wrong key claiming ours": (
        lambda rows: rehash(rows, 3, key=WRONG, key_id=KEY.id), 3, "HMAC does not match"),
    "forged sha256 entry appended": (
        lambda rows: [("INSERT INTO audit_log (seq, at, actor, action, subject, incident_id,"
                       " details, origin, prev_hash, hash, alg) VALUES (6, :at, 'user:mallory',"
                       " 'x', 'y', NULL, '{}', '{}', :prev, :hash, 'sha256')",
                       {"at": "2026-03-02T10:00:10.000000+00:00", "prev": rows[-1]["hash"],
                        "hash": chain_hash(rows[-1]["hash"], {
                            "seq": 6, "at": "2026-03-02T10:00:10.000000+00:00",
                            "actor": "user:mallory", "action": "x", "subject": "y"})})],
        6, "re-hashed without the key"),
}


def test_intact_keyed_chain_verifies_and_secrets_are_redacted(keyed: Store, clock: Clock,
                                                              tmp_path: Path,
                                                              store_url: str) -> None:
    """A fresh keyed chain verifies against its checkpoint; entries are HMACs under the
    key (not sha256), linked, and a 'password' detail is stored redacted."""
    fill(keyed, clock)
    checkpoint(keyed, tmp_path, store_url)
    r = keyed.verify_audit()
    assert r.ok and r.checked == 5 and r.keyed == 5 and r.legacy == 0, r.problems
    assert r.checkpoint is not None and r.checkpoint.seq == 5 and r.notes == ()
    rows = rows_of(keyed)
    assert all(row["details"]["password"] == "[redacted]" for row in rows)
    assert rows[0]["prev_hash"] == GENESIS and rows[1]["prev_hash"] == rows[0]["hash"]
    assert {row["alg"] for row in rows} == {"hmac-sha256"} and rows[0]["key_id"] == KEY.id
    assert rows[0]["hash"] != chain_hash(GENESIS, {**rows[0], "alg": "sha256"})


def test_many_entries_of_one_transaction_chain_in_order(keyed: Store, clock: Clock,
                                                        tmp_path: Path, store_url: str) -> None:
    """A transaction that appends more entries than one insert carries (450) writes them
    all, in the order appended, as one unbroken chain after an earlier transaction's."""
    fill(keyed, clock, n=2)
    with keyed.db.transaction() as tx:
        for i in range(450):
            audit_store.append(tx, at=clock(), actor="system", action="test.bulk",
                               subject=f"thing:{i}", details={"i": i})
    fill(keyed, clock, n=1)
    rows = rows_of(keyed)
    assert [r["seq"] for r in rows] == list(range(1, 454))
    assert [r["details"]["i"] for r in rows[2:452]] == list(range(450))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(rows, rows[1:], strict=False))
    checkpoint(keyed, tmp_path, store_url)
    r = keyed.verify_audit()
    assert r.ok and r.checked == 453 and r.keyed == 453, r.problems


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_owner_tampering_is_named(keyed: Store, store_url: str, clock: Clock, tmp_path: Path,
                                  attack: str) -> None:
    """Each attack a database owner can make with SQL (triggers put back afterwards) fails
    verification, naming the first entry that does not fit and what happened."""
    fn, bad_seq, words = ATTACKS[attack]
    fill(keyed, clock)
    checkpoint(keyed, tmp_path, store_url)
    assert keyed.verify_audit().ok
    owner_sql(store_url, fn(rows_of(keyed)))
    r = keyed.verify_audit()
    assert not r.ok and r.first_bad_seq == bad_seq and words in r.problem, r.problems
    assert not any("trigger" in p for p in r.problems)  # they were put back


def test_tail_cut_with_later_entries_rewritten_is_still_caught(keyed: Store, store_url: str,
                                                                clock: Clock,
                                                                tmp_path: Path) -> None:
    """Cutting the tail and appending new entries past the checkpoint's seq does not pass:
    without the key the new entries cannot carry a valid HMAC."""
    fill(keyed, clock)
    checkpoint(keyed, tmp_path, store_url)
    rows = rows_of(keyed)
    forged = rehash(rows, 4, key=WRONG, key_id=KEY.id)
    owner_sql(store_url, forged)
    r = keyed.verify_audit()
    assert not r.ok and r.first_bad_seq == 4 and "HMAC does not match" in r.problem


def test_dropped_triggers_are_named(keyed: Store, store_url: str, clock: Clock) -> None:
    """Dropping the append-only triggers (and leaving the rows alone) fails verification
    with the trigger named, read from pg_trigger / sqlite_master."""
    fill(keyed, clock, 2)
    sql = ("DROP TRIGGER audit_log_no_update" if store_url.startswith("sqlite")
           else "DROP TRIGGER audit_log_no_update ON audit_log")
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(sql.encode())
    r = keyed.verify_audit()
    assert not r.ok and r.checked == 2 and r.first_bad_seq is None
    assert any("audit_log_no_update is missing (dropped)" in p for p in r.problems), r.problems
    assert "UPDATE" in r.problem


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate",
         "audit_log_no_truncate on audit_log is disabled"),
        ("CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql"
         " AS $$ BEGIN RETURN OLD; END; $$", "no longer raises"),
    ],
)
def test_disabled_or_defanged_pg_trigger_is_named(pg_template: str, tmp_path: Path, sql: str,
                                                  words: str) -> None:
    """On PostgreSQL a disabled trigger, or its function replaced by one that lets rows
    through, is named too."""
    name = new_pg_database(pg_template)
    try:
        s = open_store(pg_url(name), audit_key=KEY, checkpoint_dir=tmp_path / "cp")
        assert s.verify_audit().ok
        with psycopg.connect(pg_url(name), autocommit=True) as pg:
            pg.execute(sql.encode())
        r = s.verify_audit()
        s.close()
        assert not r.ok and any(words in p for p in r.problems), r.problems
    finally:
        drop_pg_database(name)


def test_sqlite_trigger_with_a_when_clause_does_not_count(keyed: Store, store_url: str) -> None:
    """On SQLite, a guard rewritten to fire never (WHEN 0) is reported as missing."""
    if not store_url.startswith("sqlite"):
        pytest.skip("SQLite catalog")
    conn = sqlite3.connect(store_url[len("sqlite:///"):])
    conn.execute("DROP TRIGGER audit_log_no_delete")
    conn.execute("CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log WHEN 0"
                 " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
    conn.commit()
    conn.close()
    r = keyed.verify_audit()
    assert not r.ok and "audit_log_no_delete is missing" in r.problem


def test_unkeyed_entries_from_before_the_key_verify_and_link(store_url: str, clock: Clock,
                                                             tmp_path: Path) -> None:
    """Entries written without a key (as before the chain was keyed) verify as sha256; the
    first keyed entry links to them; an unkeyed entry after a keyed one is refused."""
    old = open_store(store_url)
    fill(old, clock, 3)
    new = open_store(store_url, audit_key=KEY, checkpoint_dir=tmp_path / "cp")
    fill(new, clock, 2)
    r = new.verify_audit()
    assert r.ok and (r.legacy, r.keyed) == (3, 2), r.problems
    rows = rows_of(new)
    assert [x["alg"] for x in rows] == ["sha256"] * 3 + ["hmac-sha256"] * 2
    assert rows[3]["prev_hash"] == rows[2]["hash"]
    fill(old, clock, 1)  # a process that lost its key
    r = new.verify_audit()
    assert not r.ok and r.first_bad_seq == 6 and "unkeyed sha256 entry after keyed" in r.problem
    old.close()
    new.close()


def test_checkpoint_records_where_the_keyed_chain_began(store_url: str, clock: Clock,
                                                        tmp_path: Path) -> None:
    """A checkpoint taken while the chain was still all-unkeyed fixes how far unkeyed entries
    may go: a wholesale sha256 rewrite of everything after that point is refused."""
    old = open_store(store_url)
    fill(old, clock, 2)
    new = open_store(store_url, audit_key=KEY, checkpoint_dir=tmp_path / "cp")
    body = checkpoint(new, tmp_path, store_url)
    assert (body["seq"], body["legacy_until"]) == (2, 2)
    fill(old, clock, 1)  # no keyed entry yet, but past the checkpoint's legacy_until
    r = new.verify_audit()
    assert not r.ok and r.first_bad_seq == 3 and "after seq 2" in r.problem
    old.close()
    new.close()


def test_forged_or_edited_checkpoint_file_is_named(keyed: Store, store_url: str, clock: Clock,
                                                   tmp_path: Path) -> None:
    """A checkpoint file edited to hide a deleted tail, or written with another key, fails
    its signature and is named; the untouched ones still count."""
    fill(keyed, clock, 3)
    checkpoint(keyed, tmp_path, store_url)
    directory = tmp_path / "checkpoints"
    (path,) = directory.glob("*.json")
    data = json.loads(path.read_text())
    data["seq"] = 1
    (directory / "000000000001-forged.json").write_text(json.dumps(data))
    r = keyed.verify_audit()
    assert not r.ok and "000000000001-forged.json: signature does not match" in r.problem
    path.unlink()
    (directory / "000000000001-forged.json").unlink()
    cfg = audit_config(tmp_path, store_url)
    other = open_store(store_url, audit_key=WRONG, checkpoint_dir=directory)
    write_checkpoint(other, cfg, reason="test", process="mallory")
    other.close()
    r = keyed.verify_audit()
    assert not r.ok and "signed with another key" in r.problem


def test_checkpoint_files_are_private_bounded_and_supersede(keyed: Store, store_url: str,
                                                            clock: Clock,
                                                            tmp_path: Path) -> None:
    """Checkpoint files are 0600 in a 0700 directory; a checkpoint of an unchanged head
    replaces the older one, and at most checkpoint_keep files stay."""
    cfg = audit_config(tmp_path, store_url, checkpoint_keep=3)
    directory = tmp_path / "checkpoints"
    write_checkpoint(keyed, cfg, reason="start", process="p")
    write_checkpoint(keyed, cfg, reason="interval", process="p")
    files = list(directory.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["reason"] == "interval"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    for i in range(5):
        fill(keyed, clock, 1)
        write_checkpoint(keyed, cfg, reason=f"n{i}", process="p")
    found = read_checkpoints(directory, KEY)
    assert sorted(c.seq for c in found.checkpoints) == [3, 4, 5] and found.problems == ()


def test_audit_key_file_is_created_once_private_and_never_in_the_database(
        store_url: str, tmp_path: Path, clock: Clock) -> None:
    """Without audit.key, the key is made once in data_dir/audit_key (0600); processes
    racing to create it get the same key; it appears nowhere in the database."""
    cfg = audit_config(tmp_path, store_url)
    keys: list[AuditKey] = []
    barrier = threading.Barrier(6)

    def make() -> None:
        barrier.wait()
        keys.append(audit_key(cfg))

    threads = [threading.Thread(target=make) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "data" / "audit_key"
    assert len({k.id for k in keys}) == 1 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    secret = path.read_text().strip()
    s = open_store(store_url, **store_options(cfg))
    fill(s, clock, 2)
    rows = rows_of(s)
    s.close()
    assert secret not in json.dumps(rows, default=str) and repr(keys[0]).count(secret) == 0


def test_configured_audit_key_is_a_secret_reference(tmp_path: Path, monkeypatch:
                                                    pytest.MonkeyPatch) -> None:
    """audit.key takes env:/file: references (not inline) and refuses a short key."""
    from receiver.errors import ConfigError

    monkeypatch.setenv("REMEDIATOR_TEST_AUDIT_KEY", "k" * 32)
    cfg = parse_config({"data_dir": str(tmp_path), "audit": {"key": "env:REMEDIATOR_TEST_AUDIT_KEY"}})
    assert audit_key(cfg).id == AuditKey("k" * 32).id and not (tmp_path / "audit_key").exists()
    with pytest.raises(ConfigError, match="audit.key"):
        parse_config({"audit": {"key": "inline-key-0123456789abcdef"}})
    monkeypatch.setenv("REMEDIATOR_TEST_AUDIT_KEY", "short-key-123")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        parse_config({"audit": {"key": "env:REMEDIATOR_TEST_AUDIT_KEY"}})


def test_trigger_rejects_update_and_delete_for_the_app_role(pg_template: str,
                                                             clock: Clock) -> None:
    """On PostgreSQL the application role cannot UPDATE or DELETE audit rows."""
    name = new_pg_database(pg_template)
    url = pg_url(name)
    role = f"app_{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN".encode())
            conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}".encode())
            conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}".encode())
        app_url = url.replace("postgres@", f"{role}@")
        store = open_store(app_url, audit_key=KEY)
        fill(store, clock, 2)
        assert store.verify_audit().ok  # the catalog check works for a non-owner too
        store.close()
        with psycopg.connect(app_url, autocommit=True) as conn:
            for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                        "TRUNCATE audit_log"):
                with pytest.raises(psycopg.Error, match="append-only"):
                    conn.execute(sql.encode())
            assert conn.execute(b"SELECT count(*) FROM audit_log").fetchone() == (2,)
    finally:
        drop_pg_database(name)
        with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}".encode())


def test_sqlite_trigger_rejects_update(keyed: Store, store_url: str, clock: Clock) -> None:
    """On SQLite too, the schema refuses UPDATE and DELETE on the audit table."""
    if not store_url.startswith("sqlite"):
        pytest.skip("the PostgreSQL trigger has its own test")
    fill(keyed, clock, 1)
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):  # noqa: PT011 - sqlite3 error
            with keyed.db.transaction() as tx:
                tx.execute(sql)


def test_concurrent_writers_keep_one_chain(store_url: str, clock: Clock,
                                           tmp_path: Path) -> None:
    """Eight keyed writers appending at once produce one unbroken HMAC chain, no gaps."""
    stores = [open_store(store_url, pool_min=0, pool_max=2, audit_key=KEY) for _ in range(8)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write(s: Store) -> None:
        barrier.wait()
        try:
            fill(s, clock, 25)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    check = open_store(store_url, audit_key=KEY, checkpoint_dir=tmp_path / "cp")
    try:
        r = check.verify_audit()
        assert errors == [] and r.ok and r.checked == 200 and r.keyed == 200, r.problems
    finally:
        check.close()


def test_cli_verify_and_export(store_url: str, clock: Clock, tmp_path: Path) -> None:
    """audit verify exits 0 on a good chain (naming the checkpoint it compared with) and 1
    naming the problem after tampering or without a key; export writes every entry."""
    cfg_path = tmp_path / "r.yml"
    cfg_path.write_text(yaml.safe_dump({"store": {"url": store_url},
                                        "data_dir": str(tmp_path / "data")}))
    cfg = parse_config({"store": {"url": store_url}, "data_dir": str(tmp_path / "data")})
    store = open_store(store_url, **store_options(cfg))
    fill(store, clock, 4)
    write_checkpoint(store, cfg, reason="start", process="pytest")
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "-c", str(cfg_path)])
    assert ok.exit_code == 0, ok.output
    assert "4 entries (4 keyed" in ok.output and "latest checkpoint seq 4" in ok.output
    lines = runner.invoke(main, ["audit", "export", "-c", str(cfg_path)]).output.splitlines()
    exported = [json.loads(x) for x in lines]
    assert [x["seq"] for x in exported] == [1, 2, 3, 4] and exported[0]["alg"] == "hmac-sha256"
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(main, ["audit", "export", "-c", str(cfg_path), "--format", "csv"]).output)))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"] and rows[0]["actor"] == "user:alice"
    owner_sql(store_url, [("DELETE FROM audit_log WHERE seq = 4", {})])
    bad = runner.invoke(main, ["audit", "verify", "-c", str(cfg_path)])
    assert bad.exit_code == 1 and "seq 4" in bad.output and "tail deleted" in bad.output
    owner_sql(store_url, [("UPDATE audit_log SET subject = 'thing:x' WHERE seq = 2", {})],
              keep_triggers=False)
    bad = runner.invoke(main, ["audit", "verify", "-c", str(cfg_path)])
    assert bad.exit_code == 1 and "seq 2" in bad.output and "edited" in bad.output
    assert "also: trigger audit_log_no_update" in bad.output  # dropped or disabled
    store.close()
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump({"store": {"url": store_url},
                                     "data_dir": str(tmp_path / "empty")}))
    nokey = runner.invoke(main, ["audit", "verify", "-c", str(other)])
    assert nokey.exit_code == 1 and "no audit key" in nokey.output
    assert not (tmp_path / "empty" / "audit_key").exists()


def test_verify_endpoint_reports_the_same(keyed: Store, store_url: str, clock: Clock,
                                          tmp_path: Path, web_config: Config) -> None:
    """GET /api/v1/audit/verify answers ok with the checkpoint, then names a deleted tail."""
    fill(keyed, clock, 3)
    checkpoint(keyed, tmp_path, store_url)
    client = create_app(web_config, store=keyed, clock=clock).test_client()
    good = client.get("/api/v1/audit/verify", headers=OP).get_json()
    assert good["ok"] and good["checked"] == 3 and good["checkpoint"]["seq"] == 3
    assert good["entries"] == {"keyed": 3, "legacy_sha256": 0}
    owner_sql(store_url, [("DELETE FROM audit_log WHERE seq = 3", {})], keep_triggers=False)
    bad = client.get("/api/v1/audit/verify", headers=OP).get_json()
    assert not bad["ok"] and bad["first_bad_seq"] == 3 and "tail deleted" in bad["problem"]
    assert any("audit_log_no" in p for p in bad["problems"])


def test_key_file_mode_is_kept_private(tmp_path: Path, store_url: str) -> None:
    """The created key file is not readable by group or others, whatever the umask."""
    old = os.umask(0)
    try:
        audit_key(audit_config(tmp_path, store_url))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data" / "audit_key").stat().st_mode) == 0o600


def test_audit_page_names_a_dropped_trigger(keyed: Store, store_url: str, clock: Clock,
                                            web_config: Config) -> None:
    """The audit page's banner shows the problem verify found, without a bogus entry number
    when the chain itself is intact."""
    from tests.conftest import PASSWORD

    client = create_app(web_config, store=keyed, clock=clock).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    client.post("/login", data={"username": "alice", "password": PASSWORD,
                                "csrf_token": token.group(1)})
    assert "Hash chain intact" in client.get("/audit").get_data(as_text=True)
    owner_sql(store_url, [], keep_triggers=False)
    text = client.get("/audit").get_data(as_text=True)
    assert "Hash chain BROKEN: trigger audit_log_no_" in text and "entry None" not in text


_text = st.text(max_size=40)
_entries = st.lists(
    st.fixed_dictionaries({
        "actor": _text, "action": _text, "subject": _text,
        "incident_id": st.none() | st.integers(min_value=1, max_value=2**53),
        "details": st.dictionaries(_text, _text | st.integers() | st.none(), max_size=4),
    }),
    min_size=1, max_size=8)


def _sealed(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    prev, out = GENESIS, []
    for i, e in enumerate(raw, start=1):
        entry = {**e, "seq": i, "at": datetime(2026, 3, 2, 10, 0, i % 60, tzinfo=UTC),
                 "origin": {}, "alg": "hmac-sha256", "key_id": KEY.id, "id": i,
                 "prev_hash": prev}
        entry["hash"] = prev = chain_hash(prev, entry, KEY)
        out.append(entry)
    return out


@settings(max_examples=100, deadline=None)
@given(raw=_entries, data=st.data())
def test_any_changed_field_of_any_entry_is_caught(raw: list[dict[str, Any]],
                                                  data: st.DataObject) -> None:
    """Whatever alert-derived text the entries hold (unicode, separators, JSON-looking
    strings), the sealed chain verifies, and changing any one field of any one entry makes
    verification fail at that entry."""
    from receiver.audit.chain import verify_chain

    chain = _sealed(raw)
    assert verify_chain(chain, KEY).ok
    i = data.draw(st.integers(min_value=0, max_value=len(chain) - 1))
    field = data.draw(st.sampled_from(["actor", "action", "subject", "incident_id",
                                       "details"]))
    new = data.draw({"incident_id": st.none() | st.integers(min_value=1, max_value=2**53),
                     "details": st.dictionaries(_text, _text, max_size=3)}.get(field, _text))
    assume(new != chain[i][field] and not (field == "details" and not new and
                                           not chain[i][field]))
    chain[i] = {**chain[i], field: new}
    r = verify_chain(chain, KEY)
    assert not r.ok and r.first_bad_seq == i + 1 and "HMAC does not match" in r.problem


def test_upgrade_keeps_old_entries_verifiable(tmp_path: Path, clock: Clock) -> None:
    """A database from before migration 0006, holding sha256-chained entries written with
    the old columns, migrates; the old entries verify as sha256 and keyed ones follow."""
    from datetime import UTC, datetime

    from receiver.store.migrations import _statements, available

    name = new_pg_database(None)
    try:
        for url in (f"sqlite:///{tmp_path}/old.db", pg_url(name)):
            s = open_store(url)
            with s.db.migration_lock() as tx:
                tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER"
                           " PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
                for mig in available(s.dialect):
                    if mig.version < 6:
                        for statement in _statements(mig.sql):
                            tx.execute(statement)
                        tx.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                                   " VALUES (:v, :n, 'x')", {"v": mig.version, "n": mig.name})
            prev = GENESIS
            with s.db.transaction() as tx:
                for seq in (1, 2):
                    e = {"seq": seq, "at": datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC),
                         "actor": "user:old", "action": "old.action", "subject": "s",
                         "incident_id": None, "details": {"n": seq}, "origin": {}}
                    h = chain_hash(prev, e)
                    tx.execute("INSERT INTO audit_log (seq, at, actor, action, subject,"
                               " incident_id, details, origin, prev_hash, hash) VALUES (:seq,"
                               " :at, :actor, :action, :subject, :incident_id, :details,"
                               " :origin, :prev, :hash)",
                               {**e, "details": tx.json(e["details"]), "origin": tx.json({}),
                                "prev": prev, "hash": h})
                    prev = h
            assert [m for m in s.migrate() if m.startswith("0006")] == ["0006_audit_key"]
            s.close()
            keyed = open_store(url, audit_key=KEY, checkpoint_dir=tmp_path / "cp")
            fill(keyed, clock, 2)
            r = keyed.verify_audit()
            keyed.close()
            assert r.ok and (r.legacy, r.keyed) == (2, 2), (url, r.problems)
    finally:
        drop_pg_database(name)
