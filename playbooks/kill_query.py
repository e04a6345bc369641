"""kill_query: stop long-running queries on an allowlisted PostgreSQL target.

For each selected backend, ``pg_cancel_backend`` first; after ``grace_s``, the ones still
running the same query (same pid, session start and query start) get
``pg_terminate_backend``. At most ``max_queries`` per run, longest first.

Never touched: its own backend, backends of other kinds than client/walsender/autovacuum, and,
unless both the params (``include_*``) and the target (``allow_*``) say so, superusers,
replication (walsender) and autovacuum workers. Only databases and roles listed on the target
are considered; a client backend whose role is unknown (dropped while connected) counts as
not allowlisted unless the target allows any role (``"*"``).

Filters from alert data stay filters: ``database``, ``user`` and ``application_name`` are
compared for exact equality (never as a pattern), and a label or annotation value
substituted into ``query_regex`` is regex-escaped first (``template_escapes``), so it is
matched as literal text and cannot widen the regex (or make it slow).

Not idempotent (a re-run acts on whatever runs then), and **high risk by default**: a cancel
or terminate destroys the client's in-flight work and rolls its transaction back, and what it
hits is decided at run time, so the plan is only a snapshot. An operator who wants it
automatic for a narrow rule (one database, one role, a query regex) says ``approval: auto``
on that rule.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from playbooks.base import (
    Plan,
    Playbook,
    PlaybookContext,
    Risk,
    RunResult,
    StrictParams,
    Verification,
    dry_run_result,
)
from receiver.remediation.targets import (
    WILDCARD,
    DatabaseName,
    PostgresTarget,
    RoleName,
    TargetName,
)

if TYPE_CHECKING:
    from receiver.adapters import PostgresApi
    from receiver.adapters.postgres import Backend

QUERY_TEXT_LIMIT = 200
_POLL_S = 0.2


class KillQueryParams(StrictParams):
    target: TargetName
    min_duration_s: float = Field(default=300, ge=1, le=7 * 86400)
    database: DatabaseName | None = None
    user: RoleName | None = None
    application_name: (
        Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")] | None
    ) = None
    query_regex: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    max_queries: int = Field(default=5, ge=1, le=100)
    grace_s: float = Field(default=10, ge=0, le=300)
    include_superusers: bool = False
    include_replication: bool = False
    include_autovacuum: bool = False

    @field_validator("query_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            if any(ord(ch) < 0x20 and ch not in "\t" for ch in value):
                raise ValueError("query_regex must not hold control characters")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"query_regex does not compile: {exc}") from exc
        return value


def truncate(text: str, limit: int = QUERY_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def select_backends(
    backends: Iterable[Backend], params: KillQueryParams, target: PostgresTarget
) -> tuple[list[Backend], dict[str, int]]:
    """The backends to act on (longest first, at most ``max_queries``) and why others were not.

    A pure function of its inputs; the adapter has already left out this session's backend.
    """
    allowed_kinds = {"client"}
    if params.include_superusers and target.allow_superuser:
        allowed_kinds.add("superuser")
    if params.include_replication and target.allow_replication:
        allowed_kinds.add("replication")
    if params.include_autovacuum and target.allow_autovacuum:
        allowed_kinds.add("autovacuum")
    pattern = re.compile(params.query_regex) if params.query_regex else None
    skipped: dict[str, int] = {}
    chosen: list[Backend] = []

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for backend in backends:
        if backend.duration_s < params.min_duration_s:
            skip("too short")
        elif backend.kind not in allowed_kinds:
            skip(f"protected {backend.kind} backend")
        elif backend.datname is None or not target.database_allowed(backend.datname):
            skip("database not allowlisted")
        elif params.database is not None and backend.datname != params.database:
            skip("other database")
        elif not _role_allowed(backend, target):
            skip("role not allowlisted")
        elif params.user is not None and backend.usename != params.user:
            skip("other user")
        elif (
            params.application_name is not None
            and backend.application_name != params.application_name
        ):
            skip("other application")
        elif pattern is not None and not pattern.search(backend.query):
            skip("query does not match")
        else:
            chosen.append(backend)
    chosen.sort(key=lambda b: b.duration_s, reverse=True)
    if len(chosen) > params.max_queries:
        skip_count = len(chosen) - params.max_queries
        skipped["over max_queries"] = skip_count
        chosen = chosen[: params.max_queries]
    return chosen, skipped


def _role_allowed(backend: Backend, target: PostgresTarget) -> bool:
    if backend.usename is not None:
        return target.role_allowed(backend.usename)
    # Autovacuum workers run as no role; a client backend with none had its role dropped.
    return backend.kind == "autovacuum" or WILDCARD in target.roles


def _describe(backend: Backend) -> dict[str, Any]:
    return {
        "pid": backend.pid,
        "database": backend.datname,
        "user": backend.usename,
        "application_name": backend.application_name,
        "backend_type": backend.backend_type,
        "duration_s": round(backend.duration_s, 3),
        "query": truncate(backend.query),
        "backend_start": backend.backend_start.isoformat() if backend.backend_start else None,
        "query_start": backend.query_start.isoformat() if backend.query_start else None,
    }


class KillQuery(Playbook[KillQueryParams]):
    name = "kill_query"
    Params = KillQueryParams
    idempotent = False
    risk = Risk.HIGH
    template_escapes = {"query_regex": re.escape}

    def targets(self, params: KillQueryParams) -> list[str]:
        return [f"postgres:{params.target}"]

    def check_allowed(self, params: KillQueryParams, ctx: PlaybookContext) -> None:
        target = ctx.targets.postgres_target(params.target)
        if params.database is not None:
            target.check_database(params.database, params.target)
        if params.user is not None:
            target.check_role(params.user, params.target)
        target.check_backend_kinds(
            params.target,
            superuser=params.include_superusers,
            replication=params.include_replication,
            autovacuum=params.include_autovacuum,
        )

    def plan(self, params: KillQueryParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        target = ctx.targets.postgres_target(params.target)
        with ctx.adapters.postgres(target) as pg:
            chosen, skipped = select_backends(
                pg.active_backends(params.min_duration_s), params, target
            )
        steps = [
            f"pg_cancel_backend({b.pid}): {b.usename}@{b.datname}, running "
            f"{b.duration_s:.0f}s: {truncate(b.query, 80)}"
            for b in chosen
        ]
        if chosen:
            steps.append(
                f"after {params.grace_s:g}s, pg_terminate_backend for any still running "
                "the same query"
            )
        return Plan(
            summary=f"cancel {len(chosen)} quer{'y' if len(chosen) == 1 else 'ies'} running "
            f"over {params.min_duration_s:g}s on {params.target} (as of now)",
            steps=steps or ["nothing matches now"],
            targets=self.targets(params),
            detail={"queries": [_describe(b) for b in chosen], "skipped": skipped},
        )

    def run(self, params: KillQueryParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        target = ctx.targets.postgres_target(params.target)
        with ctx.adapters.postgres(target) as pg:
            chosen, skipped = select_backends(
                pg.active_backends(params.min_duration_s), params, target
            )
            outcome: dict[int, str] = {}
            for backend in chosen:
                ctx.log.info("cancelling query", pid=backend.pid, target=params.target)
                outcome[backend.pid] = "cancel_sent" if pg.cancel(backend) else "ended"
            pending = [b for b in chosen if outcome[b.pid] == "cancel_sent"]
            pending = _wait_until_gone(pg, pending, params.grace_s)
            for backend in chosen:
                if outcome[backend.pid] == "cancel_sent":
                    outcome[backend.pid] = "cancelled"
            for backend in pending:
                ctx.log.warning("terminating backend", pid=backend.pid, target=params.target)
                outcome[backend.pid] = "terminated" if pg.terminate(backend) else "cancelled"
            survivors = _wait_until_gone(
                pg, [b for b in pending if outcome[b.pid] == "terminated"], 5
            )
            for backend in survivors:
                outcome[backend.pid] = "survived"
        queries = [{**_describe(b), "action": outcome[b.pid]} for b in chosen]
        counts = {
            action: sum(1 for q in queries if q["action"] == action)
            for action in ("cancelled", "terminated", "ended", "survived")
        }
        summary = (
            f"{counts['cancelled']} cancelled, {counts['terminated']} terminated, "
            f"{counts['ended']} ended on their own"
            + (f", {counts['survived']} still running" if counts["survived"] else "")
            + f" on {params.target}"
        )
        return RunResult(
            ok=not survivors,
            summary=summary if chosen else f"no query over {params.min_duration_s:g}s matched",
            detail={
                "queries": queries,
                "cancelled": [q["pid"] for q in queries if q["action"] == "cancelled"],
                "terminated": [q["pid"] for q in queries if q["action"] == "terminated"],
                "skipped": skipped,
                "counts": counts,
            },
        )

    def verify(
        self, params: KillQueryParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        acted = {
            (q["pid"], q["query_start"])
            for q in result.detail.get("queries", [])
            if q["action"] != "ended"
        }
        target = ctx.targets.postgres_target(params.target)
        with ctx.adapters.postgres(target) as pg:
            running = pg.active_backends(0)
        still = sorted(
            b.pid
            for b in running
            if (b.pid, b.query_start.isoformat() if b.query_start else None) in acted
        )
        return Verification(
            ok=not still,
            summary="none of the stopped queries runs any more"
            if not still
            else f"still running: {', '.join(map(str, still))}",
            detail={"still_running": still},
        )


def _wait_until_gone(
    pg: PostgresApi, backends: list[Backend], timeout_s: float
) -> list[Backend]:
    """Poll until none of ``backends`` still runs its query; return those that still do."""
    deadline = time.monotonic() + timeout_s
    left = list(backends)
    while left:
        left = [b for b in left if pg.still_running(b)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    return left
