"""Audit log rows: append under a lock (one chain, however many writers), read, filter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.audit import GENESIS, chain_hash
from receiver.logs import redact_mapping
from receiver.store.db import Row, Tx

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
    """Queue one entry in the caller's transaction; secrets in details are redacted.

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
        "details": redact_mapping(details or {}),
        "origin": redact_mapping(origin or {}),
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
    if tx.dialect == "postgres":
        tx.execute("SELECT pg_advisory_xact_lock(:id)", {"id": AUDIT_LOCK_ID})
    last = tx.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq = last["seq"] if last else 0
    prev = last["hash"] if last else GENESIS
    for entry in pending:
        seq += 1
        entry["seq"] = seq
        entry["prev_hash"] = prev
        entry["hash"] = prev = chain_hash(prev, entry)
        tx.execute(
            "INSERT INTO audit_log (seq, at, actor, action, subject, incident_id, details,"
            " origin, prev_hash, hash) VALUES (:seq, :at, :actor, :action, :subject,"
            " :incident_id, :details, :origin, :prev_hash, :hash)",
            {**entry, "details": tx.json(entry["details"]), "origin": tx.json(entry["origin"])},
        )


@dataclass(frozen=True)
class AuditFilter:
    incident_id: int | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    after_seq: int | None = None


COLUMNS = "id, seq, at, actor, action, subject, incident_id, details, origin, prev_hash, hash"


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
