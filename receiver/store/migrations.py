"""Numbered SQL migrations, applied in order under a lock and recorded in a table.

Files live in ``migrations/<dialect>/NNNN_name.sql``. Two processes starting at once both
take the lock; the second finds the versions already recorded and applies nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from receiver.store.db import Database, Tx

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available(dialect: str) -> list[Migration]:
    folder = resources.files("receiver.store").joinpath("migrations", dialect)
    out = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda m: m.version)


def _statements(sql: str) -> list[str]:
    """Split a migration on ';' at line ends. Function bodies use $$ ... $$ blocks."""
    out, buf, in_dollar = [], [], False
    for line in sql.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") and not in_dollar:
            continue
        if line.count("$$") % 2 == 1:
            in_dollar = not in_dollar
        buf.append(line)
        if stripped.endswith(";") and not in_dollar:
            out.append("\n".join(buf).strip())
            buf = []
    if "\n".join(buf).strip():
        out.append("\n".join(buf).strip())
    return out


def _applied(tx: Tx) -> set[int]:
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    return {r["version"] for r in tx.fetchall("SELECT version FROM schema_migrations")}


def migrate(db: Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    done: list[str] = []
    with db.migration_lock() as tx:
        applied = _applied(tx)
        for mig in available(db.dialect):
            if mig.version in applied:
                continue
            for statement in _statements(mig.sql):
                tx.execute(statement)
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (:v, :n, :at)",
                {"v": mig.version, "n": mig.name, "at": datetime.now(UTC).isoformat()},
            )
            done.append(f"{mig.version:04d}_{mig.name}")
    return done


def pending(db: Database) -> list[str]:
    with db.migration_lock() as tx:
        applied = _applied(tx)
    return [f"{m.version:04d}_{m.name}" for m in available(db.dialect) if m.version not in applied]
