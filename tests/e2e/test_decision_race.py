"""People deciding at the same instant decide once: one closing decision, at most one run
(counted in remediator's timeline and in the Docker daemon's own event log), no 5xx, and a
409 naming the winner for everyone else.

One ``remediator serve`` (several gunicorn workers and the embedded worker) per backend,
shared by the trials; each trial opens its own incident and job on a container of its own.
The requests are sent by threads released by one barrier, each with its own operator token.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from tests.e2e.conftest import (
    FINAL_JOB_STATES,
    PREFIX,
    STOPS_FAST,
    Remediator,
    Stack,
    auth_headers,
    wait_for,
)
from tests.factories import make_alert, make_notification
from tests.support import http

pytestmark = pytest.mark.slow

PEOPLE = 20
TRIALS = 10
GUNICORN_WORKERS = 3
ALERT = "DecisionRace"


@dataclass
class Race:
    """A running receiver for the trials, the operators' tokens and what was started."""

    stack: Stack
    rcv: Remediator
    backend: str
    tokens: dict[str, str]  # user -> operator API token
    containers: list[Any] = field(default_factory=list)


def _configure(stack: Stack, store_url: str, tokens: dict[str, str]) -> Path:
    rules = [{
        "name": "restart-after-approval",
        "match": {"alertname": ALERT},
        "playbook": "restart_container",
        "params": {"name": "{{ labels.container }}", "stop_timeout_s": 5},
        "approval": {"mode": "required"},
        "guards": {"cooldown": "0s"},
    }]
    path = stack.receiver_config(
        store_url, rules=rules, targets={"containers": {"patterns": [f"{PREFIX}-race-*"]}},
        remediation={"poll_interval": "500ms"},
    )
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg.setdefault("server", {})["workers"] = GUNICORN_WORKERS
    for i, (user, token) in enumerate(tokens.items()):
        env = f"RACE_OPERATOR_TOKEN_{i:02d}"
        stack.env[env] = token
        cfg["people"]["users"][user] = {"groups": ["oncall"]}
        cfg["people"]["api_tokens"][f"op-{user}"] = {"token": f"env:{env}", "user": user,
                                                    "scope": "operator"}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def race(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         docker_client: docker.DockerClient) -> Iterator[Race]:
    tmp = tmp_path_factory.mktemp(f"race-{request.param}")
    stack = Stack(tmp, docker_client)
    try:
        url = stack.database() if request.param == "postgres" else f"sqlite:///{tmp}/race.db"
        tokens = {f"op{i:02d}": f"race-{uuid.uuid4().hex}" for i in range(PEOPLE)}
        rcv = stack.serve(_configure(stack, url, tokens), worker=True)
        yield Race(stack, rcv, request.param, tokens)
        stack.assert_clean_logs()
    finally:
        stack.close()


@dataclass
class Trial:
    incident_id: int
    job_id: int
    container: Any
    answers: list[tuple[str, str, int, dict[str, Any]]]  # user, decision, status, body


def _open_job(race: Race, trial: int) -> tuple[int, int, Any]:
    """A new container, an alert for it, and the job parked for approval."""
    name = race.stack.name(f"race-{trial}")
    container = race.stack.container(name, STOPS_FAST)
    race.containers.append(container)
    body = make_notification(
        [make_alert(alertname=ALERT, labels={"container": name, "instance": name},
                    starts_at=datetime.now(UTC) - timedelta(minutes=1))],
        group_key=f'{{}}:{{alertname="{ALERT}", container="{name}"}}',
    )
    status, raw = http("POST", race.rcv.webhook_url, body=body,
                       headers=auth_headers(race.rcv.token), timeout=30)
    assert status == 200, raw[:500]
    incident_id = int(json.loads(raw)["incident_id"])

    def parked() -> int | None:
        jobs = race.rcv.api(f"/api/v1/incidents/{incident_id}")["jobs"]
        return jobs[0]["id"] if jobs and jobs[0]["state"] == "awaiting_approval" else None

    job_id = wait_for(parked, 30, f"job of incident {incident_id} to await approval")
    return incident_id, job_id, container


def _decide_at_once(race: Race, job_id: int, decisions: list[str]) -> list[tuple[str, str, int,
                                                                                 dict[str, Any]]]:
    """One request per operator, all released by one barrier."""
    users = list(race.tokens)[: len(decisions)]
    answers: list[tuple[str, str, int, dict[str, Any]]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(decisions))

    def send(user: str, decision: str) -> None:
        start.wait(timeout=30)
        status, raw = http("POST", f"{race.rcv.url}/api/v1/jobs/{job_id}/{decision}",
                           body={"reason": f"{decision} by {user} in a race"},
                           headers=auth_headers(race.tokens[user]), timeout=60)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw[:300].decode(errors="replace")}
        with lock:
            answers.append((user, decision, status, parsed))

    threads = [threading.Thread(target=send, args=(u, d))
               for u, d in zip(users, decisions, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a request thread hung"
    return answers


def _check_trial(race: Race, trial: Trial) -> str:
    """Assert one decision and at most one run inside remediator; return the decision."""
    statuses = Counter(status for _, _, status, _ in trial.answers)
    assert not [a for a in trial.answers if a[2] >= 500], (
        f"5xx answers: {[a for a in trial.answers if a[2] >= 500]}")
    assert statuses[200] == 1 and statuses[409] == len(trial.answers) - 1, trial.answers
    winner, decision, _, won = next(a for a in trial.answers if a[2] == 200)
    assert won["state"] == ("queued" if decision == "approve" else "denied")

    def final() -> dict[str, Any] | None:
        detail: dict[str, Any] = race.rcv.api(f"/api/v1/incidents/{trial.incident_id}")
        return detail if detail["jobs"][0]["state"] in FINAL_JOB_STATES else None

    detail = wait_for(final, 60, f"job {trial.job_id} to finish")
    (job,) = detail["jobs"]
    (approval,) = detail["approvals"]
    expected = "approved" if decision == "approve" else "denied"
    assert approval["state"] == expected and approval["decided_by"] == winner
    assert [v["approver"] for v in approval["votes"]] == [winner]  # losers' votes not counted
    kinds = Counter(e["kind"] for e in detail["timeline"])
    assert kinds["job_approved"] + kinds["job_denied"] == 1, kinds
    assert kinds[f"job_{expected}"] == 1
    assert kinds["job_started"] == (1 if decision == "approve" else 0), kinds
    assert job["state"] == ("succeeded" if decision == "approve" else "denied"), job
    for user, _, status, body in trial.answers:
        if status == 409:
            assert body["error"] == "not_waiting", body
            assert f"by {winner} at " in body["detail"], body
            assert user != winner
    return decision


def _run(race: Race, decisions: list[str]) -> Counter[str]:
    since = time.time()
    trials = []
    for n in range(TRIALS):
        incident_id, job_id, container = _open_job(race, n)
        answers = _decide_at_once(race, job_id, decisions)
        trials.append(Trial(incident_id, job_id, container, answers))
        _check_trial(race, trials[-1])
    outcomes = Counter(_check_trial(race, t) for t in trials)
    # Counted on the real system: Docker's own event log, over the whole scenario.
    ids = [t.container.id for t in trials]
    restarts = Counter(e["id"] for e in race.stack.events(ids, "restart", since=since))
    for t in trials:
        approved = next(a for a in t.answers if a[2] == 200)[1] == "approve"
        assert restarts[t.container.id] == (1 if approved else 0), (
            f"{race.backend}: container of job {t.job_id} restarted "
            f"{restarts[t.container.id]} times")
    print(f"{race.backend}: {TRIALS} trials of {len(decisions)} concurrent decisions: "
          f"{dict(outcomes)}; restarts {sum(restarts.values())}")
    return outcomes


def test_twenty_approvals_by_twenty_people_approve_and_run_once(race: Race) -> None:
    """Twenty operators approving one job at the same instant: one counted approval, one
    run (one job_started, one Docker restart), nineteen 409s naming the approver, no 5xx."""
    outcomes = _run(race, ["approve"] * PEOPLE)
    assert outcomes == {"approve": TRIALS}


def test_ten_approvals_racing_ten_denials_decide_once(race: Race) -> None:
    """Ten approvals racing ten denials: exactly one of them decides; an approved job runs
    once, a denied one never; everyone else gets a 409 naming the winner; no 5xx."""
    decisions = ["approve", "deny"] * (PEOPLE // 2)
    outcomes = _run(race, decisions)
    assert sum(outcomes.values()) == TRIALS
