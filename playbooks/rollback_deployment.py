"""rollback_deployment: put a Swarm service back on its previous spec, the way
``docker service rollback`` does (the engine swaps the spec and the previous spec and rolls
the tasks with the service's rollback config), or a Compose service's replicas back on the
image they replaced (``kind: compose``, see :mod:`playbooks.compose_rollback`).

Refused (PlaybookError, nothing done) when:

- the service has no previous spec, or its previous spec runs the same tasks (the last
  change was a scale or a service setting, not a deploy: rolling back would only undo that,
  and the engine clears the rollback status on a scale, so this also catches a rollback
  followed by a scale);
- the current spec is itself a rollback (update status ``rollback_*``): rolling back again
  would bring back the version that was rolled back, so a second alert during or after a
  rollback never re-deploys the broken version by accident;
- the current version is older than ``max_age`` (default 24h; capped by
  ``targets.deployments.max_age_limit``): a rollback undoes a recent deploy, not one from
  last month;
- the service changed between the check and the call (the engine refuses an update "out of
  sequence" for a stale version).

Allowlist: ``targets.deployments.swarm_services`` / ``compose_services``. Not idempotent,
high risk. The result
records the digests of the spec rolled back from and to (never the specs, which may hold
secrets); ``verify`` checks that the service is on the spec rolled back to and that every
replica runs it; ``undo`` rolls forward again, only while the service is still exactly as the
rollback left it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from playbooks import compose_rollback
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
from receiver.durations import Duration
from receiver.errors import PlaybookError
from receiver.remediation.targets import ComposeProject, ServiceName

if TYPE_CHECKING:
    from receiver.adapters.deploys import ServiceRevision


class RollbackDeploymentParams(StrictParams):
    kind: Literal["swarm", "compose"] = "swarm"
    service: ServiceName
    project: ComposeProject | None = None
    max_age: Duration = timedelta(hours=24)
    wait_timeout_s: float = Field(default=120, ge=1, le=1800)
    stop_timeout_s: int = Field(default=10, ge=0, le=300)

    @field_validator("max_age")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("max_age must be more than 0")
        return value

    @model_validator(mode="after")
    def _project_for_compose(self) -> RollbackDeploymentParams:
        if (self.kind == "compose") != (self.project is not None):
            raise ValueError("'project' is required for kind=compose, and only for it")
        return self

    def compose_project(self) -> str:
        if self.project is None:
            raise PlaybookError("kind=compose needs a 'project'")
        return self.project


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"


class RollbackDeployment(Playbook[RollbackDeploymentParams]):
    name = "rollback_deployment"
    Params = RollbackDeploymentParams
    idempotent = False
    risk = Risk.HIGH
    undoable = True

    def targets(self, params: RollbackDeploymentParams) -> list[str]:
        if params.kind == "compose":
            return [f"compose_service:{params.project}/{params.service}"]
        return [f"swarm_service:{params.service}"]

    def check_allowed(self, params: RollbackDeploymentParams, ctx: PlaybookContext) -> None:
        if params.kind == "compose":
            compose_rollback.entry_of(params, ctx)
        else:
            ctx.targets.deployments.check_swarm_service(params.service)
        ctx.targets.deployments.check_max_age(params.max_age)

    def _what(self, params: RollbackDeploymentParams) -> str:
        return f"swarm service {params.service!r}"

    def refusal(
        self, params: RollbackDeploymentParams, ctx: PlaybookContext, rev: ServiceRevision
    ) -> str | None:
        """Why this service may not be rolled back now, or None when it may."""
        if rev.previous_digest is None:
            return f"{self._what(params)} has no previous version to roll back to"
        if rev.is_rollback:
            return (
                f"{self._what(params)} is on a rollback already ({rev.update_state}); rolling "
                "back again would bring back the version that was rolled back"
            )
        if rev.previous_template_digest == rev.template_digest:
            return (
                f"{self._what(params)}'s previous spec runs the same tasks as the current one "
                "(only replicas or service settings differ, as after a scale): there is no "
                "previous deploy to go back to"
            )
        if rev.updated_at is None:
            return f"{self._what(params)} does not say when its current version was deployed"
        age = ctx.clock() - rev.updated_at
        if age > params.max_age:
            return (
                f"{self._what(params)}'s current version is from {rev.updated_at.isoformat()}, "
                f"{_hours(age)} ago, older than max_age {_hours(params.max_age)}"
            )
        return None

    def _checked(
        self, params: RollbackDeploymentParams, ctx: PlaybookContext, rev: ServiceRevision | None
    ) -> ServiceRevision:
        if rev is None:
            raise PlaybookError(f"{self._what(params)} not found")
        why = self.refusal(params, ctx, rev)
        if why is not None:
            raise PlaybookError(f"refused: {why}")
        return rev

    def plan(self, params: RollbackDeploymentParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        if params.kind == "compose":
            return compose_rollback.plan(params, ctx, self.targets(params))
        with ctx.adapters.deploys(ctx.targets.docker) as api:
            rev = self._checked(params, ctx, api.revision(params.service))
        when = rev.updated_at.isoformat() if rev.updated_at else "unknown"
        return Plan(
            summary=f"roll back {self._what(params)} from {rev.image} to {rev.previous_image}",
            steps=[
                f"{self._what(params)} is at version {rev.version} (spec "
                f"{_short(rev.spec_digest)}, image {rev.image}, deployed {when})",
                f"ask the engine to roll back to the previous spec {_short(rev.previous_digest)} "
                f"(image {rev.previous_image})",
                f"wait up to {params.wait_timeout_s:g}s for every replica to run it",
            ],
            targets=self.targets(params),
            detail={"from": _facts(rev), "to_digest": rev.previous_digest},
        )

    def run(self, params: RollbackDeploymentParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        if params.kind == "compose":
            return compose_rollback.run(params, ctx)
        with ctx.adapters.deploys(ctx.targets.docker) as api:
            before = self._checked(params, ctx, api.revision(params.service))
            ctx.log.info("rolling back", target=self._what(params), version=before.version,
                         image=before.image, previous_image=before.previous_image)
            api.rollback_service(params.service, before.version)
            after = api.wait_rollout(params.service, params.wait_timeout_s)
        ok = (
            after.spec_digest == before.previous_digest
            and after.update_state == "rollback_completed"
            and (after.replicas is None or after.running_current == after.replicas)
        )
        detail: dict[str, Any] = {
            "kind": params.kind,
            "service": params.service,
            "from": _facts(before),
            "to_digest": before.previous_digest,
            "after": _facts(after),
        }
        summary = (
            f"{self._what(params)}: rolled back from {before.image} ({_short(before.spec_digest)}) "
            f"to {after.image} ({_short(after.spec_digest)}), {after.update_state}, "
            f"{after.running_current}/{after.replicas} replica(s) on it"
        )
        return RunResult(ok=ok, summary=summary, detail=detail)

    def verify(
        self, params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        if params.kind == "compose":
            return compose_rollback.verify(params, ctx, result)
        wanted = result.detail.get("to_digest")
        with ctx.adapters.deploys(ctx.targets.docker) as api:
            rev = api.revision(params.service)
        if rev is None:
            return Verification(ok=False, summary=f"{self._what(params)} is gone")
        on_spec = wanted is not None and rev.spec_digest == wanted
        replicas_ok = rev.replicas is None or (rev.running_current == rev.replicas == rev.running)
        return Verification(
            ok=on_spec and replicas_ok,
            summary=f"{self._what(params)} is on spec {_short(rev.spec_digest)} "
            f"({_short(wanted)} wanted), {rev.running_current}/{rev.replicas} replica(s) on it",
            detail=_facts(rev),
        )

    def _undo_checked(
        self, params: RollbackDeploymentParams, result: RunResult, rev: ServiceRevision | None
    ) -> tuple[ServiceRevision, str]:
        """The revision to roll forward from and the digest to reach; refused when the service
        is not exactly as the rollback left it."""
        recorded = result.detail.get("from") or {}
        forward, back = recorded.get("spec_digest"), result.detail.get("to_digest")
        if not forward or not back:
            raise PlaybookError("the run's result does not record the versions it rolled between")
        if rev is None:
            raise PlaybookError(f"{self._what(params)} not found")
        if rev.spec_digest != back or rev.previous_digest != forward:
            raise PlaybookError(
                f"{self._what(params)} changed since the rollback (spec {_short(rev.spec_digest)}, "
                f"previous {_short(rev.previous_digest)}); it is not rolled forward"
            )
        if not rev.settled:
            raise PlaybookError(f"{self._what(params)} is still updating ({rev.update_state})")
        return rev, forward

    def undo_plan(
        self, params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult
    ) -> Plan:
        self.check_allowed(params, ctx)
        if params.kind == "compose":
            return compose_rollback.undo_plan(params, ctx, result, self.targets(params))
        with ctx.adapters.deploys(ctx.targets.docker) as api:
            rev, forward = self._undo_checked(params, result, api.revision(params.service))
        return Plan(
            summary=f"roll {self._what(params)} forward again to {rev.previous_image}",
            steps=[f"ask the engine to go back from spec {_short(rev.spec_digest)} to "
                   f"{_short(forward)}, the version the rollback replaced"],
            targets=self.targets(params),
            detail={"from": _facts(rev), "to_digest": forward},
        )

    def undo(
        self, params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult
    ) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.undo_plan(params, ctx, result))
        self.check_allowed(params, ctx)
        if params.kind == "compose":
            return compose_rollback.undo(params, ctx, result)
        with ctx.adapters.deploys(ctx.targets.docker) as api:
            rev, forward = self._undo_checked(params, result, api.revision(params.service))
            api.rollback_service(params.service, rev.version)
            after = api.wait_rollout(params.service, params.wait_timeout_s)
        ok = after.spec_digest == forward and (
            after.replicas is None or after.running_current == after.replicas
        )
        return RunResult(
            ok=ok,
            summary=f"{self._what(params)}: rolled forward to {after.image} "
            f"({_short(after.spec_digest)}), {after.running_current}/{after.replicas} on it",
            detail={"service": params.service, "from": _facts(rev), "to_digest": forward,
                    "after": _facts(after)},
        )


def _facts(rev: ServiceRevision) -> dict[str, Any]:
    return {
        "version": rev.version,
        "image": rev.image,
        "spec_digest": rev.spec_digest,
        "previous_digest": rev.previous_digest,
        "updated_at": rev.updated_at.isoformat() if rev.updated_at else None,
        "update_state": rev.update_state,
        "replicas": rev.replicas,
        "running": rev.running,
        "running_current": rev.running_current,
    }


def _hours(value: timedelta) -> str:
    return f"{value.total_seconds() / 3600:.1f}h"
