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


DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600)


class IncidentCollector(Collector):
    """Incident metrics by severity, computed from the store on each scrape."""

    def __init__(self, load: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]],
                 now: Callable[[], datetime], noise_window: timedelta) -> None:
        self.load = load
        self.now = now
        self.noise_window = noise_window

    def collect(self) -> Iterator[Metric]:
        from receiver import report

        incidents, jobs = self.load()
        now = self.now()
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
            rows = [r for r in incidents if r["severity"] == sev]
            count.add_metric([sev], len(rows))
            active.add_metric([sev], sum(1 for r in rows if r["state"] in
                                         ("open", "acknowledged", "mitigating", "mitigated")))
            breaches.add_metric([sev], sum(1 for r in rows if report.breached(r, now)))
            false.add_metric([sev], sum(1 for r in rows if r["false_alarm_at"] is not None))
            noise.add_metric([sev], sum(1 for r in rows
                                        if report.is_noise(r, self.noise_window)))
            durs = [report.durations(r) for r in rows]
            for name, fam in hists.items():
                values: list[float] = [v for d in durs if (v := d[name]) is not None]
                buckets = [(str(float(b)), float(sum(1 for v in values if v <= b)))
                           for b in DURATION_BUCKETS]
                buckets.append(("+Inf", float(len(values))))
                fam.add_metric([sev], buckets, sum_value=float(sum(values)))
        yield from (count, active, breaches, false, noise, *hists.values())
        rate = GaugeMetricFamily("remediator_remediation_success_ratio",
                                 "succeeded / concluded jobs, by playbook.", labels=["playbook"])
        built = report.build([], jobs, since=None, now=now, noise_window=self.noise_window)
        for name, p in sorted(built.playbooks.items()):
            if p["success_rate"] is not None:
                rate.add_metric([name], p["success_rate"])
        yield rate
