"""Audit log rows: append under a lock (one chain, however many writers), read, filter;
the chain's head, and the catalog check that the append-only triggers are still there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.audit.chain import GENESIS, KEYED, LEGACY, chain_hash
from receiver.runtime.logs import redact_mapping
from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect
from receiver.store.repository import Repository, record, records

AUDIT_LOCK_ID = 0x61756474  # "audt"


def append(
    tx: Tx,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    incident_id: int | None = None,
    details: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Queue one entry in the caller's transaction; secrets in details and origin are
    redacted (secret-named keys, URL credentials, bearer tokens, and every configured secret
    of the store's redactor).

    The entries are chained and inserted just before the transaction commits, under one
    lock (PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE), so that concurrent writers
    never fork the chain and the chain's lock is always the last lock a transaction takes.
    """
    entry = {
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "incident_id": incident_id,
        "details": tx.redactor(redact_mapping(details or {})),
        "origin": tx.redactor(redact_mapping(origin or {})),
    }
    pending: list[dict[str, Any]] | None = tx.scratch.get("audit")
    if pending is None:
        pending = tx.scratch["audit"] = []
        tx.before_commit.append(_flush)
    pending.append(entry)
    return entry


def _flush(tx: Tx) -> None:
    pending: list[dict[str, Any]] = tx.scratch.pop("audit", [])
    if not pending:
        return
    tx.advisory_lock(AUDIT_LOCK_ID)
    last = tx.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq = last["seq"] if last else 0
    prev = last["hash"] if last else GENESIS
    key = tx.audit_key
    for start in range(0, len(pending), _ROWS_PER_INSERT):
        seq, prev = _insert_chained(tx, pending[start:start + _ROWS_PER_INSERT], seq, prev, key)


_ROWS_PER_INSERT = 200
"""Entries per INSERT (12 parameters each, well within both backends' limits)."""


def _insert_chained(tx: Tx, entries: list[dict[str, Any]], seq: int, prev: str,
                    key: Any) -> tuple[int, str]:
    """Chain ``entries`` after (seq, prev) and insert them in one statement, in chain
    order; returns the new (seq, hash) of the chain's tail."""
    rows: list[str] = []
    params: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        seq += 1
        entry["seq"] = seq
        entry["prev_hash"] = prev
        # Without a key (a library caller, tests) entries are plain sha256, as before the
        # chain was keyed; verification refuses them after the first keyed entry.
        entry["alg"] = KEYED if key is not None else LEGACY
        entry["key_id"] = key.id if key is not None else None
        entry["hash"] = prev = chain_hash(prev, entry, key)
        rows.append("(" + ", ".join(f":{c}{i}" for c in _AUDIT_COLUMNS) + ")")
        params.update({f"{c}{i}": entry[c] for c in _AUDIT_COLUMNS})
        params[f"details{i}"] = tx.json(entry["details"])
        params[f"origin{i}"] = tx.json(entry["origin"])
    # one statement for the transaction's entries, in chain order
    tx.execute(f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)})"  # noqa: S608 - placeholders only
               f" VALUES {', '.join(rows)}", params)
    return seq, prev


_AUDIT_COLUMNS = ("seq", "at", "actor", "action", "subject", "incident_id", "details",
                  "origin", "prev_hash", "hash", "alg", "key_id")


@dataclass(frozen=True)
class AuditFilter:
    incident_id: int | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    after_seq: int | None = None


COLUMNS = ("id, seq, at, actor, action, subject, incident_id, details, origin, prev_hash,"
           " hash, alg, key_id")


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the chain as stored."""

    id: int
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    incident_id: int | None
    details: dict[str, Any]
    origin: dict[str, Any]
    prev_hash: str
    hash: str
    alg: str | None
    key_id: str | None


def query(tx: Tx, f: AuditFilter) -> list[Row]:
    where: list[str] = []
    params: dict[str, Any] = {"limit": f.limit}
    for column, value in (("incident_id", f.incident_id), ("actor", f.actor),
                          ("action", f.action)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if f.since is not None:
        where.append("at >= :since")
        params["since"] = f.since
    if f.until is not None:
        where.append("at < :until")
        params["until"] = f.until
    if f.after_seq is not None:
        where.append("seq > :after_seq")
        params["after_seq"] = f.after_seq
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {COLUMNS} FROM audit_log {clause} ORDER BY seq LIMIT :limit"  # noqa: S608 - fixed fragments
    return tx.fetchall(sql, params)


def walk(tx: Tx, batch: int = 1000) -> Iterator[Row]:
    """Every entry in physical ``id`` order, in batches (the order verification walks)."""
    last = 0
    while True:
        rows = tx.fetchall(
            f"SELECT {COLUMNS} FROM audit_log WHERE id > :last ORDER BY id LIMIT :n",  # noqa: S608 - constant columns
            {"last": last, "n": batch},
        )
        if not rows:
            return
        yield from rows
        last = rows[-1]["id"]


def row_id(tx: Tx, seq: int) -> int | None:
    row = tx.fetchone("SELECT id FROM audit_log WHERE seq = :seq", {"seq": seq})
    return int(row["id"]) if row else None


@dataclass(frozen=True)
class Head:
    """The newest entry (seq 0 and the genesis hash when the log is empty), and the last
    unkeyed (sha256) entry's seq (0 when there is none)."""

    seq: int
    hash: str
    legacy_until: int


def head(tx: Tx) -> Head:
    last = tx.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    # alg as a literal: the partial index audit_log_legacy_idx covers exactly this predicate
    legacy = tx.fetchone(f"SELECT max(seq) AS seq FROM audit_log WHERE alg = '{LEGACY}'")  # noqa: S608 - a constant
    return Head(seq=int(last["seq"]) if last else 0, hash=last["hash"] if last else GENESIS,
                legacy_until=int(legacy["seq"]) if legacy and legacy["seq"] is not None else 0)


# The append-only guard each backend's migrations create: operation -> trigger names.
_PG_GUARDS = {"UPDATE": "audit_log_no_update", "DELETE": "audit_log_no_update",
              "TRUNCATE": "audit_log_no_truncate"}
_SQLITE_GUARDS = {"UPDATE": "audit_log_no_update", "DELETE": "audit_log_no_delete"}
_PG_OPS = {8: "DELETE", 16: "UPDATE", 32: "TRUNCATE"}  # pg_trigger.tgtype bits
_TG_BEFORE = 2


def trigger_problems(tx: Tx) -> list[str]:
    """What is missing from the append-only guard, read from the catalog (``pg_trigger`` /
    ``sqlite_master``): a dropped, disabled or defanged trigger is named, one per line."""
    return _TRIGGER_PROBLEMS.of(tx)(tx)


def _pg_trigger_problems(tx: Tx) -> list[str]:
    rows = tx.fetchall(
        "SELECT t.tgname AS name, t.tgenabled AS enabled, t.tgtype AS type,"
        " p.prosrc AS body FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE t.tgrelid = to_regclass('audit_log') AND NOT t.tgisinternal")
    guarded: set[str] = set()
    problems: list[str] = []
    for r in rows:
        enabled = str(r["enabled"]) != "D"
        refuses = re.search(r"\bRAISE\s+EXCEPTION\b", r["body"] or "", re.IGNORECASE)
        before = int(r["type"]) & _TG_BEFORE
        ops = {op for bit, op in _PG_OPS.items() if int(r["type"]) & bit}
        if r["name"] in _PG_GUARDS.values():
            if not enabled:
                problems.append(f"trigger {r['name']} on audit_log is disabled")
            elif not refuses:
                problems.append(f"trigger {r['name']} on audit_log no longer raises: its "
                                "function was replaced")
        if enabled and refuses and before:
            guarded |= ops
    problems.extend(_missing(_PG_GUARDS, guarded, problems))
    return problems


_SQLITE_GUARD = re.compile(r"\bBEFORE\s+(UPDATE|DELETE)\s+ON\s+[\"`]?audit_log[\"`]?\s.*"
                           r"\bRAISE\s*\(\s*ABORT\b", re.IGNORECASE | re.DOTALL)


def _sqlite_trigger_problems(tx: Tx) -> list[str]:
    rows = tx.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                       " AND tbl_name = 'audit_log'")
    guarded: set[str] = set()
    for r in rows:
        m = _SQLITE_GUARD.search(r["sql"] or "")
        if m and not re.search(r"\bWHEN\b", r["sql"], re.IGNORECASE):
            guarded.add(m.group(1).upper())
    return _missing(_SQLITE_GUARDS, guarded, [])


_TRIGGER_PROBLEMS = PerDialect(postgres=_pg_trigger_problems, sqlite=_sqlite_trigger_problems)


def _missing(guards: dict[str, str], guarded: set[str], known: list[str]) -> list[str]:
    by_name: dict[str, list[str]] = {}
    for op, name in guards.items():
        if op not in guarded and not any(name in p for p in known):
            by_name.setdefault(name, []).append(op)
    return [f"trigger {name} is missing (dropped): {' and '.join(ops)} on audit_log "
            "no longer refused" for name, ops in by_name.items()]


class AuditRepository(Repository):
    """The audit log: append, query, walk, head."""

    def append(self, *, at: datetime, actor: str, action: str, subject: str,
               incident_id: int | None = None, details: dict[str, Any] | None = None,
               origin: dict[str, Any] | None = None) -> None:
        """Queue one entry, chained and inserted just before the unit commits (redacted:
        see :func:`append`)."""
        append(self.tx, at=at, actor=actor, action=action, subject=subject,
               incident_id=incident_id, details=details, origin=origin)

    def query(self, f: AuditFilter) -> list[AuditEntry]:
        """Entries matching ``f``, in chain order."""
        return records(AuditEntry, query(self.tx, f))

    def walk(self, batch: int = 1000) -> Iterator[AuditEntry]:
        """Every entry in physical ``id`` order, in batches."""
        for row in walk(self.tx, batch):
            yield record(AuditEntry, row)

    def row_id(self, seq: int) -> int | None:
        return row_id(self.tx, seq)

    def head(self) -> Head:
        return head(self.tx)

    def trigger_problems(self) -> list[str]:
        return trigger_problems(self.tx)
