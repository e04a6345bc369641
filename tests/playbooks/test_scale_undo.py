"""scale_service's undo against the real Swarm: back to the recorded count, and only while the
service still has the count the run left."""

from __future__ import annotations

import json
from typing import Any

import pytest

from playbooks.base import RunResult
from playbooks.scale_service import ScaleService, ScaleServiceParams
from receiver.errors import PlaybookError, TargetNotAllowed
from tests.playbooks.conftest import DockerFactory, make_ctx, make_targets
from tests.playbooks.test_scale_service import running_tasks, spec_replicas
from tests.support import wait_until

PLAYBOOK = ScaleService()


@pytest.fixture
def service(dockerf: DockerFactory) -> Any:
    created = dockerf.service(dockerf.name("undo"), replicas=1)
    wait_until(lambda: running_tasks(created) == 1, 60, "the service's first task")
    return created


def ctx_for(name: str, lo: int = 1, hi: int = 3) -> Any:
    return make_ctx(make_targets(swarm_services={name: {"min_replicas": lo, "max_replicas": hi}}))


def test_undo_scales_back_to_the_recorded_count(service: Any) -> None:
    """+1 from 1 gives 2; undo plans and sets 1 again, with 1 task running."""
    ctx = ctx_for(service.name)
    params = ScaleServiceParams(service=service.name, step=1, wait_timeout_s=60)
    result = PLAYBOOK.run(params, ctx)
    assert result.ok and spec_replicas(service) == 2
    plan = PLAYBOOK.undo_plan(params, ctx, result)
    assert (plan.detail["current"], plan.detail["desired"]) == (2, 1)
    assert spec_replicas(service) == 2  # the plan changed nothing
    stored = RunResult.from_dict(json.loads(json.dumps(result.as_dict())))  # as the job keeps it
    undone = PLAYBOOK.undo(params, ctx, stored)
    assert undone.ok, undone.summary
    assert undone.detail["undo_of"] == 2
    assert spec_replicas(service) == 1
    wait_until(lambda: running_tasks(service) == 1, 60, "one task again")


def test_undo_refuses_when_the_count_changed_since(service: Any) -> None:
    """After the run someone scaled to 3: undo leaves 3 alone."""
    ctx = ctx_for(service.name)
    params = ScaleServiceParams(service=service.name, replicas=2, wait_timeout_s=60)
    result = PLAYBOOK.run(params, ctx)
    assert result.ok
    service.reload()
    service.scale(3)
    with pytest.raises(PlaybookError, match="changed since"):
        PLAYBOOK.undo(params, ctx, result)
    assert spec_replicas(service) == 3


def test_undo_stays_inside_the_bounds(service: Any) -> None:
    """A recorded count now outside the bounds (they were narrowed) is refused."""
    params = ScaleServiceParams(service=service.name, replicas=2, wait_timeout_s=60)
    result = PLAYBOOK.run(params, ctx_for(service.name))
    assert result.ok
    with pytest.raises(TargetNotAllowed, match="outside the allowed range 2..3"):
        PLAYBOOK.undo(params, ctx_for(service.name, lo=2), result)
    assert spec_replicas(service) == 2


def test_nothing_to_undo_when_the_run_changed_nothing(service: Any) -> None:
    """A run that found the count already right leaves undo nothing to do."""
    ctx = ctx_for(service.name)
    params = ScaleServiceParams(service=service.name, replicas=1, wait_timeout_s=60)
    result = PLAYBOOK.run(params, ctx)
    assert PLAYBOOK.undo(params, ctx, result).detail == {"changed": False}
    assert spec_replicas(service) == 1
