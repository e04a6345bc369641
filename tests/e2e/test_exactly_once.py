"""Exactly-once remediation across HA duplicates, concurrent deliveries and two worker processes,
counted on the real system (Docker's event log), not in remediator's own records."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import (
    FINAL_JOB_STATES,
    PEERS,
    STOPS_FAST,
    Remediator,
    Stack,
    auth_headers,
    wait_for,
)
from tests.factories import make_alert, make_notification
from tests.support import http

pytestmark = pytest.mark.slow

CONTAINERS = 4
COPIES = 10
"""Each container's alert is delivered this many times, spread over the three peers."""
THREADS = 8


def restart_rule() -> dict[str, Any]:
    return {
        "name": "restart-app",
        "match": {"alertname": "AppDown"},
        "playbook": "restart_container",
        "params": {"name": "{{ labels.container }}", "stop_timeout_s": 5},
        "approval": {"mode": "auto"},
        "guards": {"cooldown": "0s"},
    }


def post_concurrently(rcv: Remediator, bodies: list[dict[str, Any]]) -> list[int]:
    """POST every body to the webhook from THREADS threads released at the same instant."""
    statuses: list[int] = []
    start = threading.Barrier(THREADS)

    def send(chunk: list[dict[str, Any]]) -> None:
        start.wait(timeout=30)
        for body in chunk:
            statuses.append(http("POST", rcv.webhook_url, body=body,
                                 headers=auth_headers(rcv.token), timeout=30)[0])

    threads = [threading.Thread(target=send, args=(bodies[i::THREADS],)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a sender thread hung"
    return statuses


def test_duplicate_burst_restarts_each_container_exactly_once(stack: Stack) -> None:
    """A concurrent burst of HA-duplicated notifications, served by two worker processes,
    restarts each container exactly once (Docker's events) through one succeeded job each."""
    names = [stack.name(f"app{i}") for i in range(CONTAINERS)]
    containers = [stack.container(n, STOPS_FAST) for n in names]
    before = {c.id: stack.started_at(c) for c in containers}
    config = stack.receiver_config(
        stack.database(), rules=[restart_rule()], targets={"containers": {"names": names}},
        remediation={"poll_interval": "500ms"},
    )
    rcv = stack.serve(config, worker=False)
    workers = [stack.worker(config, threads=2), stack.worker(config, threads=2)]

    starts = datetime.now(UTC) - timedelta(minutes=1)
    bodies = [
        make_notification(
            [make_alert(labels={"container": n, "instance": n}, starts_at=starts)],
            group_key=f'{{}}:{{alertname="AppDown", container="{n}"}}',
            external_url=PEERS[k % len(PEERS)],
        )
        for n in names for k in range(COPIES)
    ]
    random.Random(7).shuffle(bodies)
    since = time.time()
    statuses = post_concurrently(rcv, bodies)
    assert Counter(statuses) == {200: CONTAINERS * COPIES}

    def all_final() -> bool:
        rows = rcv.query("SELECT state FROM jobs")
        return len(rows) == CONTAINERS and all(r[0] in FINAL_JOB_STATES for r in rows)

    wait_for(all_final, 60, "every job to finish", interval=0.2)
    until = time.time()
    assert all(w.running() for w in workers), stack.logs()

    jobs = rcv.query("SELECT params->>'name', state, attempts FROM jobs ORDER BY 1")
    assert jobs == [(n, "succeeded", 1) for n in sorted(names)]
    started = rcv.query("SELECT job_id, count(*) FROM incident_events"
                        " WHERE kind = 'job_started' GROUP BY job_id")
    assert sorted(n for _, n in started) == [1] * CONTAINERS
    deliveries = rcv.query("SELECT labels->>'container', deliveries FROM alerts ORDER BY 1")
    assert deliveries == [(n, COPIES) for n in sorted(names)]
    inbox = rcv.query("SELECT count(*), sum(deliveries) FROM notifications")
    assert inbox == [(CONTAINERS, CONTAINERS * COPIES)]  # the peers' copies are one delivery

    restarts = stack.events([c.id for c in containers], "restart", since=since, until=until)
    assert Counter(e["id"] for e in restarts) == {c.id: 1 for c in containers}
    assert all(stack.started_at(c) != before[c.id] for c in containers)
    stack.assert_clean_logs()
    claimers = rcv.query("SELECT DISTINCT detail->>'worker' FROM incident_events"
                         " WHERE kind = 'job_claimed'")
    print(f"jobs claimed by {len(claimers)} worker(s): {sorted(w for (w,) in claimers)}")
