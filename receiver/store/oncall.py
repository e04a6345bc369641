"""On-call overrides: a person takes a role for a while, each change audited in its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.errors import StoreError
from receiver.store import audit
from receiver.store.repository import Repository, maybe, record, records

_COLUMNS = ("id, role, user_name, starts_at, ends_at, reason, created_by, created_at,"
            " revoked_at, revoked_by")


@dataclass(frozen=True)
class Override:
    id: int
    role: str
    user_name: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def covers(self, at: datetime) -> bool:
        return self.revoked_at is None and self.starts_at <= at < self.ends_at


class OncallRepository(Repository):
    """Overrides of the configured roster."""

    def add_override(self, *, role: str, user: str, starts_at: datetime, ends_at: datetime,
                     reason: str, actor: str, now: datetime) -> Override:
        row = self.tx.fetchone(
            f"INSERT INTO oncall_overrides (role, user_name, starts_at, ends_at, reason,"  # noqa: S608 - constant columns
            " created_by, created_at) VALUES (:role, :user, :starts, :ends, :reason, :actor,"
            f" :now) RETURNING {_COLUMNS}",
            {"role": role, "user": user, "starts": starts_at, "ends": ends_at,
             "reason": reason, "actor": actor, "now": now},
        )
        if row is None:
            raise StoreError("the override was not written")
        made = record(Override, row)
        audit.append(self.tx, at=now, actor=actor, action="oncall_override_added",
                     subject=f"oncall:{role}",
                     details={"override": made.id, "user": user, "reason": reason,
                              "starts_at": starts_at.isoformat(),
                              "ends_at": ends_at.isoformat()})
        return made

    def revoke_override(self, override_id: int, *, actor: str, now: datetime) -> Override | None:
        """End an override now; None when there is no such live override."""
        row = self.tx.fetchone(
            "UPDATE oncall_overrides SET revoked_at = :now, revoked_by = :actor"  # noqa: S608 - constant columns
            f" WHERE id = :id AND revoked_at IS NULL RETURNING {_COLUMNS}",
            {"id": override_id, "now": now, "actor": actor},
        )
        gone = maybe(Override, row)
        if gone is not None:
            audit.append(self.tx, at=now, actor=actor, action="oncall_override_revoked",
                         subject=f"oncall:{gone.role}",
                         details={"override": gone.id, "user": gone.user_name})
        return gone

    def overrides(self, *, live_at: datetime | None = None) -> list[Override]:
        """Every override (oldest first), or those not yet over at ``live_at`` (current and
        future ones, not revoked)."""
        if live_at is None:
            rows = self.tx.fetchall(f"SELECT {_COLUMNS} FROM oncall_overrides ORDER BY id")  # noqa: S608 - constant columns
        else:
            rows = self.tx.fetchall(
                f"SELECT {_COLUMNS} FROM oncall_overrides"  # noqa: S608 - constant columns
                " WHERE revoked_at IS NULL AND ends_at > :at ORDER BY starts_at, id",
                {"at": live_at},
            )
        return records(Override, rows)
