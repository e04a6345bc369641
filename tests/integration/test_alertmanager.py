"""The webhook protocol end to end: real Alertmanager 0.25 processes deliver to a real
``remediator serve`` (gunicorn), on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import make_notification
from tests.integration.conftest import (
    Alertmanager,
    Receiver,
    amtool,
    metric_sum,
    wait_until,
)
from tests.support import free_port, http

pytestmark = pytest.mark.slow

# The example routes with group_interval 30s: a resolved alert is sent at the group's next
# flush, at most 30s after the first one.
RESOLVE_TIMEOUT = 50.0
# Cluster peers wait position * peer_timeout before checking the gossiped notification
# log and sending. With 0s all three flush at once, before any gossip: the concurrent
# duplicate delivery that HA makes normal, and the hardest case for the receiver.
PEER_TIMEOUT = "0s"
CLUSTER_FLAGS = [
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    f"--cluster.peer-timeout={PEER_TIMEOUT}",
    "--cluster.settle-timeout=10s",
]
SERVER_ERRORS = ("store_error", "store_unavailable", "unhandled_error", "Traceback")


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def only_incident(receiver: Receiver) -> dict[str, Any] | None:
    listed = receiver.api("/api/v1/incidents")["incidents"]
    if not listed:
        return None
    assert len(listed) == 1, listed
    detail: dict[str, Any] = receiver.api(f"/api/v1/incidents/{listed[0]['id']}")
    return detail


def assert_no_server_errors(receiver: Receiver) -> None:
    """Every webhook request was answered 2xx/4xx by the app, none 5xx or crashed."""
    m = receiver.metrics()
    handled = metric_sum(m, "remediator_webhook_duration_seconds_count")
    accepted = metric_sum(m, "remediator_notifications_received_total")
    rejected = metric_sum(m, "remediator_notifications_rejected_total")
    assert handled == accepted + rejected, (handled, accepted, rejected)
    log = receiver.log()
    assert not [e for e in SERVER_ERRORS if e in log], log[-4000:]


def test_firing_then_resolved_opens_and_resolves_one_incident(
    receiver: Receiver, start_alertmanager: Any
) -> None:
    """An alert added with amtool opens a P0 incident through a real Alertmanager, and its
    expiry's resolved notification resolves it, always with the bearer token required."""
    am: Alertmanager = start_alertmanager(receiver.webhook_url)
    now = datetime.now(UTC)
    # A start older than group_wait makes Alertmanager flush the new group at once; the
    # end falls before the next flush (group_interval later), which sends it resolved.
    starts, ends = now - timedelta(minutes=1), now + timedelta(seconds=6)
    amtool(
        am,
        "alert",
        "add",
        "AppDown",
        "severity=critical",
        "container=web1",
        f"--start={rfc3339(starts)}",
        f"--end={rfc3339(ends)}",
    )

    incident = wait_until(lambda: only_incident(receiver), 20, "the incident")
    # remediator.example.yml's first severity rule ("outage": critical and *Down) wins
    # over the label map's critical -> P1.
    assert incident["severity"] == "P0"
    assert incident["severity_reason"].startswith("outage ")
    assert incident["state"] == "open"
    assert incident["resolved_at"] is None
    assert incident["group_labels"] == {"alertname": "AppDown"}
    [alert] = incident["alerts"]
    assert alert["labels"] == {"alertname": "AppDown", "severity": "critical", "container": "web1"}
    assert alert["status"] == "firing"
    assert parse_time(alert["starts_at"]) == starts.replace(microsecond=0)
    assert alert["deliveries"] == 1

    resolved = wait_until(
        lambda: (i := only_incident(receiver)) and i["state"] == "resolved" and i,
        RESOLVE_TIMEOUT,
        "the resolved notification to resolve the incident",
    )
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] is not None
    assert parse_time(resolved["resolved_at"]) >= parse_time(resolved["opened_at"])
    [alert] = resolved["alerts"]
    assert alert["status"] == "resolved"
    assert alert["resolved_at"] is not None
    assert parse_time(alert["ends_at"]) == ends.replace(microsecond=0)
    kinds = [e["kind"] for e in resolved["timeline"]]
    assert kinds == ["opened", "alerts_firing", "alerts_resolved", "resolved"]
    assert receiver.query("SELECT status, deliveries FROM notifications ORDER BY id") == [
        ("firing", 1),
        ("resolved", 1),
    ]

    # Alertmanager sent the token: nothing was refused, and the count below can move.
    m = receiver.metrics()
    assert metric_sum(m, "remediator_notifications_rejected_total", reason="unauthorized") == 0
    assert metric_sum(m, "remediator_notifications_received_total", status="firing") == 1
    assert metric_sum(m, "remediator_notifications_received_total", status="resolved") == 1
    assert_no_server_errors(receiver)

    code, _ = http("POST", receiver.webhook_url, body=make_notification())
    assert code == 401
    code, _ = http(
        "POST",
        receiver.webhook_url,
        body=make_notification(),
        headers={"Authorization": "Bearer not-the-token"},
    )
    assert code == 401
    assert receiver.get("/api/v1/incidents", who="anonymous")[0] == 401
    # The webhook's token is Alertmanager's only: it does not open the JSON API.
    assert receiver.get("/api/v1/incidents", who="webhook")[0] == 401
    m = receiver.metrics()
    assert metric_sum(m, "remediator_notifications_rejected_total", reason="unauthorized") == 2
    assert receiver.query("SELECT count(*) FROM notifications") == [(2,)]


def test_ha_cluster_duplicates_collapse_into_one_incident(
    receiver: Receiver, start_alertmanager: Any
) -> None:
    """Three clustered Alertmanagers given the same alerts yield one incident and one episode
    per alert, however many of the peers deliver the group."""
    ports = [free_port() for _ in range(3)]
    ams: list[Alertmanager] = [
        start_alertmanager(
            receiver.webhook_url,
            cluster_port=port,
            peers=[p for p in ports if p != port],
            cluster_flags=CLUSTER_FLAGS,
        )
        for port in ports
    ]

    def cluster_ready() -> bool:
        states = [am.status()["cluster"] for am in ams]
        return all(s["status"] == "ready" and len(s["peers"]) == 3 for s in states)

    wait_until(cluster_ready, 20, "the three Alertmanagers to form a settled cluster")

    starts = datetime.now(UTC).replace(microsecond=0)  # recent: group_wait (10s) applies
    instances = ["web1:9100", "web2:9100", "web3:9100"]
    alerts = [
        {
            "labels": {"alertname": "AppDown", "severity": "critical", "instance": inst},
            "annotations": {"summary": f"web down on {inst}"},
            "startsAt": rfc3339(starts),
            "endsAt": rfc3339(starts + timedelta(minutes=10)),
        }
        for inst in instances
    ]
    for am in ams:
        am.post_alerts(alerts)

    def delivered() -> float:
        return sum(
            metric_sum(am.metrics(), "alertmanager_notifications_total", integration="webhook")
            for am in ams
        )

    wait_until(delivered, 30, "a webhook delivery from the cluster")
    # Let every peer finish sending (or skip, having seen another peer's log entry).
    time.sleep(2)
    sent = delivered()
    failed = sum(
        metric_sum(am.metrics(), "alertmanager_notifications_failed_total", integration="webhook")
        for am in ams
    )
    assert failed == 0
    assert 1 <= sent <= 3

    incident = only_incident(receiver)
    assert incident is not None
    assert incident["severity"] == "P0"
    assert incident["state"] == "open"
    assert len(incident["alerts"]) == 3
    assert sorted(a["labels"]["instance"] for a in incident["alerts"]) == instances
    assert len({a["fingerprint"] for a in incident["alerts"]}) == 3
    assert {parse_time(a["starts_at"]) for a in incident["alerts"]} == {starts}
    # Each delivery carried the whole group: every episode counts every delivery.
    assert [a["deliveries"] for a in incident["alerts"]] == [sent] * 3
    assert receiver.query("SELECT count(*), sum(deliveries) FROM notifications") == [(1, sent)]
    assert receiver.query("SELECT count(*) FROM alerts") == [(3,)]
    assert receiver.query("SELECT count(*) FROM incidents") == [(1,)]

    m = receiver.metrics()
    assert metric_sum(m, "remediator_notifications_received_total") == sent
    assert metric_sum(m, "remediator_alerts_received_total") == 3 * sent
    assert metric_sum(m, "remediator_incidents_opened_total") == 1
    assert metric_sum(m, "remediator_notifications_rejected_total") == 0
    assert_no_server_errors(receiver)
    print(f"{receiver.backend}: {int(sent)} delivery(ies) from 3 peers")
