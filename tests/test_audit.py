"""The audit log: hash chain, tamper detection, append-only trigger, concurrent writers,
CLI verify/export."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from receiver.cli import main
from receiver.store import Store, open_store
from receiver.store import audit as audit_store
from tests.conftest import Clock, drop_pg_database, new_pg_database, pg_url


def fill(store: Store, clock: Clock, n: int = 5) -> None:
    for i in range(n):
        with store.db.transaction() as tx:
            audit_store.append(tx, at=clock() + timedelta(seconds=i), actor="user:alice",
                               action="test.action", subject=f"thing:{i}", incident_id=None,
                               details={"i": i, "password": "hunter2"})


def raw_sql(store_url: str, sql: str, superuser_disable_trigger: bool = False) -> None:
    """Tamper with the table directly, the way an attacker with database access would."""
    if store_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
        conn.execute(sql)
        conn.commit()
        conn.close()
        return
    with psycopg.connect(store_url, autocommit=True) as conn:
        if superuser_disable_trigger:
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute(sql)
        if superuser_disable_trigger:
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def test_intact_chain_verifies_and_secrets_are_redacted(store: Store, clock: Clock) -> None:
    """A fresh chain verifies; a 'password' detail is stored redacted."""
    fill(store, clock)
    r = store.verify_audit()
    assert r.ok and r.checked == 5
    with store.db.transaction(write=False) as tx:
        rows = list(audit_store.walk(tx))
    assert all(row["details"]["password"] == "[redacted]" for row in rows)
    assert rows[0]["prev_hash"] == "0" * 64 and rows[1]["prev_hash"] == rows[0]["hash"]


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "word"),
    [
        ("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 3", 3, "altered"),
        ("DELETE FROM audit_log WHERE seq = 2", 3, "removed"),
        ("INSERT INTO audit_log (seq, at, actor, action, subject, incident_id, details, origin,"
         " prev_hash, hash) VALUES (6, '2026-03-02T10:00:10.000000+00:00', 'user:mallory',"
         " 'x', 'y', NULL, '{}', '{}', 'forged', 'forged')", 6, "prev_hash"),
        ("UPDATE audit_log SET details = '{\"i\": 99}' WHERE seq = 4", 4, "altered"),
    ],
)
def test_tampering_is_named(store: Store, store_url: str, clock: Clock, tamper: str,
                            bad_seq: int, word: str) -> None:
    """An edited, deleted or inserted row makes verify name the first entry that breaks."""
    fill(store, clock)
    raw_sql(store_url, tamper, superuser_disable_trigger=True)
    r = store.verify_audit()
    assert not r.ok and r.first_bad_seq == bad_seq and word in r.problem


def test_trigger_rejects_update_and_delete_for_the_app_role(pg_template: str,
                                                             clock: Clock) -> None:
    """On PostgreSQL the application role cannot UPDATE or DELETE audit rows."""
    name = new_pg_database(pg_template)
    url = pg_url(name)
    role = f"app_{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
            conn.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        app_url = url.replace("postgres@", f"{role}@")
        store = open_store(app_url)
        fill(store, clock, 2)
        store.close()
        with psycopg.connect(app_url, autocommit=True) as conn:
            for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                        "TRUNCATE audit_log"):
                with pytest.raises(psycopg.Error, match="append-only"):
                    conn.execute(sql)
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2
    finally:
        drop_pg_database(name)
        with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_sqlite_trigger_rejects_update(store: Store, store_url: str, clock: Clock) -> None:
    """On SQLite too, the schema refuses UPDATE and DELETE on the audit table."""
    if not store_url.startswith("sqlite"):
        pytest.skip("the PostgreSQL trigger has its own test")
    fill(store, clock, 1)
    from receiver.errors import StoreError

    with pytest.raises(Exception, match="append-only") as err:  # noqa: PT011 - sqlite3 error
        with store.db.transaction() as tx:
            tx.execute("UPDATE audit_log SET actor = 'x'")
    assert not isinstance(err.value, StoreError) or "append-only" in str(err.value)


def test_concurrent_writers_keep_one_chain(store_url: str, clock: Clock) -> None:
    """Eight writers appending at once produce one unbroken chain with no gaps."""
    stores = [open_store(store_url, pool_min=0, pool_max=2) for _ in range(8)]
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
    check = open_store(store_url)
    try:
        r = check.verify_audit()
        assert errors == [] and r.ok and r.checked == 200
    finally:
        check.close()


def test_cli_verify_and_export(store: Store, store_url: str, clock: Clock,
                               tmp_path: Path) -> None:
    """audit verify exits 0 on a good chain and 1 naming the entry after tampering;
    export writes JSONL and CSV with every entry."""
    fill(store, clock, 4)
    cfg = tmp_path / "r.yml"
    cfg.write_text(yaml.safe_dump({"store": {"url": store_url}, "data_dir": str(tmp_path)}))
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "-c", str(cfg)])
    assert ok.exit_code == 0 and "4 entries" in ok.output
    lines = runner.invoke(main, ["audit", "export", "-c", str(cfg)]).output.splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4]
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(main, ["audit", "export", "-c", str(cfg), "--format", "csv"]).output)))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"] and rows[0]["actor"] == "user:alice"
    raw_sql(store_url, "UPDATE audit_log SET subject = 'thing:x' WHERE seq = 2",
            superuser_disable_trigger=True)
    bad = runner.invoke(main, ["audit", "verify", "-c", str(cfg)])
    assert bad.exit_code == 1 and "seq 2" in bad.output
