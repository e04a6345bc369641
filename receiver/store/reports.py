"""Facts for post-incident metrics: one row per incident, one per job.

Game-day incidents (:func:`receiver.store.gamedays.gameday_incident`) and their jobs are
left out of every figure here: a drill is not a real response time, SLA breach or
playbook outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from receiver.incidents.states import ACTIVE_STATES
from receiver.store import report_series
from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect
from receiver.store.gamedays import gameday_incident
from receiver.store.report_series import AlertCount, JobRun
from receiver.store.repository import Repository, records


@dataclass(frozen=True)
class IncidentFacts:
    """What the response metrics need of one incident."""

    id: int
    severity: str
    state: str
    opened_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    false_alarm_at: datetime | None
    sla_breached_at: datetime | None
    first_alert_at: datetime | None
    human_events: int
    jobs_started: int


@dataclass(frozen=True)
class JobFacts:
    id: int
    playbook: str
    state: str


def incident_facts(tx: Tx, since: datetime | None) -> list[IncidentFacts]:
    where = f"WHERE NOT {gameday_incident(tx, 'i.id')}"
    if since is not None:
        where += " AND i.opened_at >= :since"
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
    return records(IncidentFacts, rows)


def job_facts(tx: Tx, since: datetime | None) -> list[JobFacts]:
    where = f"WHERE NOT {gameday_incident(tx, 'jobs.incident_id')}"
    if since is not None:
        where += " AND created_at >= :since"
    return records(JobFacts, tx.fetchall(
        f"SELECT id, playbook, state FROM jobs {where} ORDER BY id",  # noqa: S608 - fixed fragment
        {"since": since} if since is not None else {},
    ))


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


def _summary_sql(seconds: str, bounds: tuple[float, ...], drill: str = "0 = 1") -> str:
    """The summary query, with ``seconds``, the backend's :data:`_SECONDS` expression, over
    the incidents for which ``drill`` (a game-day predicate on ``i.id``) is false.

    One pass computes each incident's figures (materialized, so every duration is computed
    once); then one small GROUP BY per part: the counts, the noise (only incidents that
    resolved within the window are looked up in the timeline and jobs), and for each
    milestone the number of incidents per histogram bucket with the sum of durations.
    """
    durations = ", ".join(f"{seconds.format(end=column)} AS d_{name}"
                          for name, column in MILESTONES.items())
    # The first human response (ack, resolution, close, false-alarm marking) came after the
    # deadline, or there is none yet and the deadline has passed.
    responses = ("i.acknowledged_at", "i.resolved_at", "i.closed_at", "i.false_alarm_at")
    on_time = " OR ".join(f"{r} <= i.ack_due_at" for r in responses)
    none_yet = " AND ".join(f"{r} IS NULL" for r in responses)
    per_incident = f"""
        SELECT i.id, i.severity,
               CASE WHEN i.state IN ({", ".join(f"'{s}'" for s in ACTIVE_STATES)})
                    THEN 1 ELSE 0 END AS active,
               CASE WHEN {on_time} THEN 0
                    WHEN {none_yet} THEN CASE WHEN :now > i.ack_due_at THEN 1 ELSE 0 END
                    ELSE 1 END AS breached,
               CASE WHEN i.false_alarm_at IS NOT NULL THEN 1 ELSE 0 END AS false_alarm,
               {durations}
          FROM incidents i WHERE NOT {drill}"""  # noqa: S608 - built from constants
    parts = [
        "SELECT 'all' AS part, severity, -1 AS bucket, COUNT(*) AS n, SUM(active) AS active,"
        " SUM(breached) AS breached, SUM(false_alarm) AS false_alarms, 0.0 AS total"
        " FROM per GROUP BY severity",
        "SELECT 'noise', severity, -1, COUNT(*), 0, 0, 0, 0.0 FROM per"
        " WHERE d_resolve IS NOT NULL AND d_resolve <= :noise_s"
        " AND NOT EXISTS (SELECT 1 FROM incident_events e"
        "                  WHERE e.incident_id = per.id AND e.actor LIKE 'user:%')"
        " AND NOT EXISTS (SELECT 1 FROM jobs j"
        "                  WHERE j.incident_id = per.id AND j.started_at IS NOT NULL)"
        " GROUP BY severity",
    ]
    for name in MILESTONES:
        d = f"d_{name}"
        bucket = ("CASE " + " ".join(f"WHEN {d} <= {float(b)!r} THEN {k}"
                                     for k, b in enumerate(bounds))
                  + f" ELSE {len(bounds)} END")
        parts.append(
            f"SELECT '{name}', severity, {bucket}, COUNT(*), 0, 0, 0,"  # noqa: S608 - constants
            f" SUM(CASE WHEN {d} > 0 THEN {d} ELSE 0 END) FROM per"
            f" WHERE {d} IS NOT NULL GROUP BY severity, {bucket}")
    return (f"WITH per AS MATERIALIZED ({per_incident}) "  # noqa: S608 - built from constants
            + " UNION ALL ".join(parts))


def incident_summary(tx: Tx, *, now: datetime, noise_window: timedelta,
                     bounds: tuple[float, ...]) -> dict[str, SeveritySummary]:
    """Per-severity counts and duration histograms for ``/metrics``, by one query."""
    _PLAN_SUMMARY.of(tx)(tx)
    rows = tx.fetchall(_summary_sql(_SECONDS.of(tx), bounds, gameday_incident(tx, "i.id")),
                       {"now": now, "noise_s": noise_window.total_seconds()})
    counts: dict[str, Row] = {}
    noise: dict[str, int] = {}
    # per (severity, milestone): incidents per bucket (the last one is +Inf), sum of values
    per_bucket: dict[tuple[str, str], list[int]] = {}
    totals: dict[tuple[str, str], float] = {}
    for r in rows:
        sev, part = r["severity"], r["part"]
        if part == "all":
            counts[sev] = r
        elif part == "noise":
            noise[sev] = int(r["n"])
        else:
            slots = per_bucket.setdefault((sev, part), [0] * (len(bounds) + 1))
            slots[int(r["bucket"])] += int(r["n"])
            totals[(sev, part)] = totals.get((sev, part), 0.0) + float(r["total"] or 0.0)
    out = {}
    for sev, r in counts.items():
        durations = {}
        for name in MILESTONES:
            slots = per_bucket.get((sev, name), [0] * (len(bounds) + 1))
            cumulative = tuple(sum(slots[:k + 1]) for k in range(len(bounds)))
            durations[name] = DurationSummary(buckets=cumulative, count=sum(slots),
                                              total=totals.get((sev, name), 0.0))
        out[sev] = SeveritySummary(
            severity=sev, incidents=int(r["n"]), active=int(r["active"] or 0),
            sla_breaches=int(r["breached"] or 0), false_alarms=int(r["false_alarms"] or 0),
            noise=noise.get(sev, 0), durations=durations)
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
        "SELECT playbook, state, COUNT(*) AS n FROM jobs"  # noqa: S608 - constant fragments
        " WHERE state IN ('succeeded', 'failed', 'escalated')"
        f" AND NOT {gameday_incident(tx, 'jobs.incident_id')} GROUP BY playbook, state")
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r["playbook"], {"succeeded": 0, "failed": 0, "escalated": 0})[
            r["state"]] = int(r["n"])
    return out


# -- the snapshot that scrapes read ------------------------------------------------------

SNAPSHOT = "incidents"


@dataclass(frozen=True)
class Snapshot:
    computed_at: datetime
    bounds: tuple[float, ...]
    summary: dict[str, SeveritySummary]
    outcomes: dict[str, dict[str, int]]


def save_snapshot(tx: Tx, snap: Snapshot) -> None:
    """Store the figures (one row; the newest computation wins)."""
    figures = {
        "bounds": list(snap.bounds),
        "outcomes": snap.outcomes,
        "summary": {sev: {"incidents": s.incidents, "active": s.active,
                          "sla_breaches": s.sla_breaches, "false_alarms": s.false_alarms,
                          "noise": s.noise,
                          "durations": {name: {"buckets": list(d.buckets), "count": d.count,
                                               "total": d.total}
                                        for name, d in s.durations.items()}}
                    for sev, s in snap.summary.items()},
    }
    tx.execute(
        "INSERT INTO metrics_snapshots (name, computed_at, figures) VALUES (:n, :at, :f)"
        " ON CONFLICT (name) DO UPDATE SET computed_at = excluded.computed_at,"
        " figures = excluded.figures WHERE metrics_snapshots.computed_at <= excluded.computed_at",
        {"n": SNAPSHOT, "at": snap.computed_at, "f": tx.json(figures)},
    )


def load_snapshot(tx: Tx) -> Snapshot | None:
    row = tx.fetchone("SELECT computed_at, figures FROM metrics_snapshots WHERE name = :n",
                      {"n": SNAPSHOT})
    if row is None:
        return None
    f = row["figures"]
    summary = {
        sev: SeveritySummary(
            severity=sev, incidents=int(s["incidents"]), active=int(s["active"]),
            sla_breaches=int(s["sla_breaches"]), false_alarms=int(s["false_alarms"]),
            noise=int(s["noise"]),
            durations={name: DurationSummary(buckets=tuple(int(b) for b in d["buckets"]),
                                             count=int(d["count"]), total=float(d["total"]))
                       for name, d in s["durations"].items()})
        for sev, s in f["summary"].items()
    }
    outcomes = {name: {k: int(v) for k, v in o.items()} for name, o in f["outcomes"].items()}
    return Snapshot(row["computed_at"], tuple(float(b) for b in f["bounds"]), summary, outcomes)


def compute_snapshot(tx: Tx, *, now: datetime, noise_window: timedelta,
                     bounds: tuple[float, ...]) -> Snapshot:
    return Snapshot(now, bounds, incident_summary(tx, now=now, noise_window=noise_window,
                                                  bounds=bounds), playbook_outcomes(tx))


class ReportRepository(Repository):
    """Incident and job facts, summaries and the metrics snapshot."""

    def incident_facts(self, since: datetime | None) -> list[IncidentFacts]:
        """One record per incident opened since ``since`` (every one with None)."""
        return incident_facts(self.tx, since)

    def job_facts(self, since: datetime | None) -> list[JobFacts]:
        return job_facts(self.tx, since)

    def incident_summary(self, *, now: datetime, noise_window: timedelta,
                         bounds: tuple[float, ...]) -> dict[str, SeveritySummary]:
        return incident_summary(self.tx, now=now, noise_window=noise_window, bounds=bounds)

    def playbook_outcomes(self) -> dict[str, dict[str, int]]:
        return playbook_outcomes(self.tx)

    def load_snapshot(self) -> Snapshot | None:
        return load_snapshot(self.tx)

    def save_snapshot(self, snap: Snapshot) -> None:
        save_snapshot(self.tx, snap)

    def compute_snapshot(self, *, now: datetime, noise_window: timedelta,
                         bounds: tuple[float, ...]) -> Snapshot:
        return compute_snapshot(self.tx, now=now, noise_window=noise_window, bounds=bounds)

    def alert_counts(self, since: datetime, until: datetime,
                     limit: int = 10) -> list[AlertCount]:
        """The alert names that fired most in ``[since, until)`` (the report's noisiest)."""
        return report_series.alert_counts(self.tx, since, until, limit)

    def job_runs(self, since: datetime, until: datetime) -> list[JobRun]:
        """Jobs created in ``[since, until)`` with their incidents' recurrence facts."""
        return report_series.job_runs(self.tx, since, until)
