"""scale_service: set a Swarm service's replicas, or a Compose service's container count.

Idempotent and low risk, within the allowlist's bounds (``targets.swarm_services`` /
``targets.compose_services``):

- an absolute ``replicas`` outside ``min_replicas..max_replicas`` is refused
  (TargetNotAllowed), never silently changed;
- a ``step`` (+N / -N) is clamped into the bounds, and the result says so. A step never moves
  the count against its own direction: a service already above its maximum is not scaled down
  by a ``+1``.

A re-run of an absolute count is a no-op; a re-run of a step steps again (still clamped).

Undo scales back to the count recorded before the run (checked against the bounds again),
only while the service still has the count the run left; for Compose, scaling back down
removes the highest-numbered containers (those the run created), and back up creates new
ones from an existing replica.

Compose services are the containers labelled ``com.docker.compose.project``/``.service``
(one-off ``run`` containers excluded). Scaling up creates containers from the configuration of
an existing replica, numbered after the highest; scaling down removes the highest-numbered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

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
from receiver.remediation.targets import ComposeProject, ReplicaBounds, ServiceName

if TYPE_CHECKING:
    from receiver.adapters import DockerApi
    from receiver.adapters.docker import ContainerState


class ScaleServiceParams(StrictParams):
    kind: Literal["swarm", "compose"] = "swarm"
    service: ServiceName
    project: ComposeProject | None = None
    replicas: int | None = Field(default=None, ge=0, le=1000)
    step: int | None = Field(default=None, ge=-100, le=100)
    wait_timeout_s: float = Field(default=60, ge=1, le=900)
    stop_timeout_s: int = Field(default=10, ge=0, le=300)

    @model_validator(mode="after")
    def _consistent(self) -> ScaleServiceParams:
        if (self.replicas is None) == (self.step is None):
            raise ValueError("give exactly one of 'replicas' (absolute) or 'step' (+N/-N)")
        if self.step == 0:
            raise ValueError("'step' must not be 0")
        if (self.kind == "compose") != (self.project is not None):
            raise ValueError("'project' is required for kind=compose, and only for it")
        return self

    def compose_project(self) -> str:
        """The project of a compose service (the validator guarantees one)."""
        if self.project is None:
            raise PlaybookError("kind=compose needs a 'project'")
        return self.project


def desired_replicas(
    current: int, params: ScaleServiceParams, bounds: ReplicaBounds
) -> tuple[int, str | None]:
    """The count to scale to, and a note when a step was clamped (None when it was not)."""
    if params.replicas is not None:
        return params.replicas, None
    step = params.step or 0  # the validator demands replicas or a non-zero step
    wanted = current + step
    clamped = bounds.clamp(wanted)
    if (step > 0 and clamped < current) or (step < 0 and clamped > current):
        return current, (
            f"step {step:+d} from {current} would leave the allowed range "
            f"{bounds.min_replicas}..{bounds.max_replicas} the other way; left at {current}"
        )
    if clamped != wanted:
        return clamped, (
            f"step {step:+d} from {current} asks for {wanted}; clamped to {clamped} "
            f"(allowed {bounds.min_replicas}..{bounds.max_replicas})"
        )
    return wanted, None


class ScaleService(Playbook[ScaleServiceParams]):
    name = "scale_service"
    Params = ScaleServiceParams
    idempotent = True
    risk = Risk.LOW
    undoable = True

    def targets(self, params: ScaleServiceParams) -> list[str]:
        if params.kind == "swarm":
            return [f"swarm_service:{params.service}"]
        return [f"compose_service:{params.project}/{params.service}"]

    def _bounds(self, params: ScaleServiceParams, ctx: PlaybookContext) -> ReplicaBounds:
        if params.kind == "swarm":
            return ctx.targets.swarm_service(params.service)
        return ctx.targets.compose_service(params.compose_project(), params.service)

    def _what(self, params: ScaleServiceParams) -> str:
        if params.kind == "swarm":
            return f"swarm service {params.service!r}"
        return f"compose service {params.project}/{params.service}"

    def check_allowed(self, params: ScaleServiceParams, ctx: PlaybookContext) -> None:
        bounds = self._bounds(params, ctx)
        if params.replicas is not None:
            bounds.check(params.replicas, self._what(params))

    def _current(
        self, params: ScaleServiceParams, docker: DockerApi
    ) -> tuple[int, list[ContainerState]]:
        if params.kind == "swarm":
            service = docker.service(params.service)
            if service is None:
                raise PlaybookError(f"{self._what(params)} not found")
            if service.replicas is None:
                raise PlaybookError(f"{self._what(params)} is global; it has no replica count")
            return service.replicas, []
        replicas = docker.compose_replicas(params.compose_project(), params.service)
        return len(replicas), replicas

    def plan(self, params: ScaleServiceParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        bounds = self._bounds(params, ctx)
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            current, replicas = self._current(params, docker)
        desired, note = desired_replicas(current, params, bounds)
        steps = [f"{self._what(params)} has {current} replica(s); scale to {desired}"]
        if note:
            steps.append(note)
        if params.kind == "compose" and desired < current:
            steps.append("remove " + ", ".join(c.name for c in replicas[desired:]))
        elif params.kind == "compose" and desired > current:
            steps.append(f"create {desired - current} container(s) from an existing replica")
        steps.append(f"wait up to {params.wait_timeout_s:g}s for {desired} to run")
        return Plan(
            summary=f"scale {self._what(params)} from {current} to {desired}",
            steps=steps,
            targets=self.targets(params),
            detail={"current": current, "desired": desired, "clamp": note},
        )

    def run(self, params: ScaleServiceParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        bounds = self._bounds(params, ctx)
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            before, replicas = self._current(params, docker)
            desired, note = desired_replicas(before, params, bounds)
            detail: dict[str, Any] = {
                "kind": params.kind,
                "service": params.service,
                "project": params.project,
                "before": before,
                "desired": desired,
                "clamped": note is not None,
                "clamp": note,
            }
            ctx.log.info("scaling", target=self._what(params), before=before, desired=desired)
            if params.kind == "swarm":
                if desired != before:
                    docker.scale_service(params.service, desired)
                state = docker.wait_service(params.service, desired, params.wait_timeout_s)
                running = state.running
            else:
                running = self._scale_compose(params, docker, replicas, desired, detail)
        detail["running"] = running
        ok = running == desired
        summary = f"{self._what(params)}: {before} -> {desired} replica(s), {running} running"
        if note:
            summary += f" ({note})"
        return RunResult(ok=ok, summary=summary, detail=detail)

    def _scale_compose(
        self,
        params: ScaleServiceParams,
        docker: DockerApi,
        replicas: list[ContainerState],
        desired: int,
        detail: dict[str, Any],
    ) -> int:
        created: list[dict[str, Any]] = []
        removed: list[dict[str, Any]] = []
        detail["created"], detail["removed"] = created, removed
        if desired < len(replicas):
            for container in reversed(replicas[desired:]):
                docker.remove(container.id, params.stop_timeout_s)
                removed.append({"id": container.id, "name": container.name})
            keep = replicas[:desired]
        else:
            keep = list(replicas)
            if desired > len(replicas):
                if not replicas:
                    raise PlaybookError(
                        f"{self._what(params)} has no container to copy; cannot scale up from 0"
                    )
                template = next(
                    (c for c in reversed(replicas) if c.status == "running"), replicas[-1]
                )
                number = max(c.compose_number for c in replicas)
                for _ in range(desired - len(replicas)):
                    number += 1
                    new = docker.create_compose_replica(template.id, number)
                    created.append({"id": new.id, "name": new.name, "number": number})
                    keep.append(new)
        final = [docker.wait_ready(c.id, params.wait_timeout_s) for c in keep]
        return sum(1 for c in final if c.status == "running")

    def verify(
        self, params: ScaleServiceParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        desired = result.detail.get("desired")
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            if params.kind == "swarm":
                service = docker.service(params.service)
                running = service.running if service else 0
                spec = service.replicas if service else None
            else:
                replicas = docker.compose_replicas(params.compose_project(), params.service)
                running = sum(1 for c in replicas if c.status == "running")
                spec = len(replicas)
        ok = desired is not None and running == desired and spec == desired
        return Verification(
            ok=ok,
            summary=f"{self._what(params)}: {running} running, {spec} configured, {desired} wanted",
            detail={"running": running, "configured": spec, "desired": desired},
        )

    def _undo_params(
        self, params: ScaleServiceParams, result: RunResult
    ) -> tuple[ScaleServiceParams, int] | None:
        """The params that scale back, and the count the run left; None: it changed nothing."""
        before, desired = result.detail.get("before"), result.detail.get("desired")
        if not isinstance(before, int) or not isinstance(desired, int):
            raise PlaybookError("the run's result does not record the replica count before it")
        if before == desired:
            return None
        back = {**params.model_dump(), "replicas": before, "step": None}
        return ScaleServiceParams.model_validate(back), desired

    def _check_unchanged(self, params: ScaleServiceParams, ctx: PlaybookContext, left: int) -> None:
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            current, _ = self._current(params, docker)
        if current != left:
            raise PlaybookError(
                f"{self._what(params)} has {current} replica(s), not the {left} the run left; "
                "it changed since, so it is not scaled back"
            )

    def undo_plan(
        self, params: ScaleServiceParams, ctx: PlaybookContext, result: RunResult
    ) -> Plan:
        undo = self._undo_params(params, result)
        if undo is None:
            return Plan(summary=f"nothing to undo: {self._what(params)} was not scaled",
                        steps=[], targets=self.targets(params))
        back, left = undo
        self._check_unchanged(back, ctx, left)
        plan = self.plan(back, ctx)
        return Plan(summary=f"undo: {plan.summary}", steps=plan.steps, targets=plan.targets,
                    detail=plan.detail)

    def undo(
        self, params: ScaleServiceParams, ctx: PlaybookContext, result: RunResult
    ) -> RunResult:
        undo = self._undo_params(params, result)
        if undo is None:
            return RunResult(ok=True, summary=f"nothing to undo: {self._what(params)} was "
                             "not scaled", detail={"changed": False})
        if ctx.dry_run:
            return dry_run_result(self.undo_plan(params, ctx, result))
        back, left = undo
        self._check_unchanged(back, ctx, left)
        done = self.run(back, ctx)
        return RunResult(ok=done.ok, summary=f"undo: {done.summary}",
                         detail={**done.detail, "undo_of": left})
