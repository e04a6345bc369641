"""rollback_deployment on the real Swarm, with the local image (no pulls): deploy v1, update
to v2, roll back, and read what the replicas really run from their own output
(``version=N``, printed by the container at start)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
from hypothesis import example, given
from pydantic import ValidationError

from playbooks.base import RunResult
from playbooks.rollback_deployment import RollbackDeployment, RollbackDeploymentParams
from receiver.adapters import AdapterFactory, DeploysApi
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation.targets import DockerEndpoint, TargetsConfig
from receiver.store import open_store
from tests.conftest import Clock
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.playbooks.conftest import IMAGE, OWNER_LABEL, RUN_ID, DockerFactory, make_ctx
from tests.playbooks.conftest import make_targets as targets_of
from tests.playbooks.test_hostile_params import FAST, hostile, job_for
from tests.support import wait_until

PLAYBOOK = RollbackDeployment()
FAST_ROLL = {"parallelism": 0, "delay": 0, "monitor": 200_000_000, "order": "stop-first"}


def deploy_v1(dockerf: DockerFactory, replicas: int = 1) -> Any:
    """A service whose replicas print ``version=$VERSION`` and sleep; VERSION=1."""
    service = dockerf.client.services.create(
        IMAGE,
        ["sh", "-c", "echo version=$VERSION; exec sleep 3600"],
        name=dockerf.name("roll"),
        env=["VERSION=1"],
        labels={OWNER_LABEL: RUN_ID},
        mode=docker.types.ServiceMode("replicated", replicas),
        stop_signal="SIGKILL",
        update_config=docker.types.UpdateConfig(**FAST_ROLL),
        rollback_config=docker.types.RollbackConfig(**FAST_ROLL),
    )
    dockerf.services.append(service)
    wait_until(lambda: versions(service) == ["1"] * replicas, 60, "v1 to run")
    return service


def update_to(service: Any, version: str) -> None:
    """`docker service update --env-add VERSION=<version>`, waited for."""
    api = service.client.api
    attrs = api.inspect_service(service.id)
    template = attrs["Spec"]["TaskTemplate"]
    template["ContainerSpec"]["Env"] = [f"VERSION={version}"]
    api.update_service(service.id, attrs["Version"]["Index"], task_template=template,
                       fetch_current_spec=True)
    replicas = attrs["Spec"]["Mode"]["Replicated"]["Replicas"]
    wait_until(lambda: versions(service) == [version] * replicas and update_state(service)
               in ("completed", None), 60, f"v{version} to run")


def update_state(service: Any) -> str | None:
    service.reload()
    return (service.attrs.get("UpdateStatus") or {}).get("State")


def versions(service: Any) -> list[str]:
    """What each running replica printed at start (``version=N``), sorted."""
    found = []
    for task in service.tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] != "running":
            continue
        container_id = task["Status"]["ContainerStatus"]["ContainerID"]
        logs = service.client.api.logs(container_id).decode()
        found.extend(line.split("=", 1)[1] for line in logs.splitlines()
                     if line.startswith("version="))
    return sorted(found)


def env_of(service: Any) -> list[str]:
    service.reload()
    return list(service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [])


def ctx_for(name: str, **over: Any) -> Any:
    return make_ctx(targets_of(deployments={"swarm_services": [name]}), **over)


def params(name: str, **over: Any) -> RollbackDeploymentParams:
    return RollbackDeploymentParams.model_validate({"service": name, "wait_timeout_s": 90,
                                                    **over})


@pytest.mark.slow
def test_rollback_brings_v1_back_refuses_a_second_and_undo_rolls_forward(
    dockerf: DockerFactory,
) -> None:
    """v1 -> v2 -> rollback: the replicas run v1 again and verify agrees; a second rollback
    is refused (it would bring v2 back); undo rolls forward to v2."""
    service = deploy_v1(dockerf, replicas=2)
    update_to(service, "2")
    ctx = ctx_for(service.name)
    p = params(service.name)

    plan = PLAYBOOK.plan(p, ctx)
    assert plan.detail["from"]["previous_digest"] == plan.detail["to_digest"]
    assert env_of(service) == ["VERSION=2"]  # plan changed nothing

    result = PLAYBOOK.run(p, ctx)
    assert result.ok, result.summary
    assert env_of(service) == ["VERSION=1"]
    assert versions(service) == ["1", "1"]
    assert result.detail["after"]["update_state"] == "rollback_completed"
    assert "VERSION" not in repr(result.detail)  # digests, never the spec
    assert PLAYBOOK.verify(p, ctx, result).ok

    with pytest.raises(PlaybookError, match="on a rollback already"):
        PLAYBOOK.run(p, ctx)
    assert env_of(service) == ["VERSION=1"]

    stored = RunResult.from_dict(json.loads(json.dumps(result.as_dict())))  # as the job keeps it
    assert "forward" in PLAYBOOK.undo_plan(p, ctx, stored).summary
    undone = PLAYBOOK.undo(p, ctx, stored)
    assert undone.ok, undone.summary
    assert env_of(service) == ["VERSION=2"]
    wait_until(lambda: versions(service) == ["2", "2"], 60, "v2 to run again")
    assert not PLAYBOOK.verify(p, ctx, result).ok  # no longer on the rolled-back-to spec


@pytest.mark.slow
def test_undo_refuses_after_a_later_deploy(dockerf: DockerFactory) -> None:
    """v1 -> v2 -> rollback -> v3: undo does not roll anything (v3 stays)."""
    service = deploy_v1(dockerf)
    update_to(service, "2")
    ctx = ctx_for(service.name)
    result = PLAYBOOK.run(params(service.name), ctx)
    assert result.ok, result.summary
    update_to(service, "3")
    with pytest.raises(PlaybookError, match="changed since the rollback"):
        PLAYBOOK.undo(params(service.name), ctx, result)
    assert env_of(service) == ["VERSION=3"]


@pytest.mark.slow
def test_refusals_leave_the_service_alone(dockerf: DockerFactory) -> None:
    """No previous version; a current version older than max_age; a stale service version;
    a previous spec that differs only in replicas (a scale after the deploy): each is
    refused and the service keeps its spec."""
    service = deploy_v1(dockerf)
    ctx = ctx_for(service.name)
    with pytest.raises(PlaybookError, match="no previous version"):
        PLAYBOOK.plan(params(service.name), ctx)
    with pytest.raises(PlaybookError, match="no previous version"):
        PLAYBOOK.run(params(service.name), ctx)

    update_to(service, "2")
    later = make_ctx(ctx.targets, clock=lambda: datetime.now(UTC) + timedelta(hours=25))
    with pytest.raises(PlaybookError, match="older than max_age 24.0h"):
        PLAYBOOK.run(params(service.name), later)
    assert PLAYBOOK.plan(params(service.name, max_age="26h"), later).detail["to_digest"]

    with AdapterFactory().deploys(DockerEndpoint()) as api:
        assert isinstance(api, DeploysApi)
        revision = api.revision(service.name)
        assert revision is not None and revision.previous_digest is not None
        with pytest.raises(PlaybookError, match="out of sequence"):
            api.rollback_service(service.name, revision.version - 1)
        api.scale_service(service.name, 2)
    with pytest.raises(PlaybookError, match="runs the same tasks"):
        PLAYBOOK.run(params(service.name), ctx)
    assert env_of(service) == ["VERSION=2"]


def test_a_service_outside_the_allowlist_is_refused() -> None:
    """Only targets.deployments.swarm_services may be rolled back (scaling bounds do not
    allow it), and max_age cannot exceed max_age_limit."""
    scale_only = make_ctx(targets_of(swarm_services={"web": {"max_replicas": 3}}))
    with pytest.raises(TargetNotAllowed, match="targets.deployments.swarm_services"):
        PLAYBOOK.run(params("web"), scale_only)
    with pytest.raises(TargetNotAllowed, match="max_age_limit"):
        PLAYBOOK.run(params("web", max_age="8d"), ctx_for("web"))


def test_a_missing_service_is_a_playbook_error(docker_client: Any) -> None:
    name = f"rmtest-{RUN_ID}-absent"
    with pytest.raises(PlaybookError, match="not found"):
        PLAYBOOK.run(params(name), ctx_for(name))


@pytest.mark.parametrize("max_age", ["0s", "-1h", "soon", True])
def test_max_age_must_be_a_positive_duration(max_age: Any) -> None:
    with pytest.raises(ValidationError):
        params("web", max_age=max_age)


ALLOWED = TargetsConfig.model_validate({"deployments": {"swarm_services": ["web"]}})


@FAST
@given(hostile("web", "WEB", "web2", "api", "*"))
@example("web;rm")
@example("web\n")
@example("*")
@example("web ")
@example("../web")
def test_label_service_names_never_widen_the_allowlist(name: str) -> None:
    """A service named by an alert label is refused unless it is exactly an allowlisted one."""
    job = job_for("rollback_deployment", {"service": "{{ labels.service }}"},
                  {"service": name}, ALLOWED)
    if job is not None:
        assert job.params.service == "web"
        assert job.playbook.targets(job.params) == ["swarm_service:web"]


@pytest.mark.slow
def test_alert_to_rollback_through_the_worker(dockerf: DockerFactory, tmp_path: Path) -> None:
    """v1 then v2 deployed, alerts fire: under the default policy the job waits for approval
    (high risk, from the playbook class) and v2 stays; a rule with approval auto rolls back,
    the worker verifies it, and the replicas run v1."""
    service = deploy_v1(dockerf)
    update_to(service, "2")
    store = open_store(f"sqlite:///{tmp_path}/remediator.db")
    store.migrate()
    rules = [
        {"name": "rollback-reviewed", "matchers": ['alertname="WebErrorsAfterDeploy"'],
         "playbook": "rollback_deployment", "params": {"service": "{{ labels.service }}"}},
        {"name": "rollback-now", "matchers": ['alertname="WebDownAfterDeploy"'],
         "playbook": "rollback_deployment", "approval": {"mode": "auto"},
         "params": {"service": "{{ labels.service }}", "wait_timeout_s": 90}},
    ]
    try:
        kit = Kit(store, Clock(datetime.now(UTC)), rules, playbook=PLAYBOOK,  # type: ignore[arg-type]
                  targets={"deployments": {"swarm_services": [service.name]}})
        for alertname in ("WebErrorsAfterDeploy", "WebDownAfterDeploy"):
            alert = make_alert(alertname=alertname, labels={"service": service.name})
            kit.fire(make_notification([alert], group_key=f"g-{alertname}"))
            kit.drain()
        assert [(j["rule"], j["state"]) for j in kit.jobs()] == [
            ("rollback-reviewed", "awaiting_approval"), ("rollback-now", "succeeded")]
        assert env_of(service) == ["VERSION=1"]
        assert versions(service) == ["1"]
        events = [k for i in (1, 2) for k in kit.kinds(i)]
        assert "verification_passed" in events
    finally:
        store.close()
