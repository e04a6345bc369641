"""Prometheus metrics, correct under several gunicorn workers.

``remediator serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before gunicorn imports anything,
so every worker writes its samples to shared files and ``/metrics`` aggregates them with
``MultiProcessCollector``. In a single process (tests, the CLI) the ordinary registry is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from receiver.store.reports import Snapshot

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.notifications = Counter(
            "remediator_notifications_received_total",
            "Webhook notifications accepted, by notification status.",
            ["status"],
            registry=r,
        )
        self.alerts = Counter(
            "remediator_alerts_received_total",
            "Alerts received in accepted notifications, by alert status.",
            ["status"],
            registry=r,
        )
        self.rejected = Counter(
            "remediator_notifications_rejected_total",
            "Webhook requests refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "remediator_incidents_opened_total",
            "Incidents opened (or reopened), by severity.",
            ["severity"],
            registry=r,
        )
        self.latency = Histogram(
            "remediator_webhook_duration_seconds",
            "Time to handle a webhook request, from arrival to response.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def exposition(self, extra: Collector | None = None) -> tuple[bytes, str]:
        """The metrics text. ``extra`` (incident metrics read from the store) is computed
        at scrape time, so every gunicorn worker reports the same values."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        if extra is not None:
            side = CollectorRegistry(auto_describe=False)
            side.register(extra)
            text += generate_latest(side)
        return text, CONTENT_TYPE_LATEST


DURATION_BUCKETS: tuple[float, ...] = (
    60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600)


def refresh_snapshot_if_due(store: Any, config: Any, now: datetime) -> int:
    """A worker chore: recompute the incident figures when the stored ones are older than
    ``server.metrics_refresh``, so that a scrape reads one row instead of every incident."""
    with store.unit(write=False) as uow:
        snap = uow.reports.load_snapshot()
    if snap is not None and timedelta(0) <= now - snap.computed_at < config.server.metrics_refresh:
        return 0
    with store.unit() as uow:
        uow.reports.save_snapshot(uow.reports.compute_snapshot(
            now=now, noise_window=config.sla.noise_window, bounds=DURATION_BUCKETS))
    return 1


def current_snapshot(store: Any, config: Any, now: datetime) -> Snapshot:
    """The figures a scrape serves: the stored snapshot while it is fresh (younger than
    twice ``server.metrics_refresh``), else computed now (no worker running, say)."""
    with store.unit(write=False) as uow:
        snap = uow.reports.load_snapshot()
        if (snap is not None and snap.bounds == DURATION_BUCKETS
                and timedelta(0) <= now - snap.computed_at < 2 * config.server.metrics_refresh):
            return snap
        return uow.reports.compute_snapshot(now=now, noise_window=config.sla.noise_window,
                                            bounds=DURATION_BUCKETS)


class IncidentCollector(Collector):
    """Incident metrics by severity, aggregated by the store on each scrape (one query, so
    a scrape costs the same in every gunicorn worker and stays cheap at many incidents)."""

    def __init__(self, load: Callable[[], Snapshot], now: Callable[[], datetime]) -> None:
        self.load = load
        self.now = now

    def collect(self) -> Iterator[Metric]:
        from receiver.incidents import report

        snap = self.load()
        summaries, outcomes = snap.summary, snap.outcomes
        age = GaugeMetricFamily("remediator_incident_metrics_age_seconds",
                                "Age of the incident figures below (computed by a worker at "
                                "most every server.metrics_refresh).")
        age.add_metric([], max((self.now() - snap.computed_at).total_seconds(), 0.0))
        yield age
        count = CounterMetricFamily("remediator_incidents", "Incidents by severity.",
                                    labels=["severity"])
        active = GaugeMetricFamily("remediator_incidents_active",
                                   "Incidents not yet resolved, by severity.",
                                   labels=["severity"])
        breaches = CounterMetricFamily("remediator_sla_breaches",
                                       "Incidents whose acknowledge-by deadline passed first.",
                                       labels=["severity"])
        false = CounterMetricFamily("remediator_false_alarms",
                                    "Incidents marked as false alarms.", labels=["severity"])
        noise = CounterMetricFamily("remediator_noise_incidents",
                                    "Incidents that resolved alone, fast, untouched.",
                                    labels=["severity"])
        hists = {
            name: HistogramMetricFamily(f"remediator_time_to_{name}_seconds",
                                        f"Time from receipt to {name}, by severity.",
                                        labels=["severity"])
            for name in ("acknowledge", "mitigate", "resolve")
        }
        for sev in report.SEVERITIES:
            s = summaries.get(sev)
            count.add_metric([sev], s.incidents if s else 0)
            active.add_metric([sev], s.active if s else 0)
            breaches.add_metric([sev], s.sla_breaches if s else 0)
            false.add_metric([sev], s.false_alarms if s else 0)
            noise.add_metric([sev], s.noise if s else 0)
            for name, fam in hists.items():
                d = s.durations[name] if s else None
                counts = d.buckets if d else (0,) * len(DURATION_BUCKETS)
                buckets = [(str(float(b)), float(c)) for b, c in zip(DURATION_BUCKETS, counts,
                                                                      strict=True)]
                buckets.append(("+Inf", float(d.count if d else 0)))
                fam.add_metric([sev], buckets, sum_value=d.total if d else 0.0)
        yield from (count, active, breaches, false, noise, *hists.values())
        rate = GaugeMetricFamily("remediator_remediation_success_ratio",
                                 "succeeded / concluded jobs, by playbook.", labels=["playbook"])
        for name, p in sorted(outcomes.items()):
            concluded = p["succeeded"] + p["failed"] + p["escalated"]
            if concluded:
                rate.add_metric([name], p["succeeded"] / concluded)
        yield rate
