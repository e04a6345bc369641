"""Automatic diagnostics: phase 2 of the incident checklist, gathered as evidence.

When an incident opens or reopens, ``events.record`` writes a pending diagnostic request in
the same transaction; :func:`request` adds one on demand (incident page, CLI). Only a worker
runs checks, through :func:`run_due`: it claims each pending request with a lease, runs the
incident's applicable checks in parallel, each cut off at its own timeout, stores one evidence
row per check, marks the request done and writes one ``diagnostics`` timeline event. The
webhook never waits for any of this.

Every check is read-only and goes through an adapter:

    http        status, latency and a body excerpt of a health or readiness endpoint
    docker      state, restart count, image, start time, last log lines, error lines
    postgres    SELECT 1 latency, connections vs max_connections, longest queries, size
    redis       PING latency, INFO memory and clients
    prometheus  instant PromQL snapshots (request rate, error rate, latency)
    deploys     the named Swarm services' and containers' last update, image and previous
                image; the last commits of a configured git repository (``deploys``)

A check ends ``ok``, ``failed`` (it answered, and the answer is bad), ``error`` (it could not
ask), ``timeout`` (cut off at its timeout) or ``refused`` (the targets allowlist, or a value
rendered from alert labels, refused it; an HTTP or Prometheus URL, and every redirect hop,
must be in ``targets.http.hosts``, see :mod:`receiver.remediation.urls`). A check's failure
never fails the others or the incident. Evidence is redacted (URL credentials, secret-named
keys, bearer tokens, and every configured secret) and capped at ``max_evidence_bytes``.

This package holds the request lifecycle (claim, run, store, timeline) and the public surface;
``runner`` picks the checks that apply and runs them in parallel, ``probes`` holds the
probes (``deploys`` the recent-deploys one), ``redaction`` what evidence may keep, and
``findings`` what a check found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from receiver.adapters import AdapterFactory
from receiver.config import Config, DiagnosticsConfig
from receiver.diagnostics.findings import OUTCOMES, CheckResult, Finding, Outcome
from receiver.diagnostics.probes import ProbeEnv
from receiver.diagnostics.redaction import cap, clean, sanitize
from receiver.diagnostics.runner import ADAPTER_GRACE_S, MAX_INSTANCES, Planned, plan, run_checks
from receiver.secrets import redactor_for
from receiver.store import Store
from receiver.store.evidence import Evidence, EvidenceRequest

__all__ = [
    "ADAPTER_GRACE_S",
    "LEASE_MARGIN",
    "MAX_INSTANCES",
    "OUTCOMES",
    "CheckResult",
    "Finding",
    "Outcome",
    "Planned",
    "cap",
    "lease_for",
    "list_evidence",
    "list_requests",
    "plan",
    "request",
    "run_checks",
    "run_due",
]

log = structlog.get_logger(__name__)

LEASE_MARGIN = timedelta(seconds=30)


# -- the public surface ------------------------------------------------------------------------


def run_due(
    store: Store,
    config: Config,
    *,
    clock: Callable[[], datetime],
    worker_id: str,
    adapters: AdapterFactory | None = None,
    limit: int = 10,
) -> int:
    """Claim and run up to ``limit`` pending diagnostic requests; the number run.

    Call it from the worker loop (it blocks for at most the slowest check's timeout per
    round of ``parallelism`` checks). Two workers calling it at once never run one request.
    """
    factory = adapters or AdapterFactory()
    lease = lease_for(config.diagnostics)
    ran = 0
    while ran < limit:
        with store.unit() as uow:
            claimed = uow.evidence.claim(worker=worker_id, now=clock(), lease=lease)
        if claimed is None:
            break
        _run_request(store, config, claimed, clock=clock, worker_id=worker_id, adapters=factory)
        ran += 1
    return ran


def request(
    store: Store, incident_id: int, *, actor: str, reason: str, now: datetime
) -> int | None:
    """Ask for diagnostics of an incident now (incident page, CLI); the request's id.

    A request still pending for the incident is reused (asking twice is a no-op). None when
    there is no such incident. Writes a ``diagnostics_requested`` timeline and audit entry.
    """
    reason = reason.strip()[:300] or "on demand"
    with store.unit() as uow:
        if uow.evidence.incident_alerts(incident_id) is None:
            return None
        pending = uow.evidence.pending_for(incident_id)
        if pending is not None:
            return pending.id
        request_id = uow.evidence.add_request(
            incident_id=incident_id, reason=reason, requested_by=actor, now=now
        )
        uow.events.record(
            incident_id=incident_id, at=now, kind="diagnostics_requested", actor=actor,
            message=f"diagnostics requested by {actor}: {reason}",
            detail={"request_id": request_id, "reason": reason},
        )
    return request_id


def list_evidence(store: Store, incident_id: int) -> list[Evidence]:
    """The incident's evidence, oldest first (each with its ``outcome``)."""
    with store.unit(write=False) as uow:
        return uow.evidence.for_incident(incident_id)


def list_requests(store: Store, incident_id: int) -> list[EvidenceRequest]:
    """The incident's diagnostic requests (pending, running, done), oldest first."""
    with store.unit(write=False) as uow:
        return uow.evidence.requests_for(incident_id)


def lease_for(cfg: DiagnosticsConfig) -> timedelta:
    """Long enough for every check instance to run, ``parallelism`` at a time."""
    if not cfg.checks:
        return LEASE_MARGIN
    longest = max(c.timeout for c in cfg.checks) + timedelta(seconds=ADAPTER_GRACE_S)
    rounds = math.ceil(len(cfg.checks) * MAX_INSTANCES / cfg.parallelism)
    return longest * rounds + LEASE_MARGIN


# -- one request --------------------------------------------------------------------------------


def _run_request(
    store: Store,
    config: Config,
    req: EvidenceRequest,
    *,
    clock: Callable[[], datetime],
    worker_id: str,
    adapters: AdapterFactory,
) -> None:
    bound = log.bind(incident_id=req.incident_id, request_id=req.id, worker=worker_id)
    cfg = config.diagnostics
    with store.unit(write=False) as uow:
        alerts = uow.evidence.incident_alerts(req.incident_id)
    results: list[CheckResult] = []
    crash: str | None = None
    if alerts is not None and cfg.checks:
        try:
            planned, results = plan(cfg, alerts, clock=clock, targets=config.targets)
            env = ProbeEnv(config.targets, adapters)
            results += run_checks(planned, env, parallelism=cfg.parallelism, clock=clock)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the request leased
            bound.exception("diagnostics_crashed")
            crash = f"{type(exc).__name__}: {exc}"[:300]
    secrets = redactor_for(config)
    stored = [sanitize(r, secrets, cfg.max_evidence_bytes) for r in results]
    crash = None if crash is None else str(clean(crash, secrets))
    now = clock()
    with store.unit() as uow:
        if not uow.evidence.finish(req.id, worker=worker_id, now=now):
            bound.warning("diagnostics_lease_lost")
            return
        if alerts is None:
            return
        for result in stored:
            uow.evidence.add(
                incident_id=req.incident_id, request_id=req.id,
                check_name=result.name, kind=result.kind, ok=result.ok,
                summary=result.finding.summary, detail=result.finding.detail,
                started_at=result.started_at, duration_ms=result.duration_ms,
            )
        if cfg.checks:
            message, detail = _timeline(req, stored, crash)
            uow.events.record(incident_id=req.incident_id, at=now, kind="diagnostics",
                              actor="system", message=message, detail=detail)
    bound.info("diagnostics_done", checks=len(stored),
               ok=sum(1 for r in stored if r.ok), crashed=crash is not None)


def _timeline(
    req: EvidenceRequest, results: list[CheckResult], crash: str | None
) -> tuple[str, dict[str, Any]]:
    counts = {o: sum(1 for r in results if r.finding.outcome == o) for o in OUTCOMES}
    if crash is not None:
        message = f"diagnostics failed: {crash}"
    elif not results:
        message = "diagnostics: no check applies to this incident"
    else:
        bad = [r for r in results if not r.ok]
        message = f"diagnostics: {counts['ok']} of {len(results)} checks ok"
        if bad:
            message += "; " + "; ".join(
                f"{r.finding.outcome}: {r.finding.summary}"[:160] for r in bad[:5]
            )
    detail = {
        "request_id": req.id,
        "reason": req.reason,
        "counts": {k: v for k, v in counts.items() if v},
        "checks": [
            {"name": r.name, "kind": r.kind, "outcome": r.finding.outcome,
             "summary": r.finding.summary[:200]}
            for r in results
        ],
    }
    if crash is not None:
        detail["error"] = crash
    return message[:1000], detail
