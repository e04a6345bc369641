"""The incidents JSON API and the operational endpoints."""

from __future__ import annotations

import re
from typing import Any

from receiver.web.requests import AuditQuery, IncidentsQuery
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
        assert r.status_code == 400 and r.json["error"] == "invalid_query", query
        assert r.json["detail"][0]["field"] == r.json["detail"][0]["loc"] == loc, query


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


def test_since_window_counts_back_from_the_service_clock(client: Any, clock: Any) -> None:
    """since=1h is an hour before the service's clock; an empty since is no filter."""
    open_incidents(client, 2)
    assert len(client.get("/api/v1/incidents?since=1h", headers=OP).json["incidents"]) == 2
    clock.advance(hours=2)
    assert client.get("/api/v1/incidents?since=1h", headers=OP).json["incidents"] == []
    assert len(client.get("/api/v1/incidents?since=&state=", headers=OP).json["incidents"]) == 2


def test_openapi_document_is_served_without_credentials(client: Any) -> None:
    """GET /api/v1/openapi.json is an OpenAPI 3.1 document with the auth schemes and errors."""
    r = client.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 200 and r.mimetype == "application/json"
    doc = r.json
    assert doc["openapi"].startswith("3.1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["webhookBearer"]["scheme"] == schemes["apiToken"]["scheme"] == "bearer"
    alerts = doc["paths"]["/api/v1/alerts"]["post"]
    assert {"webhookBearer": []} in alerts["security"]
    assert alerts["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Notification"}
    action = doc["paths"]["/api/v1/incidents/{incident_id}/actions"]["post"]
    assert {"400", "401", "403", "404", "409", "413", "415", "503"} <= set(action["responses"])
    assert action["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert {"apiToken": []} in action["security"]


def test_openapi_parameters_come_from_the_query_models(client: Any) -> None:
    """Every field of the query models is a documented parameter with its bounds."""
    doc = client.get("/api/v1/openapi.json").json
    for path, model in (("/api/v1/incidents", IncidentsQuery), ("/api/v1/audit", AuditQuery)):
        params = {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}
        assert set(params) == set(model.model_fields)
    incidents = {p["name"]: p for p in doc["paths"]["/api/v1/incidents"]["get"]["parameters"]}
    assert incidents["before"]["schema"]["maximum"] == 2**63 - 1
    assert incidents["limit"]["schema"]["maximum"] == 500
    assert incidents["state"]["explode"] is False


def _openapi_paths(rule: str) -> list[str]:
    """/api/v1/jobs/<id:job_id>/<any(approve, deny):decision> -> its OpenAPI paths."""
    m = re.search(r"<any\(([^)]*)\):\w+>", rule)
    rules = [rule[:m.start()] + c.strip() + rule[m.end():] for c in m.group(1).split(",")] \
        if m else [rule]
    return [re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", r) for r in rules]


def test_openapi_document_covers_every_json_api_route(client: Any) -> None:
    """Each /api/v1 route and method of the app is in the document, and nothing else is."""
    doc = client.get("/api/v1/openapi.json").json
    routed = set()
    for rule in client.application.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            for path in _openapi_paths(rule.rule):
                routed |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, m) for path, ops in doc["paths"].items() for m in ops}
    assert routed == documented
