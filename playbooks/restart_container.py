"""restart_container: restart containers by exact name or by label selector, then wait for them.

Idempotent and low risk: restarting twice leaves the container running, as once does. The
containers must be allowlisted (``targets.containers``) by name, name pattern, or labels; a
selector must be at least as narrow as an allowlisted selector, and every container it finds
is checked again with its own labels. ``max_containers`` bounds how many one run may restart.

Docker's ``RestartCount`` counts restart-policy restarts only, so a manual restart shows as a
new ``started_at`` with the same id; the result reports both, before and after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from receiver.errors import AdapterError, PlaybookError, TargetNotAllowed
from receiver.remediation.targets import ContainerName, LabelSelector, show

if TYPE_CHECKING:
    from receiver.adapters import DockerApi
    from receiver.adapters.docker import ContainerState


class RestartContainerParams(StrictParams):
    name: ContainerName | None = None
    selector: LabelSelector | None = None
    wait_timeout_s: float = Field(default=60, ge=1, le=900)
    stop_timeout_s: int = Field(default=10, ge=0, le=300)
    max_containers: int = Field(default=5, ge=1, le=50)

    @model_validator(mode="after")
    def _name_or_selector(self) -> RestartContainerParams:
        if (self.name is None) == (self.selector is None):
            raise ValueError("give exactly one of 'name' or 'selector'")
        return self

    def label_selector(self) -> dict[str, str]:
        """The selector when no name is given (the validator guarantees one of them)."""
        if self.selector is None:
            raise PlaybookError("give 'name' or 'selector'")
        return self.selector


class RestartContainer(Playbook[RestartContainerParams]):
    name = "restart_container"
    Params = RestartContainerParams
    idempotent = True
    risk = Risk.LOW

    def targets(self, params: RestartContainerParams) -> list[str]:
        if params.name is not None:
            return [f"container:{params.name}"]
        pairs = ",".join(f"{k}={v}" for k, v in sorted(params.label_selector().items()))
        return [f"containers:{pairs}"]

    def check_allowed(self, params: RestartContainerParams, ctx: PlaybookContext) -> None:
        allow = ctx.targets
        if params.name is None:
            allow.check_label_selector(params.label_selector())
            return
        if allow.container_allowed(params.name):
            return
        if not allow.containers.labels:
            allow.check_container(params.name)
        # Only the container's labels can decide now: look it up (read-only). Docker also
        # resolves ids and id prefixes; an ambiguous prefix is refused, not a crash.
        with ctx.adapters.docker(allow.docker) as docker:
            try:
                found = docker.container(params.name)
            except AdapterError:
                raise
            except PlaybookError as exc:
                raise TargetNotAllowed(
                    f"container {show(params.name)} is not in targets.containers names or "
                    f"patterns, and looking it up failed: {exc}"
                ) from exc
        if found is None:
            raise TargetNotAllowed(
                f"container {show(params.name)} is not in targets.containers names or patterns, "
                "and no container of that name exists to match a label selector"
            )
        allow.check_container(found.name, found.labels)

    def _resolve(
        self, params: RestartContainerParams, ctx: PlaybookContext, docker: DockerApi
    ) -> list[ContainerState]:
        if params.name is not None:
            found = docker.container(params.name)
            if found is None:
                raise PlaybookError(f"container {show(params.name)} not found")
            containers = [found]
        else:
            selector = params.label_selector()
            containers = docker.containers(selector)
            if not containers:
                raise PlaybookError(f"no container matches selector {show(selector)}")
        for container in containers:
            ctx.targets.check_container(container.name, container.labels)
        if len(containers) > params.max_containers:
            raise PlaybookError(
                f"{len(containers)} containers match, more than max_containers="
                f"{params.max_containers}: {', '.join(c.name for c in containers)}"
            )
        return containers

    def plan(self, params: RestartContainerParams, ctx: PlaybookContext) -> Plan:
        ctx.ensure_allowed(self, params)
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            containers = self._resolve(params, ctx, docker)
        steps = [
            f"restart {c.name} ({c.id[:12]}, now {c.status}"
            f"{', ' + c.health if c.health else ''}) with a {params.stop_timeout_s}s stop timeout"
            for c in containers
        ]
        steps.append(
            f"wait up to {params.wait_timeout_s:g}s for each to run"
            " (and be healthy where a healthcheck exists)"
        )
        return Plan(
            summary=f"restart {len(containers)} container(s): "
            + ", ".join(c.name for c in containers),
            steps=steps,
            targets=self.targets(params),
            detail={"containers": [c.as_dict() for c in containers]},
        )

    def run(self, params: RestartContainerParams, ctx: PlaybookContext) -> RunResult:
        if ctx.dry_run:
            return dry_run_result(self.plan(params, ctx))
        ctx.ensure_allowed(self, params)
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            before = self._resolve(params, ctx, docker)
            for container in before:
                ctx.log.info("restarting container", container=container.name, id=container.id)
                docker.restart(container.id, params.stop_timeout_s)
            after = [docker.wait_ready(c.id, params.wait_timeout_s) for c in before]
        report = [_report(old, new) for old, new in zip(before, after, strict=True)]
        not_ready = [new.name for new in after if not new.ready]
        ok = not not_ready
        summary = f"restarted {len(before)} container(s)" + (
            ""
            if ok
            else f"; not running/healthy within {params.wait_timeout_s:g}s: " + ", ".join(not_ready)
        )
        return RunResult(ok=ok, summary=summary, detail={"containers": report})

    def verify(
        self, params: RestartContainerParams, ctx: PlaybookContext, result: RunResult
    ) -> Verification:
        ids = [c["id"] for c in result.detail.get("containers", [])]
        states = []
        with ctx.adapters.docker(ctx.targets.docker) as docker:
            for container_id in ids:
                found = docker.container(container_id, exact_name=False)
                states.append(
                    {
                        "id": container_id,
                        "ready": bool(found and found.ready),
                        "status": found.status if found else "gone",
                        "health": found.health if found else None,
                    }
                )
        bad = [s["id"][:12] for s in states if not s["ready"]]
        ok = bool(states) and not bad
        summary = (
            f"{len(states)} container(s) running/healthy"
            if ok
            else f"not running/healthy: {', '.join(bad) or 'no container restarted'}"
        )
        return Verification(ok=ok, summary=summary, detail={"containers": states})


def _report(old: ContainerState, new: ContainerState) -> dict[str, object]:
    return {
        "id": new.id,
        "name": new.name,
        "status": new.status,
        "health": new.health,
        "ready": new.ready,
        "restart_count_before": old.restart_count,
        "restart_count_after": new.restart_count,
        "started_at_before": old.started_at,
        "started_at_after": new.started_at,
    }
