"""scale_service against the real dockerd: a Swarm service and a Compose-labelled service."""

from __future__ import annotations

from typing import Any

import pytest

from playbooks.scale_service import ScaleService, ScaleServiceParams
from receiver.adapters.docker import COMPOSE_NUMBER, COMPOSE_PROJECT, COMPOSE_SERVICE
from receiver.errors import AdapterError, PlaybookError, TargetNotAllowed
from tests.playbooks.conftest import RUN_ID, DockerFactory, make_ctx, make_targets
from tests.support import wait_until

PLAYBOOK = ScaleService()


def running_tasks(service: Any) -> int:
    return sum(
        1
        for t in service.tasks(filters={"desired-state": "running"})
        if t["Status"]["State"] == "running"
    )


def spec_replicas(service: Any) -> int:
    service.reload()
    return int(service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])


@pytest.fixture
def swarm_service(dockerf: DockerFactory) -> Any:
    service = dockerf.service(dockerf.name("svc"), replicas=1)
    wait_until(lambda: running_tasks(service) == 1, 60, "the service's first task")
    return service


def swarm_ctx(name: str, lo: int = 1, hi: int = 3, **docker: Any) -> Any:
    return make_ctx(
        make_targets(swarm_services={name: {"min_replicas": lo, "max_replicas": hi}}, docker=docker)
    )


def test_swarm_plan_then_run_then_verify(swarm_service: Any) -> None:
    """plan() changes nothing; run() really sets 2 replicas; verify() agrees."""
    ctx = swarm_ctx(swarm_service.name)
    params = ScaleServiceParams(service=swarm_service.name, replicas=2, wait_timeout_s=60)
    plan = PLAYBOOK.plan(params, ctx)
    assert (plan.detail["current"], plan.detail["desired"]) == (1, 2)
    assert spec_replicas(swarm_service) == 1
    result = PLAYBOOK.run(params, ctx)
    assert result.ok, result.summary
    assert spec_replicas(swarm_service) == 2
    assert running_tasks(swarm_service) == 2
    assert PLAYBOOK.verify(params, ctx, result).ok


def test_swarm_step_is_clamped_and_reported(swarm_service: Any) -> None:
    """+5 on a 1..3 service goes to 3 and the result says it was clamped."""
    ctx = swarm_ctx(swarm_service.name)
    result = PLAYBOOK.run(
        ScaleServiceParams(service=swarm_service.name, step=5, wait_timeout_s=60), ctx
    )
    assert result.ok, result.summary
    assert result.detail["clamped"] is True
    assert "clamped to 3" in result.detail["clamp"]
    assert spec_replicas(swarm_service) == 3


def test_swarm_absolute_out_of_bounds_is_refused(swarm_service: Any) -> None:
    """An absolute count above max_replicas is refused and the service keeps its count."""
    ctx = swarm_ctx(swarm_service.name)
    with pytest.raises(TargetNotAllowed, match="outside the allowed range 1..3"):
        PLAYBOOK.run(ScaleServiceParams(service=swarm_service.name, replicas=7), ctx)
    with pytest.raises(TargetNotAllowed):
        PLAYBOOK.run(ScaleServiceParams(service=swarm_service.name, replicas=0), ctx)
    assert spec_replicas(swarm_service) == 1


def test_swarm_service_not_allowed_is_refused(swarm_service: Any) -> None:
    """A real service missing from targets.swarm_services is refused."""
    with pytest.raises(TargetNotAllowed, match="not in targets.swarm_services"):
        PLAYBOOK.run(ScaleServiceParams(service=swarm_service.name, replicas=2), swarm_ctx("other"))
    assert spec_replicas(swarm_service) == 1


def test_swarm_service_missing_is_a_playbook_error(docker_client: Any) -> None:
    """An allowlisted service that does not exist fails with a clear error."""
    name = f"rmtest-{RUN_ID}-absent"
    with pytest.raises(PlaybookError, match="not found"):
        PLAYBOOK.run(ScaleServiceParams(service=name, replicas=2), swarm_ctx(name))


def test_unreachable_daemon_is_an_adapter_error() -> None:
    """With no daemon behind the endpoint, plan() and run() raise AdapterError."""
    ctx = swarm_ctx("api", base_url="unix:///tmp/nonexistent.sock", timeout_s=2)
    params = ScaleServiceParams(service="api", replicas=2)
    with pytest.raises(AdapterError):
        PLAYBOOK.plan(params, ctx)
    with pytest.raises(AdapterError):
        PLAYBOOK.run(params, ctx)


@pytest.fixture
def compose(dockerf: DockerFactory) -> dict[str, Any]:
    """A one-replica Compose-style service: labelled container on the project's network."""
    project = f"rmtest{RUN_ID}{dockerf.name('p')[-4:]}"
    network = dockerf.network(f"{project}_default")
    labels = {
        COMPOSE_PROJECT: project,
        COMPOSE_SERVICE: "worker",
        COMPOSE_NUMBER: "1",
        "com.docker.compose.oneoff": "False",
    }
    first = dockerf.container(
        f"{project}-worker-1",
        labels=labels,
        network=network.name,
        environment={"ROLE": "worker"},
    )
    ctx = make_ctx(
        make_targets(
            compose_services=[
                {"project": project, "service": "worker", "min_replicas": 1, "max_replicas": 3}
            ]
        )
    )
    return {"project": project, "first": first, "ctx": ctx, "client": dockerf.client}


def replicas_of(client: Any, project: str) -> list[Any]:
    found = client.containers.list(
        all=True,
        filters={"label": [f"{COMPOSE_PROJECT}={project}", f"{COMPOSE_SERVICE}=worker"]},
    )
    return sorted(found, key=lambda c: c.name)


def test_compose_scale_up_copies_a_replica_then_down_removes_highest(
    compose: dict[str, Any],
) -> None:
    """Up to 3 creates -2 and -3 from -1's config on its network; down to 1 removes them."""
    project, ctx, client = compose["project"], compose["ctx"], compose["client"]
    up = ScaleServiceParams(
        kind="compose", project=project, service="worker", replicas=3, wait_timeout_s=30
    )
    result = PLAYBOOK.run(up, ctx)
    assert result.ok, result.summary
    made = replicas_of(client, project)
    assert [c.name for c in made] == [f"{project}-worker-{n}" for n in (1, 2, 3)]
    new = made[2]
    assert new.status == "running"
    assert new.labels[COMPOSE_NUMBER] == "3"
    assert "ROLE=worker" in new.attrs["Config"]["Env"]
    assert f"{project}_default" in new.attrs["NetworkSettings"]["Networks"]
    assert PLAYBOOK.verify(up, ctx, result).ok

    down = ScaleServiceParams(
        kind="compose", project=project, service="worker", step=-5, stop_timeout_s=1
    )
    result = PLAYBOOK.run(down, ctx)
    assert result.ok, result.summary
    assert result.detail["clamped"] is True
    assert [r["name"] for r in result.detail["removed"]] == [
        f"{project}-worker-3",
        f"{project}-worker-2",
    ]
    assert [c.id for c in replicas_of(client, project)] == [compose["first"].id]


def test_compose_service_not_allowed_is_refused(compose: dict[str, Any]) -> None:
    """Another service of an allowlisted project is still refused."""
    params = ScaleServiceParams(
        kind="compose", project=compose["project"], service="web", replicas=2
    )
    with pytest.raises(TargetNotAllowed, match="not in targets.compose_services"):
        PLAYBOOK.run(params, compose["ctx"])
