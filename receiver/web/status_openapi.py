"""The status page's operator API in the OpenAPI document (``/api/v1/status/...``), built with
the document's own helpers from the request models of :mod:`receiver.web.status_requests`.
(The public ``/status.json`` is outside ``/api/v1``: it has Statuspage's summary shape.)"""

from __future__ import annotations

from typing import Any

from receiver.web.openapi import OPERATOR_AUTH, WRITE_ERRORS, _body, _id_param, _ok, _responses
from receiver.web.status_requests import (
    StatusDecisionBody,
    StatusOverrideBody,
    StatusUpdateBody,
)

_POSTED = {
    "type": "object", "required": ["update_id", "incident_id", "state", "published", "status"],
    "properties": {"update_id": {"type": "integer"}, "incident_id": {"type": "integer"},
                   "state": {"enum": ["published", "pending"]},
                   "published": {"type": "boolean"},
                   "status": {"enum": ["investigating", "identified", "monitoring",
                                       "resolved"]}},
}
_DECIDED = {
    "type": "object", "required": ["update_id", "state", "decided_by"],
    "properties": {"update_id": {"type": "integer"},
                   "state": {"enum": ["published", "rejected"]},
                   "decided_by": {"type": ["string", "null"]}},
}
_OVERRIDE = {
    "type": "object", "required": ["component", "override"],
    "properties": {"component": {"type": "string"},
                   "override": {"type": ["string", "null"]},
                   "cleared": {"type": "boolean"}},
}


def status_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The operator API's paths; the request models are added to ``components``."""
    decision = _body(StatusDecisionBody, components, required=False)
    update = [_id_param("update_id", "the public update's id")]

    def decide(op: str, summary: str) -> dict[str, Any]:
        return {"post": {
            "operationId": op, "tags": ["status page"], "summary": summary,
            "security": OPERATOR_AUTH, "parameters": update, "requestBody": decision,
            "responses": _responses(_ok("decided", _DECIDED), WRITE_ERRORS)}}

    return {
        "/api/v1/status/incidents/{incident_id}/updates": {"post": {
            "operationId": "postStatusUpdate", "tags": ["status page"],
            "summary": "write a public update of an incident (operator scope); the first "
                       "one names the public title and may wait for a second operator",
            "security": OPERATOR_AUTH,
            "parameters": [_id_param("incident_id", "the incident's id")],
            "requestBody": _body(StatusUpdateBody, components, required=True),
            "responses": _responses(_ok("written", _POSTED), WRITE_ERRORS)}},
        "/api/v1/status/updates/{update_id}/approve": decide(
            "approveStatusUpdate", "publish a waiting first update (another operator)"),
        "/api/v1/status/updates/{update_id}/reject": decide(
            "rejectStatusUpdate", "reject a waiting first update (another operator)"),
        "/api/v1/status/overrides": {"post": {
            "operationId": "overrideComponent", "tags": ["status page"],
            "summary": "pin a component's status, or (status null) let it follow its "
                       "incidents again (operator scope)",
            "security": OPERATOR_AUTH,
            "requestBody": _body(StatusOverrideBody, components, required=True),
            "responses": _responses(_ok("saved", _OVERRIDE), WRITE_ERRORS)}},
    }
