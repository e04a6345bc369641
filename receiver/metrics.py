"""Prometheus metrics, correct under several gunicorn workers.

``remediator serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before gunicorn imports anything,
so every worker writes its samples to shared files and ``/metrics`` aggregates them with
``MultiProcessCollector``. In a single process (tests, the CLI) the ordinary registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

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

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
