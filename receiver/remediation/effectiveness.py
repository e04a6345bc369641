"""How well remediation works, per rule and per playbook: runs, verified, failed, undone,
recurred (the alert fired again within the rule's ``approval.recurrence``, 1h unless set)
and the median time from the webhook to the verified fix.

A run is a job that started and finished within the period (an undo is not a run: one a
person asked for counts as the original's ``undone``). ``failed``: the run did not succeed,
or one of its verifications failed (a retry may have succeeded after it).

``remediator report`` prints these figures; ``/metrics`` serves them
(:class:`EffectivenessCollector`, read from the store at scrape time over
:data:`METRICS_WINDOW`, at most every ``server.metrics_refresh`` per process).
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver.durations import format_duration
from receiver.remediation.autonomy import recurred
from receiver.store import Store
from receiver.store.autonomy import RunFacts

DEFAULT_RECURRENCE = timedelta(hours=1)
METRICS_WINDOW = timedelta(days=30)
FIGURES = ("runs", "verified", "failed", "undone", "recurred")


@dataclass(frozen=True)
class Figures:
    runs: int
    verified: int
    failed: int
    undone: int
    recurred: int
    median_to_verified_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*FIGURES, "median_to_verified_seconds")}


def figures(runs: Iterable[RunFacts], recurrence: Callable[[str], timedelta]) -> Figures:
    """The figures of ``runs``; ``recurrence`` gives each rule's recurrence window."""
    rs = list(runs)
    to_verified = [(r.finished_at - r.webhook_at).total_seconds() for r in rs
                   if r.verified and r.webhook_at is not None]
    return Figures(
        runs=len(rs), verified=sum(1 for r in rs if r.verified),
        failed=sum(1 for r in rs if not r.verified or r.verification_failed_at is not None),
        undone=sum(1 for r in rs if r.undone_at is not None),
        recurred=sum(1 for r in rs if recurred(r, recurrence(r.rule))),
        median_to_verified_seconds=statistics.median(to_verified) if to_verified else None)


@dataclass(frozen=True)
class Effectiveness:
    since: datetime
    until: datetime
    by_rule: dict[str, Figures]
    by_playbook: dict[str, Figures]

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "by_rule": {k: v.as_dict() for k, v in sorted(self.by_rule.items())},
                "by_playbook": {k: v.as_dict() for k, v in sorted(self.by_playbook.items())}}


def build(runs: list[RunFacts], *, recurrence: Callable[[str], timedelta], since: datetime,
          until: datetime) -> Effectiveness:
    def group(key: Callable[[RunFacts], str]) -> dict[str, Figures]:
        keys = sorted({key(r) for r in runs})
        return {k: figures((r for r in runs if key(r) == k), recurrence) for k in keys}

    return Effectiveness(since, until, group(lambda r: r.rule), group(lambda r: r.playbook))


def recurrence_for(config: Any) -> Callable[[str], timedelta]:
    """Each rule's ``approval.recurrence`` (1h for a rule no longer configured)."""
    def of(name: str) -> timedelta:
        rule = config.rule(name)
        return rule.approval.recurrence if rule is not None else DEFAULT_RECURRENCE

    return of


def gather(store: Store, config: Any, *, since: datetime, until: datetime) -> Effectiveness:
    """The figures of the runs that finished in ``[since, until)`` (one read)."""
    with store.unit(write=False) as uow:
        runs = uow.autonomy.runs(since=since, until=until)
    return build(runs, recurrence=recurrence_for(config), since=since, until=until)


def _seconds(value: float | None) -> str:
    return "-" if value is None else format_duration(timedelta(seconds=round(value)))


def as_table(eff: Effectiveness) -> str:
    """The figures as text, by rule then by playbook."""
    lines = ["Remediation effectiveness (runs that finished in the window)"]
    for title, rows in (("rule", eff.by_rule), ("playbook", eff.by_playbook)):
        width = max([len(title), *(len(k) for k in rows)])
        lines.append(f"  {title:<{width}}  runs  verified  failed  undone  recurred  "
                     "median webhook->verified")
        if not rows:
            lines.append(f"  {'(none)':<{width}}")
        for name, f in sorted(rows.items()):
            lines.append(f"  {name:<{width}}  {f.runs:>4}  {f.verified:>8}  {f.failed:>6}  "
                         f"{f.undone:>6}  {f.recurred:>8}  "
                         f"{_seconds(f.median_to_verified_seconds)}")
    return "\n".join(lines)


class EffectivenessCollector(Collector):
    """Per rule and per playbook gauges over the last :data:`METRICS_WINDOW`, read from the
    store at scrape time (so every gunicorn worker serves the same values)."""

    def __init__(self, store: Store, config: Any, now: Callable[[], datetime],
                 *, every: timedelta = timedelta(0)) -> None:
        self.store = store
        self.config = config
        self.now = now
        self.every = every
        self._lock = threading.Lock()
        self._last: tuple[datetime, Effectiveness] | None = None

    def figures(self, now: datetime) -> Effectiveness:
        """The figures, read again when the last read is older than ``every`` (one per
        process: ``/metrics`` keeps one collector; many runs make a read cost ~0.1 s per
        1,000, see bench/autonomy.py)."""
        with self._lock:
            last = self._last
            if last is not None and timedelta(0) <= now - last[0] < self.every:
                return last[1]
            eff = gather(self.store, self.config, since=now - METRICS_WINDOW,
                         until=now + timedelta(microseconds=1))
            self._last = (now, eff)
            return eff

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        eff = self.figures(now)
        for by, rows in (("rule", eff.by_rule), ("playbook", eff.by_playbook)):
            fams = {name: GaugeMetricFamily(
                f"remediator_{by}_{name}", f"Remediation {name} in the last 30 days, by {by}.",
                labels=[by]) for name in FIGURES}
            median = GaugeMetricFamily(
                f"remediator_{by}_webhook_to_verified_median_seconds",
                f"Median time from the webhook to the verified fix in the last 30 days, by {by}.",
                labels=[by])
            for key, f in sorted(rows.items()):
                for name, fam in fams.items():
                    fam.add_metric([key], float(getattr(f, name)))
                if f.median_to_verified_seconds is not None:
                    median.add_metric([key], f.median_to_verified_seconds)
            yield from (*fams.values(), median)
        with self.store.unit(write=False) as uow:
            levels = uow.autonomy.levels()
        level = GaugeMetricFamily("remediator_rule_autonomous",
                                  "1 when a rule with approval mode earned has earned "
                                  "autonomy (its jobs run without approval), else 0.",
                                  labels=["rule"])
        for rule in self.config.rules:
            if rule.approval.earned:
                found = levels.get(rule.name)
                level.add_metric([rule.name], 1.0 if found and found.level == "autonomous"
                                 else 0.0)
        yield level
