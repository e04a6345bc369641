"""After a playbook runs: did it work? HTTP check, PromQL query, or the alert resolving.

Each configured check polls until it passes or its ``within`` runs out; all configured
checks must pass. A check's URL and query may use ``{{ labels.x }}`` like rule params: URLs
are built by :func:`receiver.remediation.urls.build_url` (the host:port, and every redirect
hop, must be in ``targets.http.hosts``) and queries by
:func:`receiver.remediation.promql.render_query`. A check that either refuses is a failed
check with ``refused`` in its detail, never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from receiver.adapters import AdapterFactory
from receiver.errors import AdapterError, TargetNotAllowed
from receiver.remediation.promql import render_query
from receiver.remediation.rules import HttpCheck, PromQLCheck, ResolvedCheck, Verification
from receiver.remediation.urls import HostAllowlist, build_url


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


FIRST_RETRY_S = 0.1
"""The wait before a check's second attempt; each next wait doubles, up to its ``interval``.
The first attempt runs the moment the playbook returns, often just before the service is
back (a restarted container runs before its server listens): a full interval there would
make every remediation's verification, and its MTTR, an interval late."""


def _poll(
    within: float,
    interval: float,
    attempt: Callable[[], tuple[bool, str, dict[str, Any]]],
    sleep: Callable[[float], None],
) -> tuple[bool, str, dict[str, Any], int]:
    deadline = time.monotonic() + within
    n = 0
    wait = min(FIRST_RETRY_S, interval)
    while True:
        n += 1
        ok, summary, detail = attempt()
        if ok or "refused" in detail or time.monotonic() + wait > deadline:
            return ok, summary, detail, n
        sleep(wait)
        wait = min(wait * 2, interval)


def _refused(check: str, reason: str, detail: dict[str, Any]) -> CheckResult:
    return CheckResult(check, False, f"refused: {reason}", 0, {**detail, "refused": reason})


def http_check(
    spec: HttpCheck,
    labels: dict[str, str],
    sleep: Callable[[float], None],
    *,
    hosts: HostAllowlist,
    adapters: AdapterFactory | None = None,
) -> CheckResult:
    try:
        url = build_url(spec.url, labels, {}, hosts)
    except (TargetNotAllowed, ValueError) as exc:  # TemplateError is a ValueError
        return _refused("http", str(exc), {"url_template": spec.url})
    adapter = (adapters or AdapterFactory()).http(timeout_s=spec.timeout.total_seconds(),
                                                  hosts=hosts)

    def attempt() -> tuple[bool, str, dict[str, Any]]:
        r = adapter.get(url)
        detail: dict[str, Any] = {"url": url, "status": r.status,
                                  "latency_ms": round(r.latency_ms, 1), "error": r.error}
        if r.redirects:
            detail["redirects"] = list(r.redirects)
        if r.refused is not None:
            detail["refused"] = r.refused
            return False, f"GET {url} refused: {r.refused}", detail
        if r.status == spec.expect_status:
            return True, f"GET {url} -> {r.status}", detail
        return False, f"GET {url} -> {r.status or r.error} (want {spec.expect_status})", detail

    ok, summary, detail, n = _poll(spec.within.total_seconds(), spec.interval.total_seconds(),
                                   attempt, sleep)
    return CheckResult("http", ok, summary, n, detail)


def promql_check(
    spec: PromQLCheck,
    labels: dict[str, str],
    sleep: Callable[[float], None],
    *,
    hosts: HostAllowlist,
    adapters: AdapterFactory | None = None,
) -> CheckResult:
    try:
        base = build_url(spec.url, labels, {}, hosts)
        query = render_query(spec.query, labels, {})
    except (TargetNotAllowed, ValueError) as exc:  # TemplateError is a ValueError
        return _refused("promql", str(exc), {"url_template": spec.url,
                                             "query_template": spec.query})
    adapter = (adapters or AdapterFactory()).prometheus(
        base, timeout_s=spec.timeout.total_seconds(), hosts=hosts)

    def attempt() -> tuple[bool, str, dict[str, Any]]:
        try:
            samples = adapter.query(query)
        except TargetNotAllowed as exc:
            return False, f"refused: {exc}", {"query": query, "refused": str(exc)}
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
    *,
    hosts: HostAllowlist,
    adapters: AdapterFactory | None = None,
) -> list[CheckResult]:
    """Every configured check of ``spec``; ``hosts`` is ``targets.http``, the hosts that the
    HTTP and PromQL checks may call; ``adapters`` builds their clients."""
    out = []
    if spec.http is not None:
        out.append(http_check(spec.http, labels, sleep, hosts=hosts, adapters=adapters))
    if spec.promql is not None:
        out.append(promql_check(spec.promql, labels, sleep, hosts=hosts, adapters=adapters))
    if spec.alert_resolved is not None:
        out.append(resolved_check(spec.alert_resolved, is_resolved, sleep))
    return out
