"""The incidents JSON API and the operational endpoints."""

from __future__ import annotations

from typing import Any

from tests.conftest import OP, READ, TOKEN
from tests.factories import make_alert, make_notification


def open_incidents(client: Any, n: int) -> list[int]:
    ids = []
    for i in range(n):
        sev = "critical" if i % 2 else "warning"
        r = client.post("/api/v1/alerts", json=make_notification(
            [make_alert(labels={"severity": sev, "instance": f"h{i}"})], group_key=f"g{i}"))
        ids.append(r.json["incident_id"])
    return ids


def test_list_requires_operator_auth(client: Any) -> None:
    """The incidents API refuses no credentials and the Alertmanager webhook token."""
    r = client.get("/api/v1/incidents", headers={"Authorization": ""})
    assert r.status_code == 401 and r.json["error"] == "unauthorized"
    r = client.get("/api/v1/incidents", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 401
    assert client.get("/api/v1/incidents", headers=READ).status_code == 200


def test_read_token_cannot_act(client: Any) -> None:
    """A read-scoped token is refused on every state change with 403."""
    r = client.post("/api/v1/alerts", json=make_notification())
    inc = r.json["incident_id"]
    act = client.post(f"/api/v1/incidents/{inc}/actions", json={"action": "acknowledge"},
                      headers=READ)
    assert act.status_code == 403
    assert client.get(f"/api/v1/incidents/{inc}", headers=OP).json["state"] == "open"
    ok = client.post(f"/api/v1/incidents/{inc}/actions", json={"action": "acknowledge"},
                     headers=OP)
    assert ok.status_code == 200 and ok.json["state"] == "acknowledged"


def test_list_pages_with_a_next_link(client: Any) -> None:
    """A full page carries a next link that returns the following, older incidents."""
    ids = open_incidents(client, 5)
    first = client.get("/api/v1/incidents?limit=2", headers=OP).json
    assert [i["id"] for i in first["incidents"]] == ids[::-1][:2]
    second = client.get(first["next"], headers=OP).json
    assert [i["id"] for i in second["incidents"]] == ids[::-1][2:4]


def test_list_filters_by_state_severity_and_since(client: Any, clock: Any) -> None:
    """Filters combine; severity accepts a comma list; since accepts a duration."""
    open_incidents(client, 4)
    p2 = client.get("/api/v1/incidents?severity=P2", headers=OP).json["incidents"]
    assert len(p2) == 2 and {i["severity"] for i in p2} == {"P2"}
    both = client.get("/api/v1/incidents?severity=P1,P2&state=open", headers=OP).json["incidents"]
    assert len(both) == 4
    assert client.get("/api/v1/incidents?state=resolved", headers=OP).json["incidents"] == []
    assert len(client.get("/api/v1/incidents?since=2026-03-02T09:59:00Z", headers=OP).json["incidents"]) == 4
    assert client.get("/api/v1/incidents?since=2026-03-02T10:01:00Z", headers=OP).json["incidents"] == []


def test_bad_query_parameters_get_400(client: Any) -> None:
    """Unknown states, bad limits and bad times are refused with the parameter named."""
    for query, loc in [("state=bogus", "state"), ("severity=P9", "severity"),
                       ("limit=0", "limit"), ("limit=abc", "limit"), ("since=yesterday", "since")]:
        r = client.get(f"/api/v1/incidents?{query}", headers=OP)
        assert r.status_code == 400 and r.json["detail"][0]["loc"] == loc, query


def test_detail_has_alerts_timestamps_and_deadline(client: Any) -> None:
    """The detail view lists alerts, the timeline and the acknowledge-by deadline."""
    r = client.post("/api/v1/alerts", json=make_notification([make_alert(labels={"container": "web1"})]))
    inc = client.get(f"/api/v1/incidents/{r.json['incident_id']}", headers=OP).json
    assert inc["severity"] == "P1" and inc["ack_due_at"] == "2026-03-02T11:00:00+00:00"
    assert inc["alerts"][0]["labels"]["container"] == "web1"
    assert inc["timeline"][0]["kind"] == "opened"


def test_unknown_incident_is_404_json(client: Any) -> None:
    """A missing incident answers 404 with a JSON error."""
    r = client.get("/api/v1/incidents/999999", headers=OP)
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_health_and_readiness(client: Any) -> None:
    """healthz is always ok; readyz names the reachable store."""
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert ready["status"] == "ok" and ready["store"] in {"sqlite", "postgres"}
