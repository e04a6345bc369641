"""The report page's figures and charts, for the ``/report`` page and ``report --html``.

:func:`gather` reads the facts of a time range through a read-only unit of work;
:func:`figures` turns them into series with the post-incident metrics of
:mod:`receiver.incidents.report` (each week's MTTA, MTTR and SLA breaches are that module's
figures over the incidents opened that week); :func:`charts` draws them with
:mod:`receiver.incidents.charts`. Weeks start on Monday, days and weeks are UTC.

The recurrence rate of a playbook: of the incidents where one of its jobs succeeded, the
share whose problem came back, i.e. the incident was reopened, or another incident with
the same key opened within :data:`RECURRENCE_WINDOW` after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from markupsafe import Markup

from receiver.incidents import charts
from receiver.incidents import report as rep
from receiver.store.report_series import AlertCount, JobRun
from receiver.store.reports import IncidentFacts, JobFacts

RECURRENCE_WINDOW = timedelta(days=7)
NOISIEST = 10
MAX_RANGE = timedelta(days=366)
PRESETS = {"7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


@dataclass(frozen=True)
class Range:
    """``[start, end)`` and how the range was asked for (a preset like 7d, or dates)."""

    start: datetime
    end: datetime
    label: str

    @classmethod
    def last(cls, window: timedelta, now: datetime, label: str) -> Range:
        return cls(now - window, now, label)

    @classmethod
    def dates(cls, first: date, last: date) -> Range:
        """From the start of ``first`` to the end of ``last`` (both UTC days, inclusive)."""
        start = datetime.combine(first, time(0), UTC)
        return cls(start, datetime.combine(last, time(0), UTC) + timedelta(days=1),
                   f"{first.isoformat()} to {last.isoformat()}")


class ReportReader(Protocol):
    def incident_facts(self, since: datetime | None) -> list[IncidentFacts]: ...
    def alert_counts(self, since: datetime, until: datetime,
                     limit: int = ...) -> list[AlertCount]: ...
    def job_runs(self, since: datetime, until: datetime) -> list[JobRun]: ...


@dataclass(frozen=True)
class Facts:
    incidents: list[IncidentFacts]
    alerts: list[AlertCount]
    jobs: list[JobRun]


def gather(reports: ReportReader, rng: Range) -> Facts:
    """The range's facts from ``uow.reports`` (one read-only unit of work)."""
    incidents = [f for f in reports.incident_facts(rng.start) if f.opened_at < rng.end]
    return Facts(incidents, reports.alert_counts(rng.start, rng.end, NOISIEST),
                 reports.job_runs(rng.start, rng.end))


@dataclass(frozen=True)
class PlaybookFigures:
    playbook: str
    succeeded: int
    failed: int
    escalated: int
    success_rate: float | None
    remediated: int
    recurred: int

    @property
    def recurrence_rate(self) -> float | None:
        return self.recurred / self.remediated if self.remediated else None


@dataclass(frozen=True)
class Figures:
    """Everything the page shows, as numbers."""

    range: Range
    now: datetime
    summary: rep.Report
    weeks: list[date]
    weekly: dict[date, rep.Report]
    days: list[date]
    per_day: dict[str, list[int]]  # severity -> incidents opened each day
    alerts: list[AlertCount]
    playbooks: list[PlaybookFigures]


def _week_of(at: datetime) -> date:
    d = at.astimezone(UTC).date()
    return d - timedelta(days=d.weekday())


def _day_list(rng: Range) -> list[date]:
    first = rng.start.astimezone(UTC).date()
    last = (rng.end - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def recurred(run: JobRun) -> bool:
    """Whether the problem of the run's incident came back (see the module's docstring)."""
    if run.reopened_count > 0:
        return True
    return (run.next_opened_at is not None
            and run.next_opened_at - run.created_at <= RECURRENCE_WINDOW)


def playbook_figures(runs: list[JobRun], summary: rep.Report) -> list[PlaybookFigures]:
    remediated: dict[str, set[int]] = {}
    came_back: dict[str, set[int]] = {}
    for run in runs:
        if run.state != "succeeded":
            continue
        remediated.setdefault(run.playbook, set()).add(run.incident_id)
        if recurred(run):
            came_back.setdefault(run.playbook, set()).add(run.incident_id)
    out = []
    for name, p in sorted(summary.playbooks.items()):
        out.append(PlaybookFigures(name, p["succeeded"], p["failed"], p["escalated"],
                                   p["success_rate"], len(remediated.get(name, ())),
                                   len(came_back.get(name, ()))))
    return out


def figures(facts: Facts, rng: Range, *, now: datetime, noise_window: timedelta) -> Figures:
    """The series of every chart, from the facts of ``rng``."""
    jobs = [JobFacts(r.id, r.playbook, r.state) for r in facts.jobs]
    summary = rep.build(facts.incidents, jobs, since=rng.start, now=now,
                        noise_window=noise_window)
    days = _day_list(rng)
    weeks = sorted({_week_of(datetime.combine(d, time(0), UTC)) for d in days})
    by_week: dict[date, list[IncidentFacts]] = {w: [] for w in weeks}
    per_day = {sev: [0] * len(days) for sev in rep.SEVERITIES}
    index = {d: k for k, d in enumerate(days)}
    for f in facts.incidents:
        by_week.setdefault(_week_of(f.opened_at), []).append(f)
        k = index.get(f.opened_at.astimezone(UTC).date())
        if k is not None and f.severity in per_day:
            per_day[f.severity][k] += 1
    weekly = {w: rep.build(rows, [], since=datetime.combine(w, time(0), UTC), now=now,
                           noise_window=noise_window) for w, rows in by_week.items()}
    return Figures(rng, now, summary, weeks, weekly, days, per_day, facts.alerts,
                   playbook_figures(facts.jobs, summary))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _duration(value: float | None) -> str:
    return "-" if value is None else charts.duration_text(value)


def _weekly_series(fig: Figures, pick: Callable[[rep.SeverityStats], float | None]
                   ) -> list[charts.Series]:
    return [charts.Series(sev, tuple(pick(fig.weekly[w].by_severity[sev]) for w in fig.weeks))
            for sev in rep.SEVERITIES]


def _seconds(value: float) -> str:
    return f"{charts.duration_text(value)} ({value:.0f} s)"


def charts_of(fig: Figures) -> list[tuple[str, Markup]]:
    """``(section title, svg)`` for each chart, in page order."""
    weeks = [f"wk {w.strftime('%m-%d')}" for w in fig.weeks]
    days = [d.strftime("%m-%d") for d in fig.days]
    out: list[tuple[str, Markup]] = []
    out.append(("Mean time to acknowledge", charts.bars(
        "chart-mtta", "MTTA by severity, per week", weeks,
        _weekly_series(fig, lambda s: s.mtta), fmt=_seconds, axis=charts.duration_text,
        empty="No acknowledged incidents in this range.")))
    out.append(("Mean time to resolve", charts.bars(
        "chart-mttr", "MTTR by severity, per week", weeks,
        _weekly_series(fig, lambda s: s.mttr), fmt=_seconds, axis=charts.duration_text,
        empty="No resolved incidents in this range.")))
    out.append(("Incidents per day", charts.bars(
        "chart-per-day", "Incidents opened per day, by severity", days,
        [charts.Series(sev, tuple(float(n) for n in fig.per_day[sev]))
         for sev in rep.SEVERITIES], stacked=True, empty="No incidents in this range.")))
    out.append(("SLA breaches", charts.bars(
        "chart-sla", "SLA breaches by severity, per week", weeks,
        _weekly_series(fig, lambda s: float(s.sla_breaches)), stacked=True,
        empty="No incidents in this range.")))
    out.append(("Noisiest alerts", charts.hbars(
        "chart-noisiest", "Noisiest alerts (episodes fired)",
        [charts.Item(a.alertname, float(a.episodes),
                     f"{a.episodes} episodes, {a.incidents} incidents", str(a.episodes))
         for a in fig.alerts], series="episodes", empty="No alerts in this range.")))
    out.append(("Playbook success rate", charts.hbars(
        "chart-success", "Succeeded of concluded jobs",
        [charts.Item(p.playbook, p.success_rate,
                     f"{_pct(p.success_rate)} ({p.succeeded} of "
                     f"{p.succeeded + p.failed + p.escalated})", _pct(p.success_rate))
         for p in fig.playbooks if p.success_rate is not None],
        series="success", top=1.0, empty="No concluded jobs in this range.")))
    out.append(("Playbook recurrence rate", charts.hbars(
        "chart-recurrence", f"Back within {RECURRENCE_WINDOW.days} days of a success",
        [charts.Item(p.playbook, rate, f"{_pct(rate)} ({p.recurred} of {p.remediated})",
                     _pct(rate))
         for p in fig.playbooks if (rate := p.recurrence_rate) is not None],
        series="recurrence", top=1.0, empty="No successful jobs in this range.")))
    return out


def context(fig: Figures) -> dict[str, Any]:
    """The report templates' variables."""
    return {"fig": fig, "charts": charts_of(fig), "severities": rep.SEVERITIES,
            "duration": _duration, "pct": _pct}
