"""flush_cache: remove keys from an allowlisted Redis target.

Three modes:

- ``pattern``: SCAN for the pattern and UNLINK what it finds in batches, at most
  ``max_keys``, reporting the count. The pattern is bounded, holds no control characters, and
  may not be wildcards only (that is FLUSHDB: say ``mode: db``). Its literal prefix (what
  comes before the first ``*``, ``?``, ``[`` or ``\\``) decides how far it can reach:

  - under one of the target's ``key_prefixes``: low risk;
  - not under any of them: refused when the pattern came from alert data, high risk (an
    approval under the default policy) when the rule wrote it literally;
  - the target lists no ``key_prefixes``: high risk.

  Every key SCAN returns is checked again before UNLINK: it must start with the literal
  prefix (and with the covering key prefix), whatever SCAN MATCH said;
- ``db`` (high risk): FLUSHDB on one allowlisted db;
- ``all`` (high risk): FLUSHALL, only when the target sets ``allow_flushall``.

``db`` defaults to the first db listed on the target. Not idempotent: a re-run removes keys
written since.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

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
from receiver.remediation.targets import RedisTarget, TargetName, literal_prefix, show

KeyPattern = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,256}$")]


class FlushCacheParams(StrictParams):
    target: TargetName
    mode: Literal["pattern", "db", "all"] = "pattern"
    pattern: KeyPattern | None = None
    db: int | None = Field(default=None, ge=0, le=1023)
    batch: int = Field(default=500, ge=1, le=10_000)
    max_keys: int = Field(default=100_000, ge=1, le=10_000_000)

    @field_validator("pattern")
    @classmethod
    def _not_everything(cls, value: str | None) -> str | None:
        if value is not None and not value.strip("*?"):
            raise ValueError("a pattern of wildcards only matches every key; use mode 'db'")
        return value

    @model_validator(mode="after")
    def _pattern_iff_pattern_mode(self) -> FlushCacheParams:
        if (self.mode == "pattern") != (self.pattern is not None):
            raise ValueError("'pattern' is required for mode 'pattern', and only for it")
        if self.mode == "all" and self.db is not None:
            raise ValueError("mode 'all' flushes every db; do not give 'db'")
        return self

    def key_pattern(self) -> str:
        """The pattern of mode 'pattern' (the validator guarantees one)."""
        if self.pattern is None:
            raise PlaybookError("mode 'pattern' needs a 'pattern'")
        return self.pattern


class FlushCache(Playbook[FlushCacheParams]):
    name = "flush_cache"
    Params = FlushCacheParams
    idempotent = False
    risk = Risk.HIGH

    def risk_for(self, params: FlushCacheParams, ctx: PlaybookContext) -> Risk:
        return Risk.HIGH if self.risk_note(params, ctx) else Risk.LOW

    def risk_note(self, params: FlushCacheParams, ctx: PlaybookContext) -> str | None:
        if params.mode == "db":
            return "FLUSHDB empties the whole db"
        if params.mode == "all":
            return "FLUSHALL empties every db of the server"
        target = ctx.targets.redis.get(params.target)
        if target is None:
            return f"redis target {show(params.target)} is not in targets.redis"
        if target.key_prefixes is None:
            return (
                f"targets.redis.{params.target} lists no key_prefixes, so a pattern can "
                "reach any key"
            )
        if target.prefix_for(params.key_pattern()) is None:
            return (
                f"pattern {show(params.pattern)} (literal prefix "
                f"{show(literal_prefix(params.key_pattern()))}) is not under "
                f"targets.redis.{params.target}.key_prefixes"
            )
        return None

    def approval_required(self, params: FlushCacheParams, ctx: PlaybookContext) -> str | None:
        """A pattern written in the rule itself whose literal prefix is outside the target's
        key_prefixes needs a person, even under ``approval: auto`` (one from alert data is
        refused by check_allowed instead)."""
        if params.mode != "pattern" or ctx.filled_by_alert("pattern"):
            return super().approval_required(params, ctx)
        target = ctx.targets.redis.get(params.target)
        if (target is not None and target.key_prefixes is not None
                and target.prefix_for(params.key_pattern()) is None):
            return (f"pattern {show(params.pattern)} is not under "
                    f"targets.redis.{params.target}.key_prefixes")
        return super().approval_required(params, ctx)

    def _key_prefixes(self, params: FlushCacheParams, target: RedisTarget) -> list[str] | None:
        """The key prefixes each key is checked against before UNLINK (besides the literal
        prefix): the target's, when one of them covers the pattern."""
        if target.prefix_for(params.key_pattern()) is None:
            return None
        return target.key_prefixes

    def targets(self, params: FlushCacheParams) -> list[str]:
        if params.mode == "all":
            return [f"redis:{params.target}"]
        db = "default" if params.db is None else str(params.db)
        return [f"redis:{params.target}/{db}"]

    def _target_db(self, params: FlushCacheParams, ctx: PlaybookContext) -> tuple[RedisTarget, int]:
        target = ctx.targets.redis_target(params.target)
        db = target.dbs[0] if params.db is None else params.db
        return target, db

    def check_allowed(self, params: FlushCacheParams, ctx: PlaybookContext) -> None:
        target, db = self._target_db(params, ctx)
        if params.mode == "all":
            target.check_flushall(params.target)
        else:
            target.check_db(db, params.target)
        if params.mode == "pattern" and ctx.filled_by_alert("pattern"):
            target.check_pattern(params.key_pattern(), params.target)

    def plan(self, params: FlushCacheParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        target, db = self._target_db(params, ctx)
        with ctx.adapters.redis(target, db=db) as cache:
            if params.mode == "pattern":
                count, more = cache.count_matching(
                    params.key_pattern(),
                    batch=params.batch,
                    limit=params.max_keys,
                    key_prefixes=self._key_prefixes(params, target),
                )
                summary = (
                    f"UNLINK {'at least ' if more else ''}{count} key(s) matching "
                    f"{params.pattern!r} in db {db} of {params.target}"
                )
                detail: dict[str, object] = {
                    "db": db,
                    "matching": count,
                    "more": more,
                    "literal_prefix": literal_prefix(params.key_pattern()),
                    "key_prefix": target.prefix_for(params.key_pattern()),
                }
                note = self.risk_note(params, ctx)
                if note:
                    detail["risk_note"] = note
            elif params.mode == "db":
                size = cache.dbsize()
                summary = f"FLUSHDB db {db} of {params.target} ({size} keys)"
                detail = {"db": db, "keys": size}
            else:
                sizes = cache.keyspace_sizes()
                summary = f"FLUSHALL on {params.target} ({sum(sizes.values())} keys in all dbs)"
                detail = {"keyspace": sizes}
        return Plan(summary=summary, steps=[summary], targets=self.targets(params), detail=detail)

    def run(self, params: FlushCacheParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        target, db = self._target_db(params, ctx)
        ctx.log.info("flushing cache", target=params.target, mode=params.mode, db=db)
        with ctx.adapters.redis(target, db=db) as cache:
            if params.mode == "pattern":
                result = cache.unlink_matching(
                    params.key_pattern(),
                    batch=params.batch,
                    max_keys=params.max_keys,
                    key_prefixes=self._key_prefixes(params, target),
                )
                return RunResult(
                    ok=True,
                    summary=f"unlinked {result.unlinked} key(s) matching {params.pattern!r} "
                    f"in db {db} of {params.target}"
                    + (f" (stopped at max_keys={params.max_keys})" if result.truncated else ""),
                    detail={
                        "mode": "pattern",
                        "db": db,
                        "pattern": params.key_pattern(),
                        "matched": result.matched,
                        "unlinked": result.unlinked,
                        "batches": result.batches,
                        "truncated": result.truncated,
                        "skipped": result.skipped,
                    },
                )
            if params.mode == "db":
                before = cache.dbsize()
                cache.flushdb()
                return RunResult(
                    ok=True,
                    summary=f"FLUSHDB removed {before} key(s) from db {db} of {params.target}",
                    detail={"mode": "db", "db": db, "keys_before": before},
                )
            sizes = cache.keyspace_sizes()
            cache.flushall()
            return RunResult(
                ok=True,
                summary=f"FLUSHALL removed {sum(sizes.values())} key(s) on {params.target}",
                detail={"mode": "all", "keyspace_before": sizes},
            )

    def verify(
        self, params: FlushCacheParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        """No matching key is left (a busy cache may refill at once; the count says so)."""
        target, db = self._target_db(params, ctx)
        with ctx.adapters.redis(target, db=db) as cache:
            if params.mode == "pattern":
                left, _ = cache.count_matching(
                    params.key_pattern(),
                    batch=params.batch,
                    limit=params.max_keys,
                    key_prefixes=self._key_prefixes(params, target),
                )
            elif params.mode == "db":
                left = cache.dbsize()
            else:
                left = sum(cache.keyspace_sizes().values())
        return Verification(
            ok=left == 0,
            summary="no matching key left" if left == 0 else f"{left} matching key(s) exist now",
            detail={"remaining": left},
        )
