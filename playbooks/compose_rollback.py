"""rollback_deployment for a Compose service: its replicas recreated on the image they
replaced, as the deploy recorded it in the service's ``previous_image_label``.

Refused (PlaybookError, nothing done) when a replica came from a rollback already
(``remediator.rolled-back-from``), when the replicas run different images or record
different previous images (a deploy in progress), when no previous image is recorded or it
is not present locally (it is never pulled), when it is the current image, or when the
oldest replica was created longer ago than ``max_age``.

The replicas are recreated one at a time, lowest number first, each verified running before
the next; one that does not start is put back and the run stops there (ok: false, the
result lists what moved). Images are recorded by id, so a moved tag cannot change what a
later undo brings back. Undo recreates them on the image rolled back from, only while each
replica still runs the image the rollback left; the replicas stay marked as rolled back, so
a later alert does not roll them back again until the next deploy recreates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from playbooks.base import Plan, PlaybookContext, RunResult, Verification
from receiver.errors import PlaybookError
from receiver.remediation.deploy_targets import ROLLED_BACK_FROM

if TYPE_CHECKING:
    from playbooks.rollback_deployment import RollbackDeploymentParams
    from receiver.adapters import DeploysApi
    from receiver.adapters.compose_deploys import ComposeReplica
    from receiver.remediation.deploy_targets import ComposeDeployment


@dataclass(frozen=True)
class Decision:
    label: str
    replicas: list[ComposeReplica]
    from_id: str
    to_id: str
    to_ref: str


def what(params: RollbackDeploymentParams) -> str:
    return f"compose service {params.project}/{params.service}"


def entry_of(params: RollbackDeploymentParams, ctx: PlaybookContext) -> ComposeDeployment:
    return ctx.targets.deployments.compose_service(params.compose_project(), params.service)


def _replicas(
    params: RollbackDeploymentParams, api: DeploysApi, label: str
) -> list[ComposeReplica]:
    revision = api.compose_revision(params.compose_project(), params.service, label)
    if not revision.replicas:
        raise PlaybookError(f"{what(params)} has no container")
    return sorted(revision.replicas, key=lambda r: (r.number, r.name))


def decide(params: RollbackDeploymentParams, ctx: PlaybookContext, api: DeploysApi) -> Decision:
    """What a rollback would do now; PlaybookError (refused) when it may not."""
    label = entry_of(params, ctx).previous_image_label
    replicas = _replicas(params, api, label)
    name = what(params)
    if any(r.rolled_back_from for r in replicas):
        raise PlaybookError(
            f"refused: {name} is on a rollback already ({ROLLED_BACK_FROM}); rolling back "
            "again would bring back the version that was rolled back"
        )
    images = {r.image_id for r in replicas}
    if len(images) > 1:
        raise PlaybookError(f"refused: the replicas of {name} run {len(images)} different "
                            "images (a deploy in progress?)")
    previous = {r.previous_image for r in replicas}
    if None in previous:
        raise PlaybookError(f"refused: {name} has no previous version recorded (no {label!r} "
                            "label on every replica)")
    if len(previous) > 1:
        raise PlaybookError(f"refused: the replicas of {name} record different previous images")
    to_ref = str(previous.pop())
    to_id = api.image_id(to_ref)
    if to_id is None:
        raise PlaybookError(f"refused: the previous image {to_ref[:80]!r} of {name} is not "
                            "present on this engine (images are never pulled)")
    from_id = images.pop()
    if to_id == from_id:
        raise PlaybookError(f"refused: {name}'s previous image is its current one")
    created = [r.created for r in replicas]
    if any(c is None for c in created):
        raise PlaybookError(f"refused: {name} does not say when its replicas were created")
    oldest = min(c for c in created if c is not None)
    age = ctx.clock() - oldest
    if age > params.max_age:
        raise PlaybookError(
            f"refused: {name}'s current version is from {oldest.isoformat()}, "
            f"{age.total_seconds() / 3600:.1f}h ago, older than max_age "
            f"{params.max_age.total_seconds() / 3600:.1f}h"
        )
    return Decision(label, replicas, from_id, to_id, to_ref)


def plan(params: RollbackDeploymentParams, ctx: PlaybookContext, targets: list[str]) -> Plan:
    with ctx.adapters.deploys(ctx.targets.docker) as api:
        d = decide(params, ctx, api)
    return Plan(
        summary=f"roll back {what(params)} from image {d.from_id[:19]} to {d.to_ref[:80]}",
        steps=[f"recreate {r.name} on {d.to_id[:19]} (its configuration kept), then wait "
               "until it runs" for r in d.replicas],
        targets=targets,
        detail={"from": {"image_id": d.from_id}, "to": {"image_id": d.to_id, "ref": d.to_ref},
                "replicas": [r.as_dict() for r in d.replicas]},
    )


def _recreate(
    params: RollbackDeploymentParams,
    api: DeploysApi,
    replicas: list[ComposeReplica],
    image: str,
    labels: dict[str, str],
    label: str,
) -> tuple[list[dict[str, Any]], str | None]:
    moved: list[dict[str, Any]] = []
    for replica in replicas:
        try:
            new = api.recreate_on_image(
                replica.id, image, set_labels=labels, drop_labels=(), previous_label=label,
                stop_timeout_s=params.stop_timeout_s, wait_timeout_s=params.wait_timeout_s,
            )
        except PlaybookError as exc:
            return moved, f"{replica.name}: {exc}"
        moved.append({"name": new.name, "old_id": replica.id[:12], "new_id": new.id[:12],
                      "status": new.status})
    return moved, None


def run(params: RollbackDeploymentParams, ctx: PlaybookContext) -> RunResult:
    with ctx.adapters.deploys(ctx.targets.docker) as api:
        d = decide(params, ctx, api)
        ctx.log.info("rolling back", target=what(params), image=d.from_id, to=d.to_id)
        labels = {d.label: d.from_id, ROLLED_BACK_FROM: d.from_id}
        moved, error = _recreate(params, api, d.replicas, d.to_id, labels, d.label)
    ok = error is None and all(m["status"] == "running" for m in moved)
    summary = (f"{what(params)}: {len(moved)}/{len(d.replicas)} replica(s) recreated on "
               f"{d.to_ref[:80]}" + (f"; stopped at {error}" if error else ""))
    return RunResult(ok=ok, summary=summary, detail={
        "kind": "compose", "project": params.project, "service": params.service,
        "from": {"image_id": d.from_id}, "to": {"image_id": d.to_id, "ref": d.to_ref},
        "replicas": moved, "error": error,
    })


def verify(
    params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult
) -> Verification:
    wanted = (result.detail.get("to") or {}).get("image_id")
    label = entry_of(params, ctx).previous_image_label
    with ctx.adapters.deploys(ctx.targets.docker) as api:
        replicas = _replicas(params, api, label)
    on_it = [r for r in replicas if r.image_id == wanted and r.status == "running"]
    return Verification(
        ok=wanted is not None and len(on_it) == len(replicas),
        summary=f"{what(params)}: {len(on_it)}/{len(replicas)} replica(s) run {str(wanted)[:19]}",
        detail={"replicas": [r.as_dict() for r in replicas]},
    )


def _undo_replicas(
    params: RollbackDeploymentParams, ctx: PlaybookContext, api: DeploysApi, result: RunResult
) -> tuple[list[ComposeReplica], str, str, str]:
    forward = (result.detail.get("from") or {}).get("image_id")
    back = (result.detail.get("to") or {}).get("image_id")
    if not forward or not back:
        raise PlaybookError("the run's result does not record the images it rolled between")
    label = entry_of(params, ctx).previous_image_label
    replicas = _replicas(params, api, label)
    for r in replicas:
        if r.image_id != back or r.rolled_back_from != forward:
            raise PlaybookError(f"{what(params)} changed since the rollback ({r.name} runs "
                                f"{r.image_id[:19]}); it is not rolled forward")
    if api.image_id(forward) is None:
        raise PlaybookError(f"the image {forward[:19]} rolled back from is no longer present")
    return replicas, forward, back, label


def undo_plan(
    params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult, targets: list[str]
) -> Plan:
    with ctx.adapters.deploys(ctx.targets.docker) as api:
        replicas, forward, _, _ = _undo_replicas(params, ctx, api, result)
    return Plan(
        summary=f"roll {what(params)} forward again to image {forward[:19]}",
        steps=[f"recreate {r.name} on {forward[:19]}" for r in replicas],
        targets=targets,
        detail={"to": {"image_id": forward}},
    )


def undo(params: RollbackDeploymentParams, ctx: PlaybookContext, result: RunResult) -> RunResult:
    with ctx.adapters.deploys(ctx.targets.docker) as api:
        replicas, forward, back, label = _undo_replicas(params, ctx, api, result)
        labels = {label: back, ROLLED_BACK_FROM: back}
        moved, error = _recreate(params, api, replicas, forward, labels, label)
    ok = error is None and all(m["status"] == "running" for m in moved)
    return RunResult(
        ok=ok,
        summary=f"{what(params)}: {len(moved)}/{len(replicas)} replica(s) rolled forward to "
        f"{forward[:19]}" + (f"; stopped at {error}" if error else ""),
        detail={"kind": "compose", "from": {"image_id": back}, "to": {"image_id": forward},
                "replicas": moved, "error": error},
    )
