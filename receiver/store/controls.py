"""Runtime controls: named switches (kill switch, dry-run, circuit breakers) with who set
them, when and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository, maybe, record

CONTROL_COLUMNS = "name, value, reason, updated_by, updated_at"


@dataclass(frozen=True)
class Control:
    name: str
    value: str
    reason: str
    updated_by: str
    updated_at: datetime


def get_control(tx: Tx, name: str) -> Row | None:
    return tx.fetchone(
        f"SELECT {CONTROL_COLUMNS} FROM controls WHERE name = :n",  # noqa: S608 - constant columns
        {"n": name},
    )


def set_control(tx: Tx, name: str, value: str, *, reason: str, actor: str, now: datetime) -> None:
    tx.execute(
        """INSERT INTO controls (name, value, reason, updated_by, updated_at)
           VALUES (:n, :v, :r, :a, :now)
           ON CONFLICT (name) DO UPDATE SET value = excluded.value, reason = excluded.reason,
                  updated_by = excluded.updated_by, updated_at = excluded.updated_at""",
        {"n": name, "v": value, "r": reason, "a": actor, "now": now},
    )


def set_control_unless(tx: Tx, name: str, value: str, *, reason: str, actor: str,
                       now: datetime) -> bool:
    """Set a control unless it already has ``value``, in one conditional upsert; True when
    this call changed it (so that, of several workers tripping one breaker at once, one
    says so)."""
    row = tx.fetchone(
        """INSERT INTO controls (name, value, reason, updated_by, updated_at)
           VALUES (:n, :v, :r, :a, :now)
           ON CONFLICT (name) DO UPDATE SET value = excluded.value, reason = excluded.reason,
                  updated_by = excluded.updated_by, updated_at = excluded.updated_at
            WHERE controls.value <> excluded.value
           RETURNING name""",
        {"n": name, "v": value, "r": reason, "a": actor, "now": now},
    )
    return row is not None


def controls(tx: Tx) -> dict[str, Row]:
    rows = tx.fetchall(f"SELECT {CONTROL_COLUMNS} FROM controls")  # noqa: S608 - constant columns
    return {r["name"]: r for r in rows}


class ControlRepository(Repository):
    """The runtime controls, as :class:`Control` records."""

    def get(self, name: str) -> Control | None:
        return maybe(Control, get_control(self.tx, name))

    def all(self) -> dict[str, Control]:
        return {name: record(Control, row) for name, row in controls(self.tx).items()}

    def set(self, name: str, value: str, *, reason: str, actor: str, now: datetime) -> None:
        set_control(self.tx, name, value, reason=reason, actor=actor, now=now)

    def set_unless(self, name: str, value: str, *, reason: str, actor: str,
                   now: datetime) -> bool:
        """Set it unless it already has ``value``; True when this call changed it."""
        return set_control_unless(self.tx, name, value, reason=reason, actor=actor, now=now)
