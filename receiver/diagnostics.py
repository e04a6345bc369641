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

A check ends ``ok``, ``failed`` (it answered, and the answer is bad), ``error`` (it could not
ask), ``timeout`` (cut off at its timeout) or ``refused`` (the targets allowlist, or a value
rendered from alert labels, refused it). A check's failure never fails the others or the
incident. Evidence is redacted (URL credentials, secret-named keys, bearer tokens, and the
configured DSNs, URLs and passwords themselves) and capped at ``max_evidence_bytes``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import psycopg.conninfo
import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from receiver.adapters import AdapterFactory
from receiver.adapters.http import HttpAdapter
from receiver.adapters.prometheus import PrometheusAdapter
from receiver.config import (
    Config,
    DiagnosticCheck,
    DiagnosticsConfig,
    DockerProbe,
    HttpProbe,
    PostgresProbe,
    PrometheusProbe,
    RedisProbe,
)
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.logs import REDACTED, redact_mapping, redact_value
from receiver.matchers import CompiledMatch
from receiver.rules import render_params
from receiver.store import Store, events
from receiver.store import evidence as evidence_store
from receiver.store.db import Row
from receiver.targets import ContainerName, DatabaseName, TargetName, TargetsConfig

log = structlog.get_logger(__name__)

Outcome = Literal["ok", "failed", "error", "timeout", "refused"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "error", "timeout", "refused")

MAX_INSTANCES = 5
"""A check templated on labels runs for at most this many distinct targets per incident."""
ADAPTER_GRACE_S = 1.0
"""Adapters get the check's timeout plus this, so the runner's cut-off is what ends a check,
and an abandoned thread still ends soon after it."""
LEASE_MARGIN = timedelta(seconds=30)
ERROR_LINE = re.compile(r"error|fatal|panic|exception", re.IGNORECASE)
_SQL_PASSWORD = re.compile(r"(?i)(password\s*)'(?:[^']|'')*'")
LOG_TAIL_LINES = 50
MAX_ERROR_LINES = 20
LINE_CHARS = 500
BODY_CHARS = 2000
QUERY_CHARS = 300
TOP_QUERIES = 5
MAX_SAMPLES = 20
SATURATED = 0.9
"""Connections or memory at or above this share of the limit make a check ``failed``."""

_container_name: TypeAdapter[str] = TypeAdapter(ContainerName)
_target_name: TypeAdapter[str] = TypeAdapter(TargetName)
_database_name: TypeAdapter[str] = TypeAdapter(DatabaseName)


@dataclass(frozen=True)
class Finding:
    """What one check found."""

    outcome: Outcome
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    """One check to run, its probe rendered with one alert's labels."""

    check: DiagnosticCheck
    probe: BaseModel

    @property
    def timeout_s(self) -> float:
        return self.check.timeout.total_seconds()


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    finding: Finding
    started_at: datetime
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.finding.outcome == "ok"


@dataclass(frozen=True)
class _Env:
    targets: TargetsConfig
    adapters: AdapterFactory


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
        with store.db.transaction() as tx:
            claimed = evidence_store.claim(tx, worker=worker_id, now=clock(), lease=lease)
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
    with store.db.transaction() as tx:
        if evidence_store.incident_alerts(tx, incident_id) is None:
            return None
        pending = evidence_store.pending_for(tx, incident_id)
        if pending is not None:
            return int(pending["id"])
        request_id = evidence_store.insert_request(
            tx, incident_id=incident_id, reason=reason, requested_by=actor, now=now
        )
        events.record(
            tx, incident_id=incident_id, at=now, kind="diagnostics_requested", actor=actor,
            message=f"diagnostics requested by {actor}: {reason}",
            detail={"request_id": request_id, "reason": reason},
        )
    return request_id


def list_evidence(store: Store, incident_id: int) -> list[Row]:
    """The incident's evidence, oldest first: ``check_name, kind, ok, outcome, summary,
    detail, started_at, duration_ms, request_id``."""
    with store.db.transaction(write=False) as tx:
        rows = evidence_store.evidence_for(tx, incident_id)
    for row in rows:
        detail = row["detail"] if isinstance(row["detail"], dict) else {}
        row["outcome"] = detail.get("outcome", "ok" if row["ok"] else "error")
    return rows


def list_requests(store: Store, incident_id: int) -> list[Row]:
    """The incident's diagnostic requests (pending, running, done), oldest first."""
    with store.db.transaction(write=False) as tx:
        return evidence_store.requests_for(tx, incident_id)


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
    req: Row,
    *,
    clock: Callable[[], datetime],
    worker_id: str,
    adapters: AdapterFactory,
) -> None:
    bound = log.bind(incident_id=req["incident_id"], request_id=req["id"], worker=worker_id)
    cfg = config.diagnostics
    with store.db.transaction(write=False) as tx:
        alerts = evidence_store.incident_alerts(tx, req["incident_id"])
    results: list[CheckResult] = []
    crash: str | None = None
    if alerts is not None and cfg.checks:
        try:
            planned, results = plan(cfg, alerts, clock=clock)
            env = _Env(config.targets, adapters)
            results += run_checks(planned, env, parallelism=cfg.parallelism, clock=clock)
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the request leased
            bound.exception("diagnostics_crashed")
            crash = f"{type(exc).__name__}: {exc}"[:300]
    secrets = _secret_strings(config.targets)
    stored = [_sanitize(r, secrets, cfg.max_evidence_bytes) for r in results]
    crash = None if crash is None else str(_clean(crash, secrets))
    now = clock()
    with store.db.transaction() as tx:
        if not evidence_store.finish(tx, req["id"], worker=worker_id, now=now):
            bound.warning("diagnostics_lease_lost")
            return
        if alerts is None:
            return
        for result in stored:
            evidence_store.insert_evidence(
                tx, incident_id=req["incident_id"], request_id=req["id"],
                check_name=result.name, kind=result.kind, ok=result.ok,
                summary=result.finding.summary, detail=result.finding.detail,
                started_at=result.started_at, duration_ms=result.duration_ms,
            )
        if cfg.checks:
            message, detail = _timeline(req, stored, crash)
            events.record(tx, incident_id=req["incident_id"], at=now, kind="diagnostics",
                          actor="system", message=message, detail=detail)
    bound.info("diagnostics_done", checks=len(stored),
               ok=sum(1 for r in stored if r.ok), crashed=crash is not None)


def _timeline(
    req: Row, results: list[CheckResult], crash: str | None
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
        "request_id": req["id"],
        "reason": req["reason"],
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


# -- which checks apply -------------------------------------------------------------------------


def plan(
    cfg: DiagnosticsConfig, alerts: list[Row], *, clock: Callable[[], datetime]
) -> tuple[list[Planned], list[CheckResult]]:
    """The check instances that apply to an incident with these alerts (firing first).

    A check applies when any alert matches its matchers, or always without matchers. Its
    probe is rendered with each matching alert's labels and annotations; distinct renderings
    run once each, at most :data:`MAX_INSTANCES`. A check that applies but that no alert can
    render comes back as a ``refused`` result instead.
    """
    planned: list[Planned] = []
    refused: list[CheckResult] = []
    contexts = [(dict(a["labels"] or {}), dict(a["annotations"] or {})) for a in alerts]
    for check in cfg.checks:
        match = CompiledMatch(check)
        matching = [c for c in contexts if match(c[0])] if match.matchers else contexts
        if not matching and match.matchers:
            continue
        seen: set[str] = set()
        problems: list[str] = []
        raw = check.probe.model_dump(mode="python")
        for labels, notes in matching or [({}, {})]:
            try:
                rendered = render_params(raw, labels, notes)
                probe = type(check.probe).model_validate(rendered)
            except (ValueError, ValidationError) as exc:
                problems.append(_short(exc))
                continue
            key = json.dumps(rendered, sort_keys=True, default=str)
            if key not in seen and len(seen) < MAX_INSTANCES:
                seen.add(key)
                planned.append(Planned(check, probe))
        if not seen:
            refused.append(CheckResult(
                check.name, check.kind,
                Finding("refused", f"cannot render from the alert labels: {problems[0]}",
                        {"outcome": "refused", "errors": problems[:MAX_INSTANCES]}),
                clock(), 0,
            ))
    return planned, refused


# -- running checks in parallel, each with its timeout --------------------------------------


def run_checks(
    planned: list[Planned],
    env: _Env,
    *,
    parallelism: int,
    clock: Callable[[], datetime],
) -> list[CheckResult]:
    """Run the checks on a thread pool; a check still running at its timeout is recorded as
    ``timeout`` and abandoned (its adapter's own timeout ends the thread soon after)."""
    if not planned:
        return []
    results: list[CheckResult | None] = [None] * len(planned)
    started: dict[int, tuple[float, datetime]] = {}
    lock = threading.Lock()

    def task(i: int) -> tuple[Finding, int]:
        with lock:
            started[i] = (time.monotonic(), clock())
        return _probe(planned[i], env)

    longest = max(p.timeout_s for p in planned) + ADAPTER_GRACE_S
    hard_stop = time.monotonic() + longest * math.ceil(len(planned) / parallelism) + 5
    pool = ThreadPoolExecutor(max_workers=min(parallelism, len(planned)),
                              thread_name_prefix="diagnostics")
    futures: dict[Future[tuple[Finding, int]], int] = {
        pool.submit(task, i): i for i in range(len(planned))
    }
    waiting = set(futures)
    try:
        while waiting:
            now = time.monotonic()
            deadlines = [hard_stop]
            for future in list(waiting):
                i = futures[future]
                item = planned[i]
                with lock:
                    began = started.get(i)
                if future.done():
                    finding, ms = future.result()
                    at = began[1] if began else clock()
                    results[i] = CheckResult(item.check.name, item.check.kind, finding, at, ms)
                elif began is not None and now >= began[0] + item.timeout_s:
                    results[i] = _timed_out(item, began[1])
                elif began is None and now >= hard_stop:
                    results[i] = _timed_out(item, clock(), started=False)
                else:
                    if began is not None:
                        deadlines.append(began[0] + item.timeout_s)
                    continue
                waiting.discard(future)
            if waiting:
                pause = min(deadlines) - time.monotonic()
                wait(waiting, timeout=min(max(pause, 0.005), 0.1), return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [r for r in results if r is not None]


def _timed_out(item: Planned, at: datetime, *, started: bool = True) -> CheckResult:
    seconds = f"{item.timeout_s:g}s"
    summary = (f"no answer within {seconds}" if started
               else "not started: every diagnostics thread was busy")
    finding = Finding("timeout", f"{_target_of(item)}: {summary}",
                      {"timeout_s": item.timeout_s, **_describe(item)})
    return CheckResult(item.check.name, item.check.kind, finding, at,
                       int(item.timeout_s * 1000) if started else 0)


def _probe(item: Planned, env: _Env) -> tuple[Finding, int]:
    begun = time.perf_counter()
    try:
        finding = _PROBES[item.check.kind](item.probe, item.timeout_s + ADAPTER_GRACE_S, env)
    except TargetNotAllowed as exc:
        finding = Finding("refused", f"not allowed: {exc}", {})
    except ValidationError as exc:
        finding = Finding("refused", f"invalid value from the alert: {_short(exc)}", {})
    except PlaybookError as exc:  # AdapterError included: the system could not be asked
        finding = Finding("error", f"{_target_of(item)}: {exc}", {})
    except Exception as exc:  # noqa: BLE001 - one check's bug must not fail the others
        log.exception("diagnostic_check_crashed", check=item.check.name)
        finding = Finding("error", f"{_target_of(item)}: {type(exc).__name__}: {exc}", {})
    detail = {**_describe(item), **finding.detail}
    elapsed = int((time.perf_counter() - begun) * 1000)
    return Finding(finding.outcome, finding.summary, detail), elapsed


def _describe(item: Planned) -> dict[str, Any]:
    return {"target": _target_of(item)}


def _target_of(item: Planned) -> str:
    probe = item.probe
    if isinstance(probe, HttpProbe | PrometheusProbe):
        return probe.url
    if isinstance(probe, DockerProbe):
        return f"container {probe.container}"
    if isinstance(probe, PostgresProbe):
        return f"postgres {probe.target}" + (f"/{probe.database}" if probe.database else "")
    if isinstance(probe, RedisProbe):
        return f"redis {probe.target} db {probe.db}"
    return item.check.name


# -- the probes ---------------------------------------------------------------------------------


def _http(probe: BaseModel, timeout_s: float, env: _Env) -> Finding:
    assert isinstance(probe, HttpProbe)  # noqa: S101 - dispatched by kind
    result = HttpAdapter(timeout_s=timeout_s).get(probe.url)
    detail = {
        "url": probe.url,
        "status": result.status,
        "latency_ms": round(result.latency_ms, 1),
        "body_excerpt": result.body_excerpt[:BODY_CHARS],
    }
    if result.status is None:
        return Finding("error", f"GET {probe.url}: {result.error}", {**detail,
                                                                      "error": result.error})
    outcome: Outcome = "ok" if 200 <= result.status < 300 else "failed"
    return Finding(outcome, f"GET {probe.url}: {result.status} in {result.latency_ms:.0f} ms",
                   detail)


def _docker(probe: BaseModel, timeout_s: float, env: _Env) -> Finding:
    assert isinstance(probe, DockerProbe)  # noqa: S101 - dispatched by kind
    name = _container_name.validate_python(probe.container)
    targets = env.targets
    by_name = targets.container_allowed(name)
    if not by_name and not targets.containers.labels:
        targets.check_container(name)
    endpoint = targets.docker.model_copy(update={"timeout_s": max(1, math.ceil(timeout_s))})
    with env.adapters.docker(endpoint) as docker:
        found = docker.details(name)
        if not by_name:
            # Only the container's labels can allow it now (looked up read-only).
            if found is None:
                targets.check_container(name)
            else:
                targets.check_container(found.name, found.labels)
        if found is None:
            return Finding("failed", f"container {name}: not found", {"container": name})
        text = docker.logs(found.id, tail=probe.log_lines)
    lines = [line[:LINE_CHARS] for line in text.splitlines()]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    health = f" ({found.health})" if found.health else ""
    summary = (
        f"container {found.name}: {found.status}{health}, {found.restart_count} restarts, "
        f"image {found.image}, started {found.started_at or '?'}; "
        f"{len(errors)} error line(s) in the last {len(lines)} log lines"
    )
    healthy = found.status == "running" and found.health in (None, "healthy")
    return Finding(
        "ok" if healthy and not errors else "failed",
        summary,
        {
            "container": found.as_dict(),
            "log_lines": len(lines),
            "error_line_count": len(errors),
            "error_lines": errors[-MAX_ERROR_LINES:],
            "log_tail": lines[-LOG_TAIL_LINES:],
        },
    )


def _postgres(probe: BaseModel, timeout_s: float, env: _Env) -> Finding:
    assert isinstance(probe, PostgresProbe)  # noqa: S101 - dispatched by kind
    name = _target_name.validate_python(probe.target)
    target = env.targets.postgres_target(name)
    dbname = None
    if probe.database is not None:
        dbname = _database_name.validate_python(probe.database)
        target.check_database(dbname, name)
    connect_s = max(1, min(target.connect_timeout_s, math.ceil(timeout_s)))
    target = target.model_copy(update={"connect_timeout_s": connect_s})
    begun = time.perf_counter()
    with env.adapters.postgres(target, dbname=dbname) as pg:
        connect_ms = (time.perf_counter() - begun) * 1000
        latency = pg.select_one_ms()
        counts = pg.connection_counts()
        longest = pg.longest_queries(limit=TOP_QUERIES, chars=QUERY_CHARS)
        size = pg.database_size()
    for row in longest:
        row["query"] = _SQL_PASSWORD.sub(rf"\1'{REDACTED}'", str(row.get("query") or ""))
        row["duration_s"] = round(float(row.get("duration_s") or 0), 1)
    used, limit = counts.get("client_connections", 0), counts.get("max_connections", 0)
    summary = (
        f"postgres {name}: SELECT 1 in {latency:.1f} ms; {used} of {limit} connections; "
        f"database {size.get('database')} {size.get('pretty')}"
    )
    if longest:
        top = longest[0]
        summary += f"; longest query {top['duration_s']:g}s (pid {top['pid']})"
    saturated = limit > 0 and used >= SATURATED * limit
    return Finding(
        "failed" if saturated else "ok",
        summary,
        {
            "connect_ms": round(connect_ms, 1),
            "select_1_ms": round(latency, 2),
            "connections": counts,
            "longest_queries": longest,
            "database_size": size,
        },
    )


_MEMORY_KEYS = (
    "used_memory", "used_memory_human", "used_memory_rss_human", "used_memory_peak_human",
    "maxmemory", "maxmemory_human", "maxmemory_policy", "mem_fragmentation_ratio",
)
_CLIENT_KEYS = ("connected_clients", "blocked_clients", "maxclients", "tracking_clients")


def _redis(probe: BaseModel, timeout_s: float, env: _Env) -> Finding:
    assert isinstance(probe, RedisProbe)  # noqa: S101 - dispatched by kind
    name = _target_name.validate_python(probe.target)
    target = env.targets.redis_target(name)
    target = target.model_copy(
        update={"socket_timeout_s": min(target.socket_timeout_s, timeout_s)}
    )
    with env.adapters.redis(target, db=probe.db) as client:
        latency = client.ping_ms()
        memory = client.info("memory")
        clients = client.info("clients")
    memory = {k: memory[k] for k in _MEMORY_KEYS if k in memory}
    clients = {k: clients[k] for k in _CLIENT_KEYS if k in clients}
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    summary = (
        f"redis {name}: PING in {latency:.2f} ms; memory {memory.get('used_memory_human', '?')}"
        + (f" of {memory.get('maxmemory_human')}" if limit else " (no maxmemory)")
        + f"; {clients.get('connected_clients', '?')} clients"
    )
    return Finding(
        "failed" if limit and used >= SATURATED * limit else "ok",
        summary,
        {"ping_ms": round(latency, 3), "memory": memory, "clients": clients},
    )


def _prometheus(probe: BaseModel, timeout_s: float, env: _Env) -> Finding:
    assert isinstance(probe, PrometheusProbe)  # noqa: S101 - dispatched by kind
    prom = PrometheusAdapter(probe.url, timeout_s=timeout_s)
    snapshots: dict[str, Any] = {}
    parts: list[str] = []
    failures = 0
    for name, query in probe.queries.items():
        try:
            samples = prom.query(query)
        except PlaybookError as exc:
            failures += 1
            snapshots[name] = {"query": query, "error": str(exc)}
            parts.append(f"{name}: error")
            continue
        snapshots[name] = {
            "query": query,
            "series": len(samples),
            "samples": [{"labels": s.labels, "value": s.value} for s in samples[:MAX_SAMPLES]],
        }
        if len(samples) == 1:
            parts.append(f"{name}={samples[0].value:g}")
        else:
            parts.append(f"{name}: {len(samples)} series")
    outcome: Outcome = "ok" if not failures else "error"
    return Finding(outcome, f"prometheus {probe.url}: " + ", ".join(parts), {"queries": snapshots})


_PROBES: dict[str, Callable[[BaseModel, float, _Env], Finding]] = {
    "http": _http,
    "docker": _docker,
    "postgres": _postgres,
    "redis": _redis,
    "prometheus": _prometheus,
}


# -- redaction and the size cap -------------------------------------------------------------------


def _secret_strings(targets: TargetsConfig) -> list[str]:
    """The configured DSNs and URLs, and the passwords in them: never stored as evidence."""
    found: set[str] = set()
    for pg in targets.postgres.values():
        dsn = pg.dsn.reveal()
        found.add(dsn)
        try:
            found.add(str(psycopg.conninfo.conninfo_to_dict(dsn).get("password") or ""))
        except psycopg.ProgrammingError:
            pass
    for rd in targets.redis.values():
        url = rd.url.reveal()
        found.add(url)
        try:
            found.add(urlsplit(url).password or "")
        except ValueError:
            pass
    # Very short values would blank out ordinary text; longest first, so a DSN goes whole.
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _clean(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        text = redact_value(value)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text
    if isinstance(value, dict):
        return {str(k): _clean(v, secrets) for k, v in redact_mapping(value).items()}
    if isinstance(value, list | tuple):
        return [_clean(v, secrets) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Inf are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value), secrets)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _shrink(value: Any, chars: int, items: int, key: str = "") -> Any:
    if isinstance(value, str) and len(value) > chars:
        return value[:chars] + f"...[+{len(value) - chars} chars]"
    if isinstance(value, dict):
        return {k: _shrink(v, chars, items, k) for k, v in value.items()}
    if isinstance(value, list):
        kept = value[-items:] if key.endswith("_tail") else value[:items]
        out = [_shrink(v, chars, items) for v in kept]
        if len(value) > items:
            out.append(f"...[{len(value) - items} more]")
        return out
    return value


def cap(detail: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``detail`` if it fits in ``max_bytes`` of JSON, else a shrunk copy marked truncated
    (strings and lists cut; ``*_tail`` lists keep their end)."""
    if _size(detail) <= max_bytes:
        return detail
    for chars, items in ((1000, 50), (400, 20), (160, 10), (60, 5), (20, 2)):
        shrunk = {**_shrink(detail, chars, items), "truncated": True}
        if _size(shrunk) <= max_bytes:
            return shrunk
    text = json.dumps(detail, ensure_ascii=False)
    keep = max_bytes // 2
    while True:
        fallback = {"outcome": detail.get("outcome"), "truncated": True, "excerpt": text[:keep]}
        if _size(fallback) <= max_bytes or keep == 0:
            return fallback
        keep //= 2


def _sanitize(result: CheckResult, secrets: list[str], max_bytes: int) -> CheckResult:
    finding = result.finding
    detail = _clean({"outcome": finding.outcome, **finding.detail}, secrets)
    summary = str(_clean(finding.summary, secrets))[:1000]
    return CheckResult(result.name, result.kind,
                       Finding(finding.outcome, summary, cap(detail, max_bytes)),
                       result.started_at, result.duration_ms)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errors
        )
    else:
        text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
