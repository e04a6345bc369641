"""restore_database: restore an allowlisted database from its newest verified backup.

Always high risk, never idempotent. The steps, each a precondition of the next:

1. the database answers (else AdapterError; nothing done);
2. pick the newest backup of the location that verifies (manifest sha256 and size, then
   ``pg_restore --list`` or a gzip integrity check); none verifies: refused, nothing done;
3. take a safety dump of the current database into the location (kind ``safety``); it
   fails: refused, nothing done;
4. restore in a single transaction (``pg_restore --single-transaction --clean --if-exists``,
   or ``psql --single-transaction -v ON_ERROR_STOP=1`` for ``.sql.gz``); a failure rolls
   back and the result says ``ok: false``;
5. run the location's ``verify_query``; its first column must be truthy.

Safety dumps are not picked as the backup to restore unless ``include_safety`` is set or the
params name one in ``backup``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

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
from receiver.errors import PlaybookError
from receiver.remediation.backups import (
    backup_path,
    create_backup,
    newest_verified,
    resolve_location,
    restore_backup,
)
from receiver.remediation.targets import TargetName

BackupFileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")]


class RestoreDatabaseParams(StrictParams):
    location: TargetName
    backup: BackupFileName | None = None
    include_safety: bool = False


def _show_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class RestoreDatabase(Playbook[RestoreDatabaseParams]):
    name = "restore_database"
    Params = RestoreDatabaseParams
    idempotent = False
    risk = Risk.HIGH
    always_requires_approval = True
    default_approvers = 2  # the two-person rule, unless the rule names a count

    def targets(self, params: RestoreDatabaseParams) -> list[str]:
        return [f"backups:{params.location}"]

    def check_allowed(self, params: RestoreDatabaseParams, ctx: PlaybookContext) -> None:
        resolve_location(ctx.targets, params.location)

    def plan(self, params: RestoreDatabaseParams, ctx: PlaybookContext) -> Plan:
        loc, _ = resolve_location(ctx.targets, params.location)
        chosen, rejected = newest_verified(
            ctx.targets,
            params.location,
            include_safety=params.include_safety,
            only=params.backup,
            adapters=ctx.adapters,
        )
        safety = backup_path(loc, kind="safety", fmt="custom", now=ctx.clock())
        detail: dict[str, Any] = {
            "database": loc.database,
            "postgres": loc.postgres,
            "backup": chosen.as_dict() if chosen else None,
            "rejected": [check.as_dict() for check in rejected],
            "safety_dump": str(safety),
            "verify_query": loc.verify_query,
        }
        if chosen is None:
            return Plan(
                summary=f"would refuse: no backup in {params.location!r} verifies",
                steps=["nothing: every candidate backup failed verification"],
                targets=self.targets(params),
                detail=detail,
            )
        tool = "pg_restore" if chosen.format == "custom" else "psql"
        return Plan(
            summary=f"restore {loc.database!r} on {loc.postgres!r} from {chosen.name}",
            steps=[
                f"safety dump of {loc.database!r} to {safety} (name as of planning)",
                f"restore {chosen.name} ({chosen.created_at.isoformat()}) with {tool} "
                "in a single transaction",
                f"check that {loc.verify_query!r} returns a truthy first column",
            ],
            targets=self.targets(params),
            detail=detail,
        )

    def run(self, params: RestoreDatabaseParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        loc, target = resolve_location(ctx.targets, params.location)
        with ctx.adapters.postgres(target, dbname=loc.database) as pg:
            pg.own_pid()  # the database answers before anything is decided
        chosen, rejected = newest_verified(
            ctx.targets,
            params.location,
            include_safety=params.include_safety,
            only=params.backup,
            adapters=ctx.adapters,
        )
        if chosen is None:
            reasons = "; ".join(f"{c.name}: {', '.join(c.problems)}" for c in rejected)
            raise PlaybookError(
                f"refusing to restore {loc.database!r}: no backup in {params.location!r} "
                f"verifies ({reasons or 'there is none'}); the database was not touched"
            )
        ctx.log.info("taking safety dump", location=params.location, database=loc.database)
        try:
            safety = create_backup(
                ctx.targets,
                params.location,
                kind="safety",
                clock=ctx.clock,
                adapters=ctx.adapters,
            )
        except PlaybookError as exc:
            raise type(exc)(
                f"safety dump failed, restore not attempted, database untouched: {exc}"
            ) from exc
        ctx.log.warning("restoring database", backup=chosen.name, database=loc.database)
        outcome = restore_backup(ctx.targets, params.location, chosen, adapters=ctx.adapters)
        detail: dict[str, Any] = {
            "database": loc.database,
            "postgres": loc.postgres,
            "backup": chosen.as_dict(),
            "rejected": [check.as_dict() for check in rejected],
            "safety_dump": safety.as_dict(),
            "restored": outcome.returncode == 0,
        }
        if outcome.returncode != 0:
            detail["error"] = outcome.stderr_tail()
            return RunResult(
                ok=False,
                summary=f"restore of {chosen.name} failed and was rolled back; "
                f"safety dump at {safety.path}",
                detail=detail,
            )
        with ctx.adapters.postgres(target, dbname=loc.database) as pg:
            value = pg.first_value(loc.verify_query)
        detail["verify_query"] = loc.verify_query
        detail["verify_value"] = _show_value(value)
        ok = bool(value)
        return RunResult(
            ok=ok,
            summary=f"restored {loc.database!r} from {chosen.name}; verify query "
            + ("passed" if ok else f"returned {_show_value(value)}")
            + f"; safety dump at {safety.path.name}",
            detail=detail,
        )

    def verify(
        self, params: RestoreDatabaseParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        loc, target = resolve_location(ctx.targets, params.location)
        with ctx.adapters.postgres(target, dbname=loc.database) as pg:
            value = pg.first_value(loc.verify_query)
        return Verification(
            ok=bool(value),
            summary=f"verify query returned {_show_value(value)}",
            detail={"verify_query": loc.verify_query, "value": _show_value(value)},
        )
