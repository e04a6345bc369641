"""restart_container against the real dockerd."""

from __future__ import annotations

from typing import Any

import pytest

from playbooks.restart_container import RestartContainer, RestartContainerParams
from receiver.errors import AdapterError, PlaybookError, TargetNotAllowed
from tests.playbooks.conftest import DockerFactory, make_ctx, make_targets

PLAYBOOK = RestartContainer()
SELECT = "remediator.test.group"


def started_at(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def by_names(*names: str, **docker: Any) -> Any:
    return make_ctx(make_targets(containers={"names": list(names)}, docker=docker or {}))


def test_plan_lists_the_container_and_changes_nothing(dockerf: DockerFactory) -> None:
    """plan() names the container and its id, and the container is not restarted."""
    c = dockerf.container(dockerf.name("web"))
    before = started_at(c)
    plan = PLAYBOOK.plan(RestartContainerParams(name=c.name), by_names(c.name))
    assert plan.detail["containers"][0]["id"] == c.id
    assert c.name in plan.summary
    assert started_at(c) == before


def test_restart_by_name_restarts_and_verifies(dockerf: DockerFactory) -> None:
    """run() restarts the same container (new start time, same id) and verify() sees it run."""
    c = dockerf.container(dockerf.name("web"))
    before = started_at(c)
    ctx = by_names(c.name)
    params = RestartContainerParams(name=c.name, wait_timeout_s=20, stop_timeout_s=1)
    result = PLAYBOOK.run(params, ctx)
    assert result.ok, result.summary
    [entry] = result.detail["containers"]
    assert entry["id"] == c.id
    assert entry["started_at_after"] > entry["started_at_before"] == before
    assert entry["restart_count_after"] >= entry["restart_count_before"]
    assert started_at(c) == entry["started_at_after"]
    assert c.status == "running"
    assert PLAYBOOK.verify(params, ctx, result).ok


def test_restart_waits_for_the_healthcheck(dockerf: DockerFactory) -> None:
    """A container with a healthcheck is reported only once it is healthy again."""
    c = dockerf.container(
        dockerf.name("http"),
        command=["httpd", "-f", "-p", "8080", "-h", "/www"],
        healthcheck={
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
            "interval": 500_000_000,
            "timeout": 2_000_000_000,
            "retries": 3,
        },
    )
    params = RestartContainerParams(name=c.name, wait_timeout_s=30, stop_timeout_s=1)
    result = PLAYBOOK.run(params, by_names(c.name))
    assert result.ok, result.summary
    assert result.detail["containers"][0]["health"] == "healthy"
    c.reload()
    assert c.attrs["State"]["Health"]["Status"] == "healthy"


def test_restart_by_selector_touches_only_matching(dockerf: DockerFactory) -> None:
    """A selector restarts every container carrying its labels and leaves the others alone."""
    group = dockerf.name("grp")
    a = dockerf.container(dockerf.name("a"), labels={SELECT: group})
    b = dockerf.container(dockerf.name("b"), labels={SELECT: group})
    other = dockerf.container(dockerf.name("c"), labels={SELECT: "other"})
    other_before = started_at(other)
    ctx = make_ctx(make_targets(containers={"labels": [{SELECT: group}]}))
    params = RestartContainerParams(selector={SELECT: group}, wait_timeout_s=20, stop_timeout_s=1)
    result = PLAYBOOK.run(params, ctx)
    assert result.ok
    assert sorted(e["id"] for e in result.detail["containers"]) == sorted([a.id, b.id])
    assert started_at(other) == other_before


def test_name_allowed_through_labels_is_looked_up(dockerf: DockerFactory) -> None:
    """A name not listed but carrying allowlisted labels passes; an id prefix never does."""
    group = dockerf.name("grp")
    c = dockerf.container(dockerf.name("lbl"), labels={SELECT: group})
    ctx = make_ctx(make_targets(containers={"labels": [{SELECT: group}]}))
    PLAYBOOK.check_allowed(RestartContainerParams(name=c.name), ctx)
    with pytest.raises(TargetNotAllowed, match="no container of that name"):
        PLAYBOOK.check_allowed(RestartContainerParams(name=c.id[:12]), ctx)


def test_container_not_allowed_is_refused(dockerf: DockerFactory) -> None:
    """A real container missing from the allowlist is refused and not restarted."""
    c = dockerf.container(dockerf.name("web"))
    before = started_at(c)
    with pytest.raises(TargetNotAllowed, match="is not allowed by targets.containers"):
        PLAYBOOK.run(RestartContainerParams(name=c.name), by_names("somebody-else"))
    assert started_at(c) == before


def test_selector_wider_than_allowlist_is_refused(dockerf: DockerFactory) -> None:
    """A selector the allowlist does not cover is refused before any container is found."""
    ctx = make_ctx(make_targets(containers={"labels": [{SELECT: "x", "tier": "web"}]}))
    with pytest.raises(TargetNotAllowed, match="label selector"):
        PLAYBOOK.run(RestartContainerParams(selector={SELECT: "x"}), ctx)


def test_too_many_matches_restart_nothing(dockerf: DockerFactory) -> None:
    """More containers than max_containers: refused, and none is restarted."""
    group = dockerf.name("many")
    made = [dockerf.container(dockerf.name(f"m{i}"), labels={SELECT: group}) for i in range(3)]
    before = [started_at(c) for c in made]
    ctx = make_ctx(make_targets(containers={"labels": [{SELECT: group}]}))
    with pytest.raises(PlaybookError, match="more than max_containers=2"):
        PLAYBOOK.run(RestartContainerParams(selector={SELECT: group}, max_containers=2), ctx)
    assert [started_at(c) for c in made] == before


def test_container_gone_is_a_playbook_error(dockerf: DockerFactory) -> None:
    """An allowlisted container that no longer exists fails with a clear error."""
    name = dockerf.name("gone")
    c = dockerf.container(name)
    c.remove(force=True)
    with pytest.raises(PlaybookError, match="not found"):
        PLAYBOOK.run(RestartContainerParams(name=name), by_names(name))


def test_unreachable_daemon_is_an_adapter_error() -> None:
    """A Docker endpoint with no daemon behind it raises AdapterError, from plan and run."""
    ctx = by_names("web1", base_url="unix:///tmp/nonexistent.sock", timeout_s=2)
    with pytest.raises(AdapterError, match="unreachable"):
        PLAYBOOK.plan(RestartContainerParams(name="web1"), ctx)
    with pytest.raises(AdapterError):
        PLAYBOOK.run(RestartContainerParams(name="web1"), ctx)


def test_dry_run_returns_the_plan_and_restarts_nothing(dockerf: DockerFactory) -> None:
    """With ctx.dry_run, run() reports the plan and the container keeps its start time."""
    c = dockerf.container(dockerf.name("dry"))
    before = started_at(c)
    ctx = make_ctx(make_targets(containers={"names": [c.name]}), dry_run=True)
    result = PLAYBOOK.run(RestartContainerParams(name=c.name), ctx)
    assert result.detail["dry_run"] is True
    assert started_at(c) == before
