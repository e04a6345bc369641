"""The ``deploys`` diagnostic on the real Swarm and a real git repository made here: a service
deployed on v1 and updated to v2 is reported with v2's update time and v1 as its previous
image, a container with its creation time and recorded previous image, the repository's last
commits; the post-mortem flags the deploy as just before the alert; and a name outside the
allowlist (whatever an alert says) never reaches Docker."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.adapters import AdapterFactory
from receiver.adapters.deploys import parse_time
from receiver.config.deploys import DeploysProbe
from receiver.diagnostics import list_evidence, run_due
from receiver.diagnostics.deploys import probe_deploys
from receiver.diagnostics.probes import ProbeEnv
from receiver.errors import TargetNotAllowed
from receiver.incidents import postmortem
from receiver.remediation.targets import TargetsConfig
from receiver.store import Store, open_store
from tests.conftest import Clock
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.git_repo import make_git_repo
from tests.playbooks.conftest import IMAGE, OWNER_LABEL, RUN_ID, DockerFactory
from tests.support import wait_until

FAST = {"parallelism": 0, "delay": 0, "monitor": 200_000_000, "order": "stop-first"}


@pytest.fixture
def tags(docker_client: docker.DockerClient) -> Any:
    """Two local tags of the test image (v1, v2), removed afterwards (no pulls)."""
    image = docker_client.images.get(IMAGE)
    repo = "local/busybox"
    names = [f"deploys-{RUN_ID}-v1", f"deploys-{RUN_ID}-v2"]
    for name in names:
        image.tag(repo, name)
    yield [f"{repo}:{n}" for n in names]
    for name in names:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"{repo}:{name}", noprune=True)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = open_store(f"sqlite:///{tmp_path}/remediator.db")
    s.migrate()
    yield s
    s.close()


def deploy_v1_then_v2(dockerf: DockerFactory, v1: str, v2: str) -> Any:
    service = dockerf.client.services.create(
        v1, ["sleep", "3600"], name=dockerf.name("dep"), labels={OWNER_LABEL: RUN_ID},
        stop_signal="SIGKILL", update_config=docker.types.UpdateConfig(**FAST))
    dockerf.services.append(service)
    wait_until(lambda: _running(service), 60, "v1 to run")
    api = dockerf.client.api
    attrs = api.inspect_service(service.id)
    template = attrs["Spec"]["TaskTemplate"]
    template["ContainerSpec"]["Image"] = v2
    api.update_service(service.id, attrs["Version"]["Index"], task_template=template,
                       fetch_current_spec=True)
    wait_until(lambda: _running(service) and _state(service) in ("completed", None), 60,
               "v2 to run")
    return service


def _state(service: Any) -> str | None:
    service.reload()
    return (service.attrs.get("UpdateStatus") or {}).get("State")


def _running(service: Any) -> bool:
    return any(t["Status"]["State"] == "running"
               for t in service.tasks(filters={"desired-state": "running"}))


@pytest.mark.slow
def test_deploys_reports_the_update_previous_image_and_commits(
        dockerf: DockerFactory, tags: list[str], tmp_path: Path, store: Store) -> None:
    """v2's update time and v1 as previous image for the service; the container's creation
    time and the previous image its label records; the last two commits; and the post-mortem
    flags the service's deploy as within the window before the alert started."""
    v1, v2 = tags
    service = deploy_v1_then_v2(dockerf, v1, v2)
    service.reload()
    updated = parse_time(service.attrs["UpdatedAt"])
    container = dockerf.container(dockerf.name("c"),
                                  labels={"remediator.previous-image": v1})
    subjects = make_git_repo(tmp_path / "repo", ["first", "second: <b>bold</b> | pipe",
                                                 "third `tick` #1"])
    check = {"name": "recent-deploys", "timeout": "20s", "deploys": {
        "services": ["{{ labels.service }}"], "containers": ["{{ labels.container }}"],
        "git": {"path": str(tmp_path / "repo"), "commits": 2}}}
    clock = Clock()
    kit = Kit(store, clock, [], diagnostics={"checks": [check]}, targets={
        "swarm_services": {service.name: {"max_replicas": 3}},
        "containers": {"names": [container.name]}})
    start = datetime.now(UTC) + timedelta(seconds=1)
    alert = make_alert(labels={"service": service.name, "container": container.name},
                       starts_at=start)
    inc = kit.fire(make_notification([alert], group_key="deploys")).incident_id
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    (evidence,) = list_evidence(store, inc)
    assert evidence.kind == "deploys" and evidence.outcome == "ok", evidence.summary
    by_kind = {d["kind"]: d for d in evidence.detail["deploys"]}
    svc = by_kind["service"]
    assert svc["name"] == service.name and svc["image"].startswith(v2)
    assert svc["previous_image"].startswith(v1)
    assert parse_time(svc["updated_at"]) == updated
    ctr = by_kind["container"]
    assert ctr["previous_image"] == v1 and ctr["image"] == IMAGE
    assert parse_time(ctr["updated_at"]) is not None
    assert [c["subject"] for c in evidence.detail["git"]["commits"]] == subjects[:2]
    assert evidence.detail["deploy_window_s"] == 7200

    text = postmortem.render(store, kit.config, inc)
    assert text is not None
    section = text.split("## Recent deploys", 1)[1].split("## Similar past incidents", 1)[0]
    assert "**Deployed before the alert started:** service" in section
    assert service.name.replace("-", "\\-") in section or service.name in section
    assert "\\<b\\>" in section and "<b>" not in section  # commit subject escaped


class RefusingFactory(AdapterFactory):
    """Fails the test if a probe asks for Docker: the allowlist must refuse first."""

    def deploys(self, endpoint: Any) -> Any:
        raise AssertionError("Docker was asked about a name outside the allowlist")


@given(st.text(min_size=1, max_size=80))
@example("web; rm -rf /")
@example("../../etc")
@example("web*")
@settings(max_examples=60, deadline=None)
def test_a_service_name_outside_the_allowlist_never_reaches_docker(value: str) -> None:
    """Whatever a label says, a service not in targets.swarm_services is refused (by the
    name check or the allowlist) before any Docker call."""
    targets = TargetsConfig.model_validate({"swarm_services": {"web": {"max_replicas": 2}}})
    if value == "web":
        return
    probe = DeploysProbe.model_validate({"services": [value]}) if "{{" not in value else None
    if probe is None:
        return
    env = ProbeEnv(targets, RefusingFactory())
    with pytest.raises((TargetNotAllowed, ValueError)):
        probe_deploys(probe, 5.0, env)


def test_a_missing_repository_is_an_error_finding_not_a_crash(tmp_path: Path) -> None:
    """git on a path that is no repository ends ``error`` with git's own message."""
    probe = DeploysProbe.model_validate({"git": {"path": str(tmp_path / "nope")}})
    finding = probe_deploys(probe, 5.0, ProbeEnv(TargetsConfig(), RefusingFactory()))
    assert finding.outcome == "error"
    assert "git log in" in finding.summary and "error" in finding.detail["git"]
