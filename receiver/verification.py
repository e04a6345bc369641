"""After a playbook runs: did it work? HTTP check, PromQL query, or the alert resolving.

Each configured check polls until it passes or its ``within`` runs out; all configured
checks must pass. A check's URL and query may use ``{{ labels.x }}`` like rule params.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from receiver.adapters.http import HttpAdapter
from receiver.adapters.prometheus import PrometheusAdapter
from receiver.errors import AdapterError
from receiver.rules import HttpCheck, PromQLCheck, ResolvedCheck, Verification, render_params


@dataclass
class CheckResult:
    check: str
    ok: bool
    summary: str
    attempts: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "summary": self.summary,
                "attempts": self.attempts, "detail": self.detail}


def _poll(
    within: float,
    interval: float,
    attempt: Callable[[], tuple[bool, str, dict[str, Any]]],
    sleep: Callable[[float], None],
) -> tuple[bool, str, dict[str, Any], int]:
    deadline = time.monotonic() + within
    n = 0
    while True:
        n += 1
        ok, summary, detail = attempt()
        if ok or time.monotonic() + interval > deadline:
            return ok, summary, detail, n
        sleep(interval)


def http_check(
    spec: HttpCheck, labels: dict[str, str], sleep: Callable[[float], None]
) -> CheckResult:
    url = render_params(spec.url, labels, {})
    adapter = HttpAdapter(spec.timeout.total_seconds())

    def attempt() -> tuple[bool, str, dict[str, Any]]:
        r = adapter.get(url)
        detail = {"url": url, "status": r.status, "latency_ms": round(r.latency_ms, 1),
                  "error": r.error}
        if r.status == spec.expect_status:
            return True, f"GET {url} -> {r.status}", detail
        return False, f"GET {url} -> {r.status or r.error} (want {spec.expect_status})", detail

    ok, summary, detail, n = _poll(spec.within.total_seconds(), spec.interval.total_seconds(),
                                   attempt, sleep)
    return CheckResult("http", ok, summary, n, detail)


def promql_check(
    spec: PromQLCheck, labels: dict[str, str], sleep: Callable[[float], None]
) -> CheckResult:
    query = render_params(spec.query, labels, {})
    adapter = PrometheusAdapter(spec.url, spec.timeout.total_seconds())

    def attempt() -> tuple[bool, str, dict[str, Any]]:
        try:
            samples = adapter.query(query)
        except AdapterError as exc:
            return False, str(exc), {"query": query}
        values = [s.value for s in samples]
        detail = {"query": query, "values": values[:20]}
        if spec.expect == "empty":
            ok = not samples
        elif spec.expect == "non_empty":
            ok = bool(samples)
        elif spec.expect == "below":
            ok = bool(values) and all(v < (spec.threshold or 0.0) for v in values)
        else:
            ok = bool(values) and all(v > (spec.threshold or 0.0) for v in values)
        want = spec.expect + (f" {spec.threshold}" if spec.threshold is not None else "")
        return ok, f"{query} -> {values[:5]} (want {want})", detail

    ok, summary, detail, n = _poll(spec.within.total_seconds(), spec.interval.total_seconds(),
                                   attempt, sleep)
    return CheckResult("promql", ok, summary, n, detail)


def resolved_check(
    spec: ResolvedCheck, is_resolved: Callable[[], bool], sleep: Callable[[float], None]
) -> CheckResult:
    def attempt() -> tuple[bool, str, dict[str, Any]]:
        done = is_resolved()
        return done, "alert resolved" if done else "alert still firing", {}

    ok, summary, detail, n = _poll(spec.within.total_seconds(), spec.interval.total_seconds(),
                                   attempt, sleep)
    return CheckResult("alert_resolved", ok, summary, n, detail)


def run_checks(
    spec: Verification,
    labels: dict[str, str],
    is_resolved: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> list[CheckResult]:
    out = []
    if spec.http is not None:
        out.append(http_check(spec.http, labels, sleep))
    if spec.promql is not None:
        out.append(promql_check(spec.promql, labels, sleep))
    if spec.alert_resolved is not None:
        out.append(resolved_check(spec.alert_resolved, is_resolved, sleep))
    return out
