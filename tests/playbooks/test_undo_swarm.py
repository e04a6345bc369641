"""Undo jobs of the real scale_service on the real Swarm, through the worker and both store
backends: a temporary scale-up ends 10 minutes after the incident resolved (a movable
clock), and a scale-up whose verification failed is put back before the escalation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from playbooks import load_registry
from receiver.config import Config, parse_config
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.remediation.worker import Worker
from receiver.store import Store
from tests.conftest import Clock
from tests.factories import make_alert, make_notification
from tests.playbooks.conftest import DockerFactory
from tests.playbooks.test_scale_service import running_tasks, spec_replicas
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def service(dockerf: DockerFactory) -> Any:
    created = dockerf.service(dockerf.name("undo-job"), replicas=1)
    wait_until(lambda: running_tasks(created) == 1, 60, "the service's first task")
    return created


def config_for(name: str, **rule: Any) -> Config:
    return parse_config({
        "data_dir": "/tmp/remediator-test-data",
        "rules": [{"name": "scale-up", "matchers": ['alertname="Overloaded"'],
                   "playbook": "scale_service", "approval": {"mode": "auto"},
                   "params": {"service": "{{ labels.service }}", "step": 1,
                              "wait_timeout_s": 60}, **rule}],
        "targets": {"swarm_services": {name: {"min_replicas": 1, "max_replicas": 3}}},
    })


def send(intake: Intake, name: str, status: str = "firing") -> None:
    body = make_notification([make_alert(labels={"alertname": "Overloaded", "service": name},
                                         status=status)], group_key=f"g-{name}")
    raw = json.dumps(body)
    intake.accept(Notification.model_validate_json(raw), raw)


def jobs(store: Store) -> list[Any]:
    with store.unit(write=False) as uow:
        return uow.jobs.for_incident(1)


def drain(worker: Worker) -> int:
    n = 0
    while worker.run_once():
        n += 1
    return n


def test_scale_up_ends_ten_minutes_after_the_incident_resolved(store: Store,
                                                               service: Any) -> None:
    """+1 on the alert; the incident resolves; at 9 minutes nothing happens, past 10 the
    worker's chores queue the undo once, it runs once, and the service is back to 1."""
    clock = Clock(datetime.now(UTC))
    config = config_for(service.name, undo={"when": "resolved", "after": "10m"})
    intake = Intake(config, store, clock)
    worker = Worker(config, store, clock=clock, worker_id="w1", registry=load_registry(),
                    sleep=lambda _s: None)
    send(intake, service.name)
    assert drain(worker) == 1
    assert spec_replicas(service) == 2
    clock.advance(minutes=2)
    send(intake, service.name, "resolved")
    clock.advance(minutes=9)
    worker.chores()
    assert drain(worker) == 0 and spec_replicas(service) == 2
    clock.advance(minutes=2)
    worker.chores()
    assert drain(worker) == 1
    assert spec_replicas(service) == 1
    wait_until(lambda: running_tasks(service) == 1, 60, "one task again")
    clock.advance(minutes=30)
    worker.chores()
    assert drain(worker) == 0
    done = jobs(store)
    assert [(j.state, j.undoes_job_id) for j in done] == [("succeeded", None),
                                                          ("succeeded", done[0].id)]
    assert done[1].result is not None
    assert done[1].result["verification"][0]["ok"] is True
    with store.unit(write=False) as uow:
        inc = uow.incidents.detail(1)
    assert inc is not None and inc.state == "resolved"
    kinds = [e.kind for e in inc.timeline]
    assert kinds.count("undo_requested") == 1


def test_a_failed_verification_scales_back_before_escalating(store: Store,
                                                              service: Any) -> None:
    """The alert is still firing after the scale-up: the undo is queued, then the job fails
    and escalates; the undo scales the service back to 1 and is not itself undone."""
    clock = Clock(datetime.now(UTC))
    config = config_for(service.name, undo={"when": "verification_failed"},
                        verify={"alert_resolved": {"within": "1s", "interval": "1s"}})
    intake = Intake(config, store, clock)
    worker = Worker(config, store, clock=clock, worker_id="w1", registry=load_registry(),
                    sleep=lambda _s: None)
    send(intake, service.name)
    assert drain(worker) == 2
    assert spec_replicas(service) == 1
    done = jobs(store)
    assert [(j.state, j.undoes_job_id) for j in done] == [("failed", None),
                                                          ("succeeded", done[0].id)]
    with store.unit(write=False) as uow:
        inc = uow.incidents.detail(1)
    assert inc is not None
    kinds = [e.kind for e in inc.timeline]
    assert kinds.index("undo_requested") < kinds.index("job_failed") < kinds.index("escalated")
    worker.chores()
    assert drain(worker) == 0 and len(jobs(store)) == 2
