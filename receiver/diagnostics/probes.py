"""The read-only probes (http, docker, postgres, redis, prometheus; deploys in
:mod:`receiver.diagnostics.deploys`), each through its adapter, and the words that name
what a probe looks at."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

from receiver.adapters import AdapterFactory
from receiver.config import DockerProbe, HttpProbe, PostgresProbe, PrometheusProbe, RedisProbe
from receiver.config.deploys import DeploysProbe
from receiver.diagnostics.deploys import probe_deploys
from receiver.diagnostics.deploys import target_of as deploys_target
from receiver.diagnostics.findings import Finding, Outcome
from receiver.errors import PlaybookError
from receiver.remediation.targets import ContainerName, DatabaseName, TargetName, TargetsConfig
from receiver.runtime.logs import REDACTED

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
class ProbeEnv:
    """What a probe may reach: the targets allowlist and the adapters."""

    targets: TargetsConfig
    adapters: AdapterFactory


def target_of(probe: BaseModel, default: str) -> str:
    """What the probe looks at, in a few words (``default`` for an unknown probe)."""
    if isinstance(probe, HttpProbe | PrometheusProbe):
        return probe.url
    if isinstance(probe, DockerProbe):
        return f"container {probe.container}"
    if isinstance(probe, PostgresProbe):
        return f"postgres {probe.target}" + (f"/{probe.database}" if probe.database else "")
    if isinstance(probe, RedisProbe):
        return f"redis {probe.target} db {probe.db}"
    if isinstance(probe, DeploysProbe):
        return deploys_target(probe)
    return default


def _http(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
    assert isinstance(probe, HttpProbe)  # noqa: S101 - dispatched by kind
    result = env.adapters.http(timeout_s=timeout_s, hosts=env.targets.http).get(probe.url)
    detail: dict[str, Any] = {
        "url": probe.url,
        "status": result.status,
        "latency_ms": round(result.latency_ms, 1),
        "body_excerpt": result.body_excerpt[:BODY_CHARS],
    }
    if result.redirects:
        detail["redirects"] = list(result.redirects)
    if result.refused is not None:
        return Finding("refused", f"not allowed: GET {probe.url}: {result.refused}",
                       {**detail, "refused": result.refused})
    if result.status is None:
        return Finding("error", f"GET {probe.url}: {result.error}", {**detail,
                                                                      "error": result.error})
    outcome: Outcome = "ok" if 200 <= result.status < 300 else "failed"
    return Finding(outcome, f"GET {probe.url}: {result.status} in {result.latency_ms:.0f} ms",
                   detail)


def _docker(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
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


def _postgres(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
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


def _redis(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
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


def _prometheus(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
    assert isinstance(probe, PrometheusProbe)  # noqa: S101 - dispatched by kind
    prom = env.adapters.prometheus(probe.url, timeout_s=timeout_s, hosts=env.targets.http)
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


PROBES: dict[str, Callable[[BaseModel, float, ProbeEnv], Finding]] = {
    "http": _http,
    "docker": _docker,
    "postgres": _postgres,
    "redis": _redis,
    "prometheus": _prometheus,
    "deploys": probe_deploys,
}
"""Each probe by its check kind: ``probe(rendered_probe_model, timeout_s, env)``."""
