"""A worker process killed with SIGKILL in the middle of a playbook: after its lease runs out,
an idempotent job is re-run by another worker, and a non-idempotent one is escalated, never
re-run. Real processes, a real container, a real PostgreSQL session."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql

from tests.conftest import PG_DSN, pg_url
from tests.e2e.conftest import FINAL_JOB_STATES, Remediator, Stack, auth_headers, wait_for
from tests.factories import make_alert, make_notification
from tests.support import http

pytestmark = pytest.mark.slow

LEASE = {"lease": "3s", "poll_interval": "500ms"}
STOP_TIMEOUT_S = 8
"""The container ignores SIGTERM, so each restart waits this long before Docker's SIGKILL."""


def fire(rcv: Remediator, alertname: str, labels: dict[str, str]) -> int:
    """Deliver one firing alert to the receiver; the incident's id."""
    body = make_notification(
        [make_alert(alertname=alertname, labels=labels,
                    starts_at=datetime.now(UTC) - timedelta(seconds=30))],
        group_key=f'{{}}:{{alertname="{alertname}"}}',
    )
    status, raw = http("POST", rcv.webhook_url, body=body, headers=auth_headers(rcv.token))
    assert status == 200, raw
    incident: int = json.loads(raw)["incident_id"]
    return incident


def only_job(rcv: Remediator) -> dict[str, Any]:
    rows = rcv.query("SELECT id, state, attempts, lease_owner, reason FROM jobs")
    assert len(rows) == 1, rows
    return dict(zip(("id", "state", "attempts", "lease_owner", "reason"), rows[0], strict=True))


def started(rcv: Remediator) -> dict[str, Any] | None:
    """The job, once it is running and its job_started event is written (the playbook runs)."""
    job = only_job(rcv)
    n = rcv.query("SELECT count(*) FROM incident_events WHERE kind = 'job_started'")[0][0]
    return job if job["state"] == "running" and n == 1 else None


def timeline(rcv: Remediator, incident: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = rcv.api(f"/api/v1/incidents/{incident}")["timeline"]
    return events


def finished(rcv: Remediator, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = only_job(rcv)
        return job if job["state"] in FINAL_JOB_STATES else None

    result: dict[str, Any] = wait_for(done, timeout, "the job to finish", interval=0.2)
    return result


def test_killed_worker_idempotent_restart_is_requeued_and_completes(stack: Stack) -> None:
    """A restart_container job whose worker is SIGKILLed mid-restart is interrupted when its
    lease runs out, re-queued, and completed by another worker; the container restarted.

    What is guaranteed, and asserted: the job ran exactly twice (attempts 2, two claims by
    the two workers, two job_started), succeeded, and the timeline holds job_interrupted and
    job_requeued; Docker completed between one and two restart calls, at least one of them
    after the re-run started (the re-run's own), so never more than one per attempt. Whether
    the first attempt's restart counts separately is up to dockerd: the killed worker had
    already sent it (Docker's SIGTERM 'kill' event is seen before the kill), dockerd finishes
    it without its client, and the re-run's restart usually lands while it is still waiting
    out the stop timeout, which Docker answers by merging both into one stop/start (two
    'restart' events, one 'start').
    """
    name = stack.name("stubborn")
    container = stack.container(name, ["sleep", "3600"])  # PID 1 without a TERM handler
    before = stack.started_at(container)
    rule = {
        "name": "restart-app", "match": {"alertname": "AppDown"},
        "playbook": "restart_container",
        "params": {"name": "{{ labels.container }}", "stop_timeout_s": STOP_TIMEOUT_S},
        "approval": {"mode": "auto"}, "guards": {"cooldown": "0s"},
    }
    config = stack.receiver_config(stack.database(), rules=[rule],
                                   targets={"containers": {"names": [name]}}, remediation=LEASE)
    rcv = stack.serve(config, worker=False)
    first = stack.worker(config, threads=1)
    since = time.time()
    incident = fire(rcv, "AppDown", {"container": name, "instance": name})

    job = wait_for(lambda: started(rcv), 20, "the job to start", interval=0.1)
    stack.first_event([container.id], "kill", since=since, timeout=15)  # Docker sent SIGTERM
    first.kill9()
    killed_at = time.time()
    lease_owner = only_job(rcv)["lease_owner"]
    assert only_job(rcv)["state"] == "running" and f":{first.pid}:" in lease_owner

    second = stack.worker(config, threads=1)
    job = finished(rcv, 45)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2

    events = timeline(rcv, incident)
    kinds = Counter(e["kind"] for e in events)
    assert kinds["job_claimed"] == 2 and kinds["job_started"] == 2
    assert kinds["job_interrupted"] == 1 and kinds["job_requeued"] == 1
    assert kinds["job_succeeded"] == 1 and kinds["escalated"] == 0
    claims = [e["detail"]["worker"] for e in events if e["kind"] == "job_claimed"]
    assert f":{first.pid}:" in claims[0] and f":{second.pid}:" in claims[1]
    interrupted = next(e for e in events if e["kind"] == "job_interrupted")
    assert datetime.fromisoformat(interrupted["at"]).timestamp() > killed_at
    rerun_at = datetime.fromisoformat(
        [e for e in events if e["kind"] == "job_started"][1]["at"]).timestamp()

    restarts = stack.events([container.id], "restart", since=since)
    starts = stack.events([container.id], "start", since=since)
    assert 1 <= len(restarts) <= 2, restarts
    assert any(e["timeNano"] / 1e9 >= rerun_at for e in restarts)
    assert 1 <= len(starts) <= len(restarts)
    assert stack.started_at(container) != before
    container.reload()
    assert container.status == "running"
    assert rcv.api(f"/api/v1/incidents/{incident}")["state"] == "mitigated"
    print(f"docker restart events: {len(restarts)}, start events: {len(starts)}")
    stack.assert_clean_logs()


STUBBORN_FUNCTION = """
CREATE FUNCTION e2e_stubborn_sleep(total float8) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => total);
    cancels integer := 0;
BEGIN
    WHILE clock_timestamp() < deadline LOOP
        BEGIN
            PERFORM pg_sleep(0.2);
        EXCEPTION WHEN query_canceled THEN
            cancels := cancels + 1;
            PERFORM set_config('application_name', 'e2e-cancelled-' || cancels, false);
        END;
    END LOOP;
END
$$
"""
"""pg_sleep that survives pg_cancel_backend (as a query stuck in a non-interruptible wait
would) and shows each cancel it swallowed in its application_name; only
pg_terminate_backend ends it."""


def session_state(role: str) -> tuple[int, str] | None:
    """(pid, application_name) of the role's active query, if it has run for over 1.5 s."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE usename = %s"
            " AND state = 'active' AND clock_timestamp() - query_start > interval '1.5 s'",
            (role,),
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def test_killed_worker_kill_query_is_escalated_not_rerun(stack: Stack) -> None:
    """A kill_query job whose worker is SIGKILLed during its grace period is escalated when
    its lease runs out and never re-run: one attempt, one job_started, and the query it had
    cancelled is neither cancelled again nor terminated.

    The session runs pg_sleep inside a function that swallows cancels, so that the playbook
    (cancel, then wait grace_s before terminating) is still running when the worker dies.
    """
    suffix = uuid.uuid4().hex[:8]
    db, role = f"e2e_kq_{suffix}", f"e2e_kq_{suffix}"

    def slow_session() -> None:
        dsn = psycopg.conninfo.make_conninfo(pg_url(db), user=role, application_name="e2e-slow")
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT e2e_stubborn_sleep(120)")
        except psycopg.Error:
            pass  # terminated at teardown (or, wrongly, by a second run: asserted below)

    session = threading.Thread(target=slow_session, daemon=True)
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        stack.defer(lambda: _drop_role(role))
        stack.defer(lambda: session.join(10) if session.is_alive() else None)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        stack.defer(lambda: _drop_database(db))  # first: it ends the session
    with psycopg.connect(pg_url(db), autocommit=True) as conn:
        conn.execute(STUBBORN_FUNCTION)
    session.start()
    pid, app = wait_for(lambda: session_state(role), 15, "the slow query to run")
    assert app == "e2e-slow"

    stack.env["E2E_KQ_DSN"] = pg_url(db)
    rule = {
        "name": "kill-slow-query", "match": {"alertname": "SlowQuery"},
        "playbook": "kill_query",
        "params": {"target": "kq", "database": db, "user": role, "min_duration_s": 1,
                   "grace_s": 120, "max_queries": 1},
        "approval": {"mode": "auto"}, "guards": {"cooldown": "0s"},
    }
    targets = {"postgres": {"kq": {"dsn": "env:E2E_KQ_DSN", "databases": [db],
                                   "roles": [role]}}}
    config = stack.receiver_config(stack.database(), rules=[rule], targets=targets,
                                   remediation=LEASE)
    rcv = stack.serve(config, worker=False)
    first = stack.worker(config, threads=1)
    incident = fire(rcv, "SlowQuery", {"instance": "kq"})

    wait_for(lambda: started(rcv), 20, "the job to start", interval=0.1)
    wait_for(lambda: session_state(role) == (pid, "e2e-cancelled-1"), 15,
             "the playbook's cancel (it is now in its grace period)")
    first.kill9()
    killed_at = time.time()
    stack.worker(config, threads=1)

    job = finished(rcv, 30)
    assert job["state"] == "escalated", job
    assert "interrupted" in job["reason"]
    time.sleep(2.0)  # four more polls of the live worker: it must not pick the job up again
    job = only_job(rcv)
    assert job["state"] == "escalated" and job["attempts"] == 1

    events = timeline(rcv, incident)
    kinds = Counter(e["kind"] for e in events)
    assert kinds["job_claimed"] == 1 and kinds["job_started"] == 1
    assert kinds["job_interrupted"] == 1 and kinds["escalated"] == 1
    assert kinds["job_requeued"] == 0 and kinds["job_succeeded"] == 0
    escalated = next(e for e in events if e["kind"] == "escalated")
    assert "not idempotent" in escalated["message"]
    assert datetime.fromisoformat(escalated["at"]).timestamp() > killed_at
    # The query the first attempt cancelled once is still running, untouched since.
    assert session_state(role) == (pid, "e2e-cancelled-1")
    stack.assert_clean_logs()


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _drop_role(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
