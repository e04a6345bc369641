"""Earned autonomy: each rule's level (``rule_autonomy``), what set it back
(``rule_setbacks``), and the facts about its runs that both rest on (read from ``jobs``,
``alerts`` and ``incident_events``).

A *run* is a job that started and finished (an undo job is not a run of its own: it marks
the job it takes back as undone when a person asked for it; an undo that a rule schedules
is the planned end of a temporary measure, or follows a failed verification that already
counts, and marks nothing; a game day's jobs are no runs: a drill earns nothing and
is left out of the figures). For each run the store answers when its webhook came
(the alert's first delivery, or the incident's opening for an incident's job), whether and
when a verification of it failed, whether it was undone, and when the same alert fired
again afterwards (the next episode of the alert's fingerprint; for an incident's job, the
next alert of an incident with the same key). The rules of promotion and demotion are in
:mod:`receiver.remediation.autonomy`.
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from receiver.store.db import Row
from receiver.store.gamedays import gameday_incident
from receiver.store.repository import Repository, maybe, records

Level = Literal["approval", "autonomous"]
Cause = Literal["verification_failed", "undone", "recurred"]

_LEVEL_COLUMNS = "rule, level, changed_at, streak_started_at, reason, job_id, incident_id"
_SETBACK_COLUMNS = "id, rule, job_id, cause, at, incident_id, detail, recorded_at"


@dataclass(frozen=True)
class RuleLevel:
    rule: str
    level: str
    changed_at: datetime
    streak_started_at: datetime | None
    """The last setback: only runs verified after it count towards a promotion."""
    reason: str
    job_id: int | None
    incident_id: int | None


@dataclass(frozen=True)
class Setback:
    id: int
    rule: str
    job_id: int
    cause: str
    at: datetime
    incident_id: int
    """The incident it showed on: the job's, or for a recurrence the new episode's."""
    detail: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class RunFacts:
    """One finished run of a rule, with what happened after it."""

    job_id: int
    rule: str
    playbook: str
    incident_id: int
    state: str
    approved_at: datetime | None
    started_at: datetime
    finished_at: datetime
    webhook_at: datetime | None
    verification_failed_at: datetime | None
    undone_at: datetime | None
    next_episode_at: datetime | None
    next_episode_incident_id: int | None

    @property
    def verified(self) -> bool:
        return self.state == "succeeded"


# The runs of a period are read in five plain queries (no correlated subquery per run, so
# the cost stays linear and PostgreSQL's planner has no reason to JIT-compile them); the
# next episode of each run is then found by bisection. FILTER selects the runs (alias j).
_FILTER = ("j.undoes_job_id IS NULL AND j.started_at IS NOT NULL AND j.finished_at IS NOT NULL"
           " AND j.state IN ('succeeded', 'failed', 'escalated')"
           " AND j.finished_at >= :since AND j.finished_at < :until")
_RUNS = ("SELECT j.id AS job_id, j.rule, j.playbook, j.incident_id, j.state, j.approved_at,"
         " j.started_at, j.finished_at, j.alert_id, a.fingerprint, i.key AS incident_key,"
         " COALESCE(a.first_seen_at, i.opened_at) AS webhook_at"
         " FROM jobs j JOIN incidents i ON i.id = j.incident_id"
         " LEFT JOIN alerts a ON a.id = j.alert_id WHERE {f} ORDER BY j.finished_at, j.id")
_FAILED = ("SELECT e.job_id, MIN(e.at) AS at FROM incident_events e"
           " WHERE e.kind = 'verification_failed' AND e.incident_id IN"
           " (SELECT j.incident_id FROM jobs j WHERE {f}) GROUP BY e.job_id")
_UNDONE = ("SELECT u.undoes_job_id AS job_id, MIN(u.created_at) AS at FROM jobs u"
           " WHERE u.undoes_job_id IN (SELECT j.id FROM jobs j WHERE {f})"
           " AND EXISTS (SELECT 1 FROM incident_events e WHERE e.incident_id = u.incident_id"
           " AND e.job_id = u.id AND e.kind = 'undo_requested' AND e.actor <> 'system')"
           " GROUP BY u.undoes_job_id")
_BY_FINGERPRINT = ("SELECT a.fingerprint AS k, a.first_seen_at, a.incident_id FROM alerts a"
                   " WHERE a.first_seen_at > :since AND a.fingerprint IN"
                   " (SELECT a0.fingerprint FROM jobs j JOIN alerts a0 ON a0.id = j.alert_id"
                   " WHERE {f})")
_BY_KEY = ("SELECT i.key AS k, a.first_seen_at, a.incident_id FROM alerts a"
           " JOIN incidents i ON i.id = a.incident_id WHERE a.first_seen_at > :since"
           " AND i.key IN (SELECT i0.key FROM jobs j JOIN incidents i0 ON i0.id = j.incident_id"
           " WHERE j.alert_id IS NULL AND {f})")


class _Episodes:
    """Alert episodes by fingerprint (or incident key), in order of first delivery."""

    def __init__(self, rows: list[Row]) -> None:
        self._by: dict[str, list[tuple[datetime, int]]] = {}
        for r in rows:
            self._by.setdefault(r["k"], []).append((r["first_seen_at"], r["incident_id"]))
        for v in self._by.values():
            v.sort()

    def after(self, key: str | None, at: datetime) -> tuple[datetime, int] | None:
        found = self._by.get(key or "")
        if not found:
            return None
        i = bisect.bisect_right(found, (at, sys.maxsize))
        return found[i] if i < len(found) else None


class AutonomyRepository(Repository):
    """Rules' levels and setbacks, and their runs' facts."""

    # -- levels -------------------------------------------------------------------------
    def level(self, rule: str) -> RuleLevel | None:
        return maybe(RuleLevel, self.tx.fetchone(
            f"SELECT {_LEVEL_COLUMNS} FROM rule_autonomy WHERE rule = :rule",  # noqa: S608 - constant columns
            {"rule": rule}))

    def levels(self) -> dict[str, RuleLevel]:
        rows = self.tx.fetchall(f"SELECT {_LEVEL_COLUMNS} FROM rule_autonomy")  # noqa: S608 - constant columns
        return {r.rule: r for r in records(RuleLevel, rows)}

    def promote(self, rule: str, *, now: datetime, reason: str, job_id: int,
                incident_id: int) -> RuleLevel | None:
        """The rule's jobs run without approval from now; None when it already had that
        level (of two workers promoting one rule at once, one says so)."""
        return maybe(RuleLevel, self.tx.fetchone(
            "INSERT INTO rule_autonomy (rule, level, changed_at, streak_started_at, reason,"  # noqa: S608 - constant columns
            " job_id, incident_id) VALUES (:rule, 'autonomous', :now, NULL, :reason, :job, :inc)"
            " ON CONFLICT (rule) DO UPDATE SET level = 'autonomous',"
            " changed_at = excluded.changed_at, reason = excluded.reason,"
            " job_id = excluded.job_id, incident_id = excluded.incident_id"
            " WHERE rule_autonomy.level <> 'autonomous'"
            f" RETURNING {_LEVEL_COLUMNS}",
            {"rule": rule, "now": now, "reason": reason[:1000], "job": job_id,
             "inc": incident_id}))

    def set_back(self, rule: str, *, at: datetime, now: datetime, reason: str, job_id: int,
                 incident_id: int) -> bool:
        """A setback at ``at``: the rule needs approval again, and only runs verified after
        ``at`` count from now on. True when this call demoted it (it was autonomous)."""
        self.tx.execute(
            "INSERT INTO rule_autonomy (rule, level, changed_at, streak_started_at, reason,"
            " job_id, incident_id) VALUES (:rule, 'approval', :now, :at, :reason, :job, :inc)"
            " ON CONFLICT (rule) DO NOTHING",
            {"rule": rule, "now": now, "at": at, "reason": reason[:1000], "job": job_id,
             "inc": incident_id})
        self.tx.execute(
            "UPDATE rule_autonomy SET streak_started_at = :at WHERE rule = :rule"
            " AND (streak_started_at IS NULL OR streak_started_at < :at)",
            {"rule": rule, "at": at})
        row = self.tx.fetchone(
            "UPDATE rule_autonomy SET level = 'approval', changed_at = :now, reason = :reason,"
            " job_id = :job, incident_id = :inc WHERE rule = :rule AND level = 'autonomous'"
            " RETURNING rule",
            {"rule": rule, "now": now, "reason": reason[:1000], "job": job_id,
             "inc": incident_id})
        return row is not None

    # -- setbacks -----------------------------------------------------------------------
    def add_setback(self, *, rule: str, job_id: int, cause: Cause, at: datetime,
                    incident_id: int, detail: dict[str, Any], now: datetime) -> Setback | None:
        """Record one setback; None when it was already recorded (by another worker, or an
        earlier look)."""
        return maybe(Setback, self.tx.fetchone(
            "INSERT INTO rule_setbacks (rule, job_id, cause, at, incident_id, detail,"  # noqa: S608 - constant columns
            " recorded_at) VALUES (:rule, :job, :cause, :at, :inc, :detail, :now)"
            f" ON CONFLICT (rule, job_id, cause) DO NOTHING RETURNING {_SETBACK_COLUMNS}",
            {"rule": rule, "job": job_id, "cause": cause, "at": at, "inc": incident_id,
             "detail": self.tx.json(detail), "now": now}))

    def setbacks(self, *, since: datetime, rule: str | None = None) -> list[Setback]:
        """Setbacks at or after ``since`` (of one rule, or all), oldest first."""
        rows = self.tx.fetchall(
            f"SELECT {_SETBACK_COLUMNS} FROM rule_setbacks WHERE at >= :since"  # noqa: S608 - constant columns
            + (" AND rule = :rule" if rule is not None else "") + " ORDER BY at, id",
            {"since": since, "rule": rule})
        return records(Setback, rows)

    # -- runs ---------------------------------------------------------------------------
    def runs(self, *, since: datetime, until: datetime,
             rule: str | None = None) -> list[RunFacts]:
        """Runs that finished in ``[since, until)`` (of one rule, or all), oldest first."""
        f = (_FILTER + (" AND j.rule = :rule" if rule is not None else "")
             + f" AND NOT {gameday_incident(self.tx, 'j.incident_id')}")
        args = {"since": since, "until": until, "rule": rule}
        rows = self.tx.fetchall(_RUNS.format(f=f), args)
        if not rows:
            return []
        failed = {r["job_id"]: r["at"] for r in self.tx.fetchall(_FAILED.format(f=f), args)}
        undone = {r["job_id"]: r["at"] for r in self.tx.fetchall(_UNDONE.format(f=f), args)}
        by_alert = _Episodes(self.tx.fetchall(_BY_FINGERPRINT.format(f=f), args))
        by_key = _Episodes(self.tx.fetchall(_BY_KEY.format(f=f), args)
                           if any(r["alert_id"] is None for r in rows) else [])
        out = []
        for r in rows:
            nxt = (by_alert.after(r["fingerprint"], r["finished_at"]) if r["alert_id"] is not None
                   else by_key.after(r["incident_key"], r["finished_at"]))
            out.append(RunFacts(
                job_id=r["job_id"], rule=r["rule"], playbook=r["playbook"],
                incident_id=r["incident_id"], state=r["state"], approved_at=r["approved_at"],
                started_at=r["started_at"], finished_at=r["finished_at"],
                webhook_at=r["webhook_at"], verification_failed_at=failed.get(r["job_id"]),
                undone_at=undone.get(r["job_id"]),
                next_episode_at=nxt[0] if nxt else None,
                next_episode_incident_id=nxt[1] if nxt else None))
        return out
