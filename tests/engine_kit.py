"""A fake playbook for testing the engine's pure logic (guards, states, retries, leases).

The kit's config is validated against the kit's own registry, which holds only the fake.
By default the fake goes by ``restart_container`` (the figures of tests/test_postmortem_metrics
name it so); ``Kit(..., playbook=FakeAction())`` registers one under a name of its own. The
real playbooks are tested against real Docker, PostgreSQL and Redis in tests/playbooks and
tests/integration.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from playbooks.base import Plan, Playbook, PlaybookContext, Risk, RunResult, StrictParams
from receiver.config import parse_config
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.remediation.worker import Worker
from receiver.store import Store
from tests.conftest import Clock

TEST_CONFIG: dict[str, Any] = {"data_dir": "/tmp/remediator-test-data"}  # as make_config


class FakeParams(StrictParams):
    target: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    fail: bool = False
    risk: str = "low"
    count: int = Field(default=1, ge=1, le=100)


@dataclass
class FakePlaybook(Playbook[FakeParams]):
    name = "restart_container"
    Params = FakeParams
    idempotent: bool = True  # type: ignore[misc]
    calls: list[str] = field(default_factory=list)
    block: threading.Event | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def risk_for(self, params: FakeParams, ctx: PlaybookContext) -> Risk:
        return Risk(params.risk)

    def targets(self, params: FakeParams) -> list[str]:
        if params.count == 1:
            return [f"fake:{params.target}"]
        return [f"fake:{params.target}-{i}" for i in range(params.count)]

    def check_allowed(self, params: FakeParams, ctx: PlaybookContext) -> None:
        if params.target.startswith("forbidden"):
            raise TargetNotAllowed(f"{params.target} is not in the allowlist")

    def plan(self, params: FakeParams, ctx: PlaybookContext) -> Plan:
        return Plan(f"poke {params.target}", [f"poke {params.target}"], self.targets(params))

    def run(self, params: FakeParams, ctx: PlaybookContext) -> RunResult:
        self.started.set()
        if self.block is not None:
            self.block.wait(30)
        self.calls.append(params.target)
        if params.fail:
            raise PlaybookError(f"{params.target} did not come back")
        return RunResult(True, f"poked {params.target}", {"target": params.target})


@dataclass
class FakeAction(FakePlaybook):
    """The same fake under a name no built-in playbook has."""

    name = "fake_action"


def rule(name: str = "poke", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "matchers": ['alertname="AppDown"'],
        "playbook": "restart_container",
        "params": {"target": "{{ labels.container }}"},
    }
    base.update(over)
    return base


class Kit:
    def __init__(self, store: Store, clock: Clock, rules: list[dict[str, Any]], *,
                 playbook: FakePlaybook | None = None, **cfg: Any):
        self.store, self.clock = store, clock
        self.playbook = playbook if playbook is not None else FakePlaybook()
        self.registry: dict[str, Playbook[Any]] = {self.playbook.name: self.playbook}
        self.config = parse_config({**TEST_CONFIG, "rules": rules, **cfg},
                                   registry=self.registry)
        self.intake = Intake(self.config, store, clock)
        self.worker = self.new_worker("w1")

    def new_worker(self, wid: str) -> Worker:
        return Worker(self.config, self.store, clock=self.clock, worker_id=wid,
                      registry=self.registry, sleep=lambda _s: None)

    def fire(self, body: dict[str, Any]) -> Any:
        raw = json.dumps(body)
        return self.intake.accept(Notification.model_validate_json(raw), raw)

    def job(self, job_id: int) -> dict[str, Any]:
        from receiver.store import jobs

        with self.store.db.transaction(write=False) as tx:
            row = jobs.get(tx, job_id)
        assert row is not None
        return row

    def jobs(self) -> list[dict[str, Any]]:
        with self.store.db.transaction(write=False) as tx:
            return tx.fetchall("SELECT id, state, rule, reason, attempts FROM jobs ORDER BY id")

    def kinds(self, incident_id: int) -> list[str]:
        inc = self.store.get_incident(incident_id)
        assert inc is not None
        return [e["kind"] for e in inc["timeline"]]

    def drain(self) -> int:
        n = 0
        while self.worker.run_once():
            n += 1
        return n
