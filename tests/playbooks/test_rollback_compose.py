"""rollback_deployment (kind: compose) against the real dockerd: Compose-labelled replicas on
a v2 image that record the v1 image they replaced, recreated on v1. The two images are made
here from the local busybox image (``ENV VERSION=N``, no pull); each replica prints
``version=$VERSION`` at start, so its output says which image it runs."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import docker.errors
import pytest
from hypothesis import example, given

from playbooks.base import RunResult
from playbooks.rollback_deployment import RollbackDeployment, RollbackDeploymentParams
from receiver.adapters.docker import COMPOSE_NUMBER, COMPOSE_PROJECT, COMPOSE_SERVICE
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation.deploy_targets import ROLLED_BACK_FROM
from tests.playbooks.conftest import IMAGE, OWNER_LABEL, RUN_ID, DockerFactory, make_ctx
from tests.playbooks.conftest import make_targets as targets_of
from tests.playbooks.test_hostile_params import FAST, hostile, job_for
from tests.support import wait_until

PLAYBOOK = RollbackDeployment()
PREVIOUS = "remediator.previous-image"


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Local images v1, v2, v3 (busybox with ENV VERSION=N) and one whose entrypoint does
    not exist, by id; removed afterwards."""
    made: dict[str, str] = {}
    repo = f"rmtest-{RUN_ID}/app"
    changes = {version: [f"ENV VERSION={version}"] for version in ("1", "2", "3")}
    changes["broken"] = ['ENTRYPOINT ["/nonexistent"]']
    for version, change in changes.items():
        holder = docker_client.containers.create(IMAGE, ["true"], labels={OWNER_LABEL: RUN_ID})
        try:
            image = holder.commit(repository=repo, tag=f"v{version}", changes=change)
        finally:
            holder.remove(force=True)
        made[version] = str(image.id)
    yield made
    for image_id in made.values():
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image_id, force=True)


@pytest.fixture
def compose(dockerf: DockerFactory, images: dict[str, str]) -> dict[str, Any]:
    """A two-replica Compose-style service `web` deployed on v2, recording v1 as previous."""
    project = f"rmtest{RUN_ID}{uuid.uuid4().hex[:4]}"
    network = dockerf.network(f"{project}_default")
    for number in (1, 2):
        deploy_replica(dockerf.client, project, number, images["2"], images["1"], network.name)
    wait_until(lambda: versions(dockerf.client, project) == ["2", "2"], 30, "v2 replicas")
    return {"project": project, "network": network.name}


def deploy_replica(client: docker.DockerClient, project: str, number: int, image: str,
                   previous: str | None, network: str) -> Any:
    labels = {OWNER_LABEL: RUN_ID, COMPOSE_PROJECT: project, COMPOSE_SERVICE: "web",
              COMPOSE_NUMBER: str(number), "com.docker.compose.oneoff": "False"}
    if previous is not None:
        labels[PREVIOUS] = previous
    return client.containers.run(
        image, ["sh", "-c", "echo version=$VERSION; exec sleep 3600"],
        name=f"{project}-web-{number}", detach=True, labels=labels, network=network,
        environment={"ROLE": "web"}, stop_signal="SIGKILL",
    )


def replicas(client: docker.DockerClient, project: str) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": [
        f"{COMPOSE_PROJECT}={project}", f"{COMPOSE_SERVICE}=web"]})
    return sorted(found, key=lambda c: c.name)


def versions(client: docker.DockerClient, project: str) -> list[str]:
    """What each running replica printed at start, by name."""
    out = []
    for container in replicas(client, project):
        if container.status != "running":
            continue
        lines = container.logs().decode().splitlines()
        out.extend(line.split("=", 1)[1] for line in lines if line.startswith("version="))
    return out


def redeploy(client: docker.DockerClient, project: str, network: str, image: str,
             previous: str) -> None:
    """What `docker compose up` does on a new image: the replicas replaced by new ones."""
    for container in replicas(client, project):
        number = int(container.labels[COMPOSE_NUMBER])
        container.remove(force=True)
        deploy_replica(client, project, number, image, previous, network)


def ctx_for(project: str, **over: Any) -> Any:
    return make_ctx(targets_of(deployments={"compose_services": [
        {"project": project, "service": "web"}]}), **over)


def params(project: str, **over: Any) -> RollbackDeploymentParams:
    return RollbackDeploymentParams.model_validate(
        {"kind": "compose", "project": project, "service": "web", "wait_timeout_s": 30,
         "stop_timeout_s": 1, **over})


@pytest.mark.slow
def test_replicas_go_back_to_v1_a_second_rollback_is_refused_and_undo_rolls_forward(
    compose: dict[str, Any], docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    """v2 replicas recording v1: the rollback recreates both on v1 (their own env and
    network kept, v1's image env in force); a second rollback is refused; undo brings v2
    back."""
    project = compose["project"]
    ctx, p = ctx_for(project), params(project)
    plan = PLAYBOOK.plan(p, ctx)
    assert plan.detail["to"]["image_id"] == images["1"]
    assert versions(docker_client, project) == ["2", "2"]  # the plan changed nothing

    result = PLAYBOOK.run(p, ctx)
    assert result.ok, result.summary
    assert versions(docker_client, project) == ["1", "1"]
    after = replicas(docker_client, project)
    assert [c.name for c in after] == [f"{project}-web-1", f"{project}-web-2"]
    for container in after:
        assert container.image.id == images["1"]
        assert container.labels[ROLLED_BACK_FROM] == images["2"]
        assert container.labels[PREVIOUS] == images["2"]
        assert "ROLE=web" in container.attrs["Config"]["Env"]
        assert compose["network"] in container.attrs["NetworkSettings"]["Networks"]
    assert PLAYBOOK.verify(p, ctx, result).ok

    with pytest.raises(PlaybookError, match="on a rollback already"):
        PLAYBOOK.run(p, ctx)

    stored = RunResult.from_dict(json.loads(json.dumps(result.as_dict())))  # as the job keeps it
    undone = PLAYBOOK.undo(p, ctx, stored)
    assert undone.ok, undone.summary
    assert versions(docker_client, project) == ["2", "2"]
    assert not PLAYBOOK.verify(p, ctx, result).ok


@pytest.mark.slow
def test_refusals_leave_the_replicas_alone(
    compose: dict[str, Any], docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    """Older than max_age; a previous image that is not here; no previous image recorded;
    replicas on different images: each is refused and nothing is recreated."""
    project, network = compose["project"], compose["network"]
    ids = [c.id for c in replicas(docker_client, project)]
    later = ctx_for(project, clock=lambda: datetime.now(UTC) + timedelta(hours=25))
    with pytest.raises(PlaybookError, match="older than max_age"):
        PLAYBOOK.run(params(project), later)

    redeploy(docker_client, project, network, images["2"], "sha256:" + "0" * 64)
    with pytest.raises(PlaybookError, match="not present on this engine"):
        PLAYBOOK.run(params(project), ctx_for(project))

    first = replicas(docker_client, project)[0]
    first.remove(force=True)
    deploy_replica(docker_client, project, 1, images["2"], None, network)
    with pytest.raises(PlaybookError, match="no previous version recorded"):
        PLAYBOOK.run(params(project), ctx_for(project))

    redeploy(docker_client, project, network, images["2"], images["1"])
    second = replicas(docker_client, project)[1]
    second.remove(force=True)
    deploy_replica(docker_client, project, 2, images["3"], images["1"], network)
    with pytest.raises(PlaybookError, match="different images"):
        PLAYBOOK.run(params(project), ctx_for(project))
    assert ids != [c.id for c in replicas(docker_client, project)]  # redeploys happened
    assert sorted(versions(docker_client, project)) == ["2", "3"]


@pytest.mark.slow
def test_undo_refuses_after_a_later_deploy(
    compose: dict[str, Any], docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    """v2 -> rollback to v1 -> deploy v3: undo recreates nothing."""
    project = compose["project"]
    result = PLAYBOOK.run(params(project), ctx_for(project))
    assert result.ok, result.summary
    redeploy(docker_client, project, compose["network"], images["3"], images["1"])
    with pytest.raises(PlaybookError, match="changed since the rollback"):
        PLAYBOOK.undo(params(project), ctx_for(project), result)
    assert versions(docker_client, project) == ["3", "3"]


def test_compose_needs_its_own_allowlist_entry() -> None:
    """A compose service not in targets.deployments.compose_services is refused, and
    kind=compose needs a project."""
    ctx = make_ctx(targets_of(compose_services=[
        {"project": "shop", "service": "web", "max_replicas": 3}]))
    with pytest.raises(TargetNotAllowed, match="targets.deployments.compose_services"):
        PLAYBOOK.run(params("shop"), ctx)
    assert PLAYBOOK.targets(params("shop")) == ["compose_service:shop/web"]
    with pytest.raises(ValueError, match="project"):
        RollbackDeploymentParams.model_validate({"kind": "compose", "service": "web"})


@pytest.mark.slow
def test_a_replica_that_does_not_start_is_put_back(
    compose: dict[str, Any], docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    """The previous image cannot start: the first replica's old container is put back under
    its name and runs v2 again, the run stops there and says so (ok: false)."""
    project = compose["project"]
    redeploy(docker_client, project, compose["network"], images["2"], images["broken"])
    result = PLAYBOOK.run(params(project), ctx_for(project))
    assert not result.ok
    assert result.detail["replicas"] == []
    assert f"{project}-web-1" in (result.detail["error"] or "")
    assert [c.name for c in replicas(docker_client, project)] == [
        f"{project}-web-1", f"{project}-web-2"]
    # web-1 printed twice: at its first start and when it was started again
    wait_until(lambda: versions(docker_client, project) == ["2", "2", "2"], 30,
               "the old web-1 to run again")


ALLOWED = targets_of(deployments={"compose_services": [{"project": "shop", "service": "web"}]})


@FAST
@given(hostile("shop", "web", "SHOP", "shop2", "*"), hostile("web", "shop", "WEB", "*"))
@example("shop;rm", "web")
@example("shop", "web\n")
@example("*", "*")
@example("shop/web", "web")
def test_label_project_and_service_never_widen_the_allowlist(project: str, service: str) -> None:
    """A compose project and service from alert labels are refused unless they are exactly
    an allowlisted pair."""
    job = job_for("rollback_deployment",
                  {"kind": "compose", "project": "{{ labels.p }}", "service": "{{ labels.s }}"},
                  {"p": project, "s": service}, ALLOWED)
    if job is not None:
        assert (job.params.project, job.params.service) == ("shop", "web")
        assert job.playbook.targets(job.params) == ["compose_service:shop/web"]
