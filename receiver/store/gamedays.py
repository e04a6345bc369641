"""Game days: drills whose alerts carry a ``gameday="<id>"`` label, started and ended by an
operator (each audited in its transaction).

Which alerts and incidents belong to a game day is decided here, in SQL, once:

- a *game-day alert* is an alert whose ``gameday`` label names a game day of this table and
  that was first seen while that game day ran (from ``started_at``, before its
  ``deadline_at`` and before ``ended_at``). A label naming no game day, or one seen outside
  its window, is an ordinary label: a forged label cannot silence real remediation;
- a *game-day incident* has alerts and every one of them is a game-day alert. A real alert
  that joins the incident (same Alertmanager group) makes it a real incident again.

:func:`gameday_incident` is that predicate as a SQL fragment, for the reports that leave
game-day incidents out of the response figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.errors import StoreError
from receiver.store import audit
from receiver.store.db import Tx
from receiver.store.dialects import PerDialect
from receiver.store.repository import Repository, record, records

LABEL = "gameday"
"""The label that ties an alert to a game day."""

_LABEL_OF = PerDialect(
    postgres="a.labels ->> 'gameday'",
    sqlite="json_extract(a.labels, '$.gameday')",
)

_COLUMNS = ("g.id, g.name, g.scenario, g.targets, g.details, g.started_at, g.started_by,"
            " g.deadline_at, g.ended_at, g.ended_by")
_RETURNING = _COLUMNS.replace("g.", "")


def _alert_in_window(label: str) -> str:
    """``a`` (an alert row) is a game-day alert."""
    return (f"EXISTS (SELECT 1 FROM gamedays g WHERE g.id = {label}"  # noqa: S608 - constant fragment
            " AND a.first_seen_at >= g.started_at AND a.first_seen_at < g.deadline_at"
            " AND (g.ended_at IS NULL OR a.first_seen_at < g.ended_at))")


def gameday_incident(tx: Tx, incident: str = "i.id") -> str:
    """SQL that is true when the incident whose id is the expression ``incident`` is a
    game-day incident (see the module's docstring). ``incident`` is a constant of the
    caller (a column or a bind parameter), never a value."""
    label = _LABEL_OF.of(tx)
    return (f"(EXISTS (SELECT 1 FROM gamedays)"  # noqa: S608 - constant fragments
            f" AND EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = {incident})"
            f" AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = {incident}"
            f" AND NOT {_alert_in_window(label)}))")


@dataclass(frozen=True)
class GameDay:
    id: str
    name: str
    scenario: str
    """The validated scenario, as JSON."""
    targets: tuple[str, ...]
    """The targets the game day's jobs may really act on (empty: every job runs dry)."""
    details: dict[str, Any]
    started_at: datetime
    started_by: str
    deadline_at: datetime
    ended_at: datetime | None
    ended_by: str | None

    def running(self, now: datetime) -> bool:
        return self.ended_at is None and self.started_at <= now < self.deadline_at


def _gameday(row: dict[str, Any] | None) -> GameDay | None:
    if row is None:
        return None
    return record(GameDay, {**row, "targets": tuple(str(t) for t in row["targets"] or ())})


class GameDayRepository(Repository):
    """Game days, and which incidents are theirs."""

    def start(self, *, id: str, name: str, scenario: str, targets: list[str],  # noqa: A002 - the column
              details: dict[str, Any], actor: str, now: datetime, deadline: datetime,
              origin: dict[str, Any] | None = None) -> GameDay:
        row = self.tx.fetchone(
            "INSERT INTO gamedays (id, name, scenario, targets, details, started_at,"  # noqa: S608 - constant columns
            " started_by, deadline_at) VALUES (:id, :name, :scenario, :targets, :details,"
            f" :now, :actor, :deadline) RETURNING {_RETURNING}",
            {"id": id, "name": name, "scenario": scenario, "targets": self.tx.json(targets),
             "details": self.tx.json(details), "now": now, "actor": actor,
             "deadline": deadline})
        made = _gameday(row)
        if made is None:
            raise StoreError("the game day was not written")
        audit.append(self.tx, at=now, actor=actor, action="gameday_started",
                     subject=f"gameday:{id}",
                     details={"name": name, "live_targets": targets,
                              "deadline_at": deadline.isoformat(), **details},
                     origin=origin)
        return made

    def note(self, gameday_id: str, details: dict[str, Any]) -> None:
        """Replace the game day's details (what was posted where)."""
        self.tx.execute("UPDATE gamedays SET details = :d WHERE id = :id",
                        {"id": gameday_id, "d": self.tx.json(details)})

    def end(self, gameday_id: str, *, actor: str, now: datetime,
            origin: dict[str, Any] | None = None) -> GameDay | None:
        """End a game day that has not ended yet; None when there is none such."""
        gone = _gameday(self.tx.fetchone(
            "UPDATE gamedays SET ended_at = :now, ended_by = :actor"  # noqa: S608 - constant columns
            f" WHERE id = :id AND ended_at IS NULL RETURNING {_RETURNING}",
            {"id": gameday_id, "now": now, "actor": actor}))
        if gone is not None:
            audit.append(self.tx, at=now, actor=actor, action="gameday_ended",
                         subject=f"gameday:{gameday_id}", details={"name": gone.name},
                         origin=origin)
        return gone

    def get(self, gameday_id: str) -> GameDay | None:
        return _gameday(self.tx.fetchone(
            f"SELECT {_COLUMNS} FROM gamedays g WHERE g.id = :id", {"id": gameday_id}))  # noqa: S608 - constant columns

    def recent(self, limit: int = 50) -> list[GameDay]:
        rows = self.tx.fetchall(
            f"SELECT {_COLUMNS} FROM gamedays g ORDER BY g.started_at DESC LIMIT :n",  # noqa: S608 - constant columns
            {"n": limit})
        return [g for g in map(_gameday, rows) if g is not None]

    def for_incident(self, incident_id: int) -> GameDay | None:
        """The game day of a game-day incident; None for any other incident."""
        label = _LABEL_OF.of(self.tx)
        return _gameday(self.tx.fetchone(
            f"SELECT {_COLUMNS} FROM gamedays g WHERE g.id = (SELECT MIN({label})"  # noqa: S608 - constant fragments
            f" FROM alerts a WHERE a.incident_id = :inc) AND {gameday_incident(self.tx, ':inc')}",
            {"inc": incident_id}))

    def incidents(self, gameday_id: str) -> list[GameDayIncident]:
        """Every incident holding an alert of this game day (first seen in its window),
        oldest first, and whether it is a game-day incident (False when real alerts joined
        it)."""
        label = _LABEL_OF.of(self.tx)
        return records(GameDayIncident, self.tx.fetchall(
            "SELECT i.id AS incident_id, CASE WHEN"  # noqa: S608 - constant fragments
            f" {gameday_incident(self.tx, 'i.id')} THEN 1 ELSE 0 END AS drill"
            " FROM incidents i WHERE EXISTS (SELECT 1 FROM alerts a"
            f" WHERE a.incident_id = i.id AND {label} = :gid AND {_alert_in_window(label)})"
            " ORDER BY i.id",
            {"gid": gameday_id}))

    def marks(self, incident_ids: list[int]) -> dict[int, str]:
        """Of these incidents, the game-day ones, with their game day's id (for pages)."""
        if not incident_ids:
            return {}
        label = _LABEL_OF.of(self.tx)
        params = {f"i{n}": v for n, v in enumerate(incident_ids)}
        rows = self.tx.fetchall(
            f"SELECT i.id AS incident_id, (SELECT MIN({label}) FROM alerts a"  # noqa: S608 - constant fragments and placeholders
            " WHERE a.incident_id = i.id) AS gameday FROM incidents i"
            f" WHERE i.id IN ({', '.join(':' + k for k in params)})"
            f" AND {gameday_incident(self.tx, 'i.id')}",
            params)
        return {int(r["incident_id"]): str(r["gameday"]) for r in rows}


@dataclass(frozen=True)
class GameDayIncident:
    incident_id: int
    drill: int
    """1 when every alert of the incident is a game-day alert."""


__all__ = ["LABEL", "GameDay", "GameDayIncident", "GameDayRepository", "gameday_incident"]
