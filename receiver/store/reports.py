"""Facts for post-incident metrics: one row per incident, one per job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from receiver.incidents import ACTIVE_STATES
from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect


def incident_facts(tx: Tx, since: datetime | None) -> list[Row]:
    where = "WHERE i.opened_at >= :since" if since is not None else ""
    rows = tx.fetchall(
        f"""SELECT i.id, i.severity, i.state, i.opened_at, i.ack_due_at, i.acknowledged_at,
                  i.mitigated_at, i.resolved_at, i.closed_at, i.false_alarm_at,
                  i.sla_breached_at,
                  (SELECT MIN(a.starts_at) FROM alerts a WHERE a.incident_id = i.id)
                      AS first_alert_at,
                  (SELECT COUNT(*) FROM incident_events e WHERE e.incident_id = i.id
                      AND e.actor LIKE 'user:%') AS human_events,
                  (SELECT COUNT(*) FROM jobs j WHERE j.incident_id = i.id
                      AND j.started_at IS NOT NULL) AS jobs_started
             FROM incidents i {where} ORDER BY i.id""",  # noqa: S608 - fixed fragment
        {"since": since} if since is not None else {},
    )
    for r in rows:
        # MIN() over text on SQLite comes back as text
        if isinstance(r["first_alert_at"], str):
            r["first_alert_at"] = datetime.fromisoformat(r["first_alert_at"])
    return rows


def job_facts(tx: Tx, since: datetime | None) -> list[Row]:
    where = "WHERE created_at >= :since" if since is not None else ""
    return tx.fetchall(
        f"SELECT id, playbook, state FROM jobs {where} ORDER BY id",  # noqa: S608 - fixed fragment
        {"since": since} if since is not None else {},
    )


# -- the /metrics summary: one aggregate query, whatever the number of incidents ----------

_SECONDS = PerDialect(
    postgres="date_part('epoch', {end} - i.opened_at)",
    # Whole seconds and microseconds apart (timestamps are ISO text with microseconds), so
    # that the difference is exact: julianday() would round it to about 10 microseconds.
    sqlite="((CAST(strftime('%s', {end}) AS INTEGER) - CAST(strftime('%s', i.opened_at)"
           " AS INTEGER)) + (CAST(substr({end}, 21, 6) AS INTEGER)"
           " - CAST(substr(i.opened_at, 21, 6) AS INTEGER)) / 1000000.0)",
)
MILESTONES = {"acknowledge": "i.acknowledged_at", "mitigate": "i.mitigated_at",
              "resolve": "i.resolved_at"}


@dataclass(frozen=True)
class DurationSummary:
    """One histogram: cumulative counts at each bound, plus the count and sum of values."""

    buckets: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class SeveritySummary:
    severity: str
    incidents: int
    active: int
    sla_breaches: int
    false_alarms: int
    noise: int
    durations: dict[str, DurationSummary]


def _summary_sql(seconds: str, bounds: tuple[float, ...]) -> str:
    """The summary query, with ``seconds``, the backend's :data:`_SECONDS` expression."""
    cols = []
    for name, column in MILESTONES.items():
        d = seconds.format(end=column)
        cols.append(f"{d} AS d_{name}")
    # The first human response (ack, resolution, close, false-alarm marking) came after the
    # deadline, or there is none yet and the deadline has passed.
    responses = ("i.acknowledged_at", "i.resolved_at", "i.closed_at", "i.false_alarm_at")
    on_time = " OR ".join(f"{r} <= i.ack_due_at" for r in responses)
    none_yet = " AND ".join(f"{r} IS NULL" for r in responses)
    per_incident = f"""
        SELECT i.severity,
               CASE WHEN i.state IN ({", ".join(f"'{s}'" for s in ACTIVE_STATES)})
                    THEN 1 ELSE 0 END AS active,
               CASE WHEN {on_time} THEN 0
                    WHEN {none_yet} THEN CASE WHEN :now > i.ack_due_at THEN 1 ELSE 0 END
                    ELSE 1 END AS breached,
               CASE WHEN i.false_alarm_at IS NOT NULL THEN 1 ELSE 0 END AS false_alarm,
               CASE WHEN i.resolved_at IS NOT NULL
                     AND {seconds.format(end="i.resolved_at")} <= :noise_s
                     AND NOT EXISTS (SELECT 1 FROM incident_events e
                                      WHERE e.incident_id = i.id AND e.actor LIKE 'user:%')
                     AND NOT EXISTS (SELECT 1 FROM jobs j
                                      WHERE j.incident_id = i.id AND j.started_at IS NOT NULL)
                    THEN 1 ELSE 0 END AS noise,
               {", ".join(cols)}
          FROM incidents i"""  # noqa: S608 - built from constants
    aggs = ["severity", "COUNT(*) AS n", "SUM(active) AS active", "SUM(breached) AS breached",
            "SUM(false_alarm) AS false_alarms", "SUM(noise) AS noise"]
    for name in MILESTONES:
        d = f"d_{name}"
        aggs.append(f"COUNT({d}) AS {name}_count")
        aggs.append(f"SUM(CASE WHEN {d} > 0 THEN {d} ELSE 0 END) AS {name}_sum")
        for k, bound in enumerate(bounds):
            aggs.append(f"SUM(CASE WHEN {d} <= {float(bound)!r} THEN 1 ELSE 0 END)"
                        f" AS {name}_b{k}")
    # MATERIALIZED: each incident's durations are computed once, not once per aggregate
    # that reads them (both planners would otherwise inline the expressions).
    return (f"WITH per AS MATERIALIZED ({per_incident})"  # noqa: S608 - built from constants
            f" SELECT {', '.join(aggs)} FROM per GROUP BY severity")


def incident_summary(tx: Tx, *, now: datetime, noise_window: timedelta,
                     bounds: tuple[float, ...]) -> dict[str, SeveritySummary]:
    """Per-severity counts and duration histograms for ``/metrics``, by one query."""
    _PLAN_SUMMARY.of(tx)(tx)
    rows = tx.fetchall(_summary_sql(_SECONDS.of(tx), bounds),
                       {"now": now, "noise_s": noise_window.total_seconds()})
    out = {}
    for r in rows:
        durations = {
            name: DurationSummary(
                buckets=tuple(int(r[f"{name}_b{k}"] or 0) for k in range(len(bounds))),
                count=int(r[f"{name}_count"] or 0), total=float(r[f"{name}_sum"] or 0.0))
            for name in MILESTONES
        }
        out[r["severity"]] = SeveritySummary(
            severity=r["severity"], incidents=int(r["n"]), active=int(r["active"] or 0),
            sla_breaches=int(r["breached"] or 0), false_alarms=int(r["false_alarms"] or 0),
            noise=int(r["noise"] or 0), durations=durations)
    return out


def _plan_summary_pg(tx: Tx) -> None:
    # The planner's estimate for the per-incident sub-queries is high enough to turn on
    # JIT compilation, which costs seconds here for a query that runs in milliseconds.
    tx.execute("SET LOCAL jit = off")
    tx.execute("SET LOCAL work_mem = '16MB'")


def _plan_summary_sqlite(tx: Tx) -> None:
    """Nothing to tune: SQLite's planner has no such settings."""


_PLAN_SUMMARY = PerDialect(postgres=_plan_summary_pg, sqlite=_plan_summary_sqlite)
"""Planner settings for the summary query, local to its transaction."""


def playbook_outcomes(tx: Tx) -> dict[str, dict[str, int]]:
    """Concluded jobs by playbook and final state (succeeded, failed, escalated)."""
    rows = tx.fetchall(
        "SELECT playbook, state, COUNT(*) AS n FROM jobs"
        " WHERE state IN ('succeeded', 'failed', 'escalated') GROUP BY playbook, state")
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["playbook"], {"succeeded": 0, "failed": 0, "escalated": 0})[
            r["state"]] = int(r["n"])
    return out
