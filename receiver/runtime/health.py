"""Metrics about remediator itself, read from the store at scrape time: what the alerting
rules in ``deploy/prometheus/remediator-rules.yml`` and the dashboard in ``deploy/grafana/``
watch besides the request counters.

* ``remediator_outbox_undelivered``, ``remediator_outbox_oldest_undelivered_age_seconds``
* ``remediator_jobs_past_lease``, ``remediator_approvals_past_expiry``
* ``remediator_circuit_breakers_open`` and ``remediator_circuit_breaker_open{rule}``
* ``remediator_kill_switch_engaged{scope, rule}`` and, while engaged,
  ``remediator_kill_switch_engaged_seconds{scope, rule}``
* ``remediator_audit_chain_ok``, ``remediator_audit_chain_entries``,
  ``remediator_audit_verified_timestamp_seconds``: the whole chain is verified (with the
  key and the signed checkpoints, as ``remediator audit verify`` does) at most every
  :data:`AUDIT_VERIFY_EVERY` per process; a scrape in between serves the last result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver.errors import RemediatorError, StoreError
from receiver.remediation import guards

log = structlog.get_logger(__name__)

AUDIT_VERIFY_EVERY = 300.0
"""Seconds between two verifications of the audit chain by one process's ``/metrics``."""

_RULE_PAUSED = guards.rule_paused("")
_BREAKER = guards.breaker("")


@dataclass(frozen=True)
class AuditResult:
    ok: bool
    entries: int
    at: float  # wall clock, seconds since the epoch


class AuditVerifier:
    """The last verification of the audit chain, redone when older than ``every`` seconds.
    One per process; a scrape that finds a verification running serves the last result."""

    def __init__(self, store: Any, every: float = AUDIT_VERIFY_EVERY) -> None:
        self.store = store
        self.every = every
        self._lock = threading.Lock()
        self._last: AuditResult | None = None
        self._checked_at = float("-inf")  # monotonic

    def result(self) -> AuditResult | None:
        if time.monotonic() - self._checked_at < self.every or not self._lock.acquire(False):
            return self._last
        try:
            if time.monotonic() - self._checked_at >= self.every:
                self._last = self._verify()
                self._checked_at = time.monotonic()
        finally:
            self._lock.release()
        return self._last

    def _verify(self) -> AuditResult:
        try:
            report = self.store.verify_audit()
        except StoreError:
            raise  # the store is down: /metrics serves the request metrics only
        except RemediatorError as exc:  # no key, say: the chain cannot be shown intact
            log.warning("audit_verify_failed", error=str(exc))
            return AuditResult(False, 0, time.time())
        if not report.ok:
            log.warning("audit_chain_broken", problem=report.problem)
        return AuditResult(bool(report.ok), int(report.checked), time.time())


class HealthCollector(Collector):
    """The gauges above, from one read-only unit of work per scrape."""

    def __init__(self, store: Any, now: Callable[[], datetime],
                 audit: AuditVerifier | None = None) -> None:
        self.store = store
        self.now = now
        self.audit = audit

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        with self.store.unit(write=False) as uow:
            health = uow.health.figures(now=now)
            controls = uow.health.controls()
        backlog = GaugeMetricFamily("remediator_outbox_undelivered",
                                    "Notification deliveries (message x channel) not yet "
                                    "delivered: pending or being sent.")
        backlog.add_metric([], health.outbox_undelivered)
        oldest = GaugeMetricFamily("remediator_outbox_oldest_undelivered_age_seconds",
                                   "Age of the oldest message not yet delivered to every "
                                   "channel (0 when none is waiting).")
        age = (now - health.oldest_undelivered_at).total_seconds() \
            if health.oldest_undelivered_at is not None else 0.0
        oldest.add_metric([], max(age, 0.0))
        lease = GaugeMetricFamily("remediator_jobs_past_lease",
                                  "Running jobs whose lease has expired (their worker died or "
                                  "hangs) and that no worker has taken back yet.")
        lease.add_metric([], health.jobs_past_lease)
        expiry = GaugeMetricFamily("remediator_approvals_past_expiry",
                                   "Pending approvals past their expiry that no worker has "
                                   "expired and escalated yet.")
        expiry.add_metric([], health.approvals_past_expiry)
        yield from (backlog, oldest, lease, expiry)
        yield from _controls(controls, now)
        if self.audit is not None:
            yield from _audit(self.audit.result())


def _controls(controls: Iterable[Any], now: datetime) -> Iterator[Metric]:
    engaged = GaugeMetricFamily("remediator_kill_switch_engaged",
                                "1 while a kill switch stops remediation (scope global: all "
                                "rules; scope rule: one rule).", labels=["scope", "rule"])
    since = GaugeMetricFamily("remediator_kill_switch_engaged_seconds",
                              "How long an engaged kill switch has been on.",
                              labels=["scope", "rule"])
    breakers = GaugeMetricFamily("remediator_circuit_breaker_open",
                                 "1 while a rule's circuit breaker is open.", labels=["rule"])
    global_on = False
    open_count = 0
    for c in controls:
        if c.name == guards.PAUSED:
            global_on = c.value == "true"
            if global_on:
                since.add_metric(["global", ""], _seconds(now, c.updated_at))
        elif c.name.startswith(_RULE_PAUSED):
            rule = c.name.removeprefix(_RULE_PAUSED)
            on = c.value == "true"
            engaged.add_metric(["rule", rule], 1.0 if on else 0.0)
            if on:
                since.add_metric(["rule", rule], _seconds(now, c.updated_at))
        elif c.name.startswith(_BREAKER):
            is_open = c.value == "open"
            open_count += is_open
            breakers.add_metric([c.name.removeprefix(_BREAKER)], 1.0 if is_open else 0.0)
    engaged.add_metric(["global", ""], 1.0 if global_on else 0.0)
    total = GaugeMetricFamily("remediator_circuit_breakers_open",
                              "Rules whose circuit breaker is open.")
    total.add_metric([], open_count)
    yield from (engaged, since, breakers, total)


def _audit(result: AuditResult | None) -> Iterator[Metric]:
    if result is None:
        return
    ok = GaugeMetricFamily("remediator_audit_chain_ok",
                           "1 when the last verification found the audit chain intact (keyed "
                           "hashes, links, signed checkpoints, append-only triggers).")
    ok.add_metric([], 1.0 if result.ok else 0.0)
    entries = GaugeMetricFamily("remediator_audit_chain_entries",
                                "Audit entries checked by the last verification.")
    entries.add_metric([], result.entries)
    at = GaugeMetricFamily("remediator_audit_verified_timestamp_seconds",
                           "When the audit chain was last verified (seconds since the epoch).")
    at.add_metric([], result.at)
    yield from (ok, entries, at)


def _seconds(now: datetime, then: datetime) -> float:
    return max((now - then).total_seconds(), 0.0)


class Collectors(Collector):
    """Several collectors read as one (``Metrics.exposition`` takes one extra)."""

    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()
