"""GET /api/v1/openapi.json: the JSON API as an OpenAPI 3.1 document.

Request schemas are generated from the pydantic models that the handlers parse with
(receiver/web/requests.py and the webhook's receiver/intake/alertmanager.py), so the document
cannot drift from what is enforced. Paths and responses are the table below, the response
shapes and security schemes the hand-written ones of :mod:`receiver.web.openapi_schemas`.
The document is built once per process and needs no authentication: it holds no
configuration and no data.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from receiver.intake.alertmanager import Notification
from receiver.web.openapi_schemas import (
    ERRORS,
    OBJECT,
    OPERATOR_AUTH,
    READ_ERRORS,
    REF,
    RESPONSE_SCHEMAS,
    SECURITY_SCHEMES,
    WEBHOOK_AUTH,
    WRITE_ERRORS,
    ref,
)
from receiver.web.requests import (
    MAX_ID,
    AuditQuery,
    ControlBody,
    DecisionBody,
    IncidentActionBody,
    IncidentsQuery,
    QueryModel,
)

bp = Blueprint("openapi", __name__)

def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any], errors: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in errors:
        entry: dict[str, Any] = {"description": ERRORS[code], "content": _json(ref("Error"))}
        if code == "400":
            # The HTTP server refuses a request line or headers past its limits (4094 bytes
            # a line) itself, before the application, with a short HTML page.
            entry["description"] += "; text/html when the request line or headers are too long"
            entry["content"]["text/html"] = {"schema": {"type": "string"}}
        if code == "401":
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if code == "503":
            entry["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        out[code] = entry
    return out


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the ``null`` branch."""
    schema = {k: v for k, v in schema.items() if k not in ("title", "default")}
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        schema.pop("anyOf")
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    return schema


def query_parameters(model: type[QueryModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters for a query model's fields."""
    props = model.model_json_schema(ref_template=REF)["properties"]
    params = []
    for name, field in model.model_fields.items():
        schema = _without_null(props[name])
        # An empty value is the same as leaving the parameter out (as filter forms send).
        param: dict[str, Any] = {"name": name, "in": "query", "required": False,
                                 "allowEmptyValue": True, "schema": schema}
        if field.description:
            param["description"] = field.description
            schema.pop("description", None)
        if field.default is not None:
            schema["default"] = field.default
        if name in model.LISTS:
            param.update(style="form", explode=False)
        params.append(param)
    return params


def _body(model: type[BaseModel], components: dict[str, Any], *,
          required: bool) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF, by_alias=True)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"required": required, "content": _json(ref(model.__name__))}


def _id_param(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": what,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (the same for every instance of this version)."""
    from receiver import __version__

    components: dict[str, Any] = copy.deepcopy(RESPONSE_SCHEMAS)
    incident = [_id_param("incident_id", "the incident's id")]
    job = [_id_param("job_id", "the job's id")]
    decision_body = _body(DecisionBody, components, required=False)
    control_body = _body(ControlBody, components, required=False)
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi", "summary": "this document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": _json(OBJECT)}},
        }},
        "/api/v1/alerts": {"post": {
            "operationId": "receiveAlerts", "tags": ["webhook"],
            "summary": "Alertmanager webhook (v4); alias POST /alertmanager",
            "security": WEBHOOK_AUTH,
            "requestBody": _body(Notification, components, required=True),
            "responses": _responses(_ok("stored (also for a duplicate delivery)",
                                        ref("Accepted")),
                                    ("400", "401", "413", "415", "503")),
        }},
        "/api/v1/csrf-token": {"get": {
            "operationId": "csrfToken", "tags": ["session"],
            "summary": "the X-CSRF-Token for API writes by a session or proxy user",
            "security": OPERATOR_AUTH,
            "responses": _responses(_ok("the token (null for an API token)", ref("CsrfToken")),
                                    ("401", "503")),
        }},
        "/api/v1/incidents": {"get": {
            "operationId": "listIncidents", "tags": ["incidents"],
            "summary": "incidents, newest first", "security": OPERATOR_AUTH,
            "parameters": query_parameters(IncidentsQuery),
            "responses": _responses(_ok("a page of incidents", ref("IncidentList")),
                                    READ_ERRORS),
        }},
        "/api/v1/incidents/{incident_id}": {"get": {
            "operationId": "getIncident", "tags": ["incidents"],
            "summary": "one incident: alerts, timeline, jobs, approvals, evidence",
            "security": OPERATOR_AUTH, "parameters": incident,
            "responses": _responses(_ok("the incident", ref("IncidentDetail")),
                                    ("401", "404", "503")),
        }},
        "/api/v1/incidents/{incident_id}/actions": {"post": {
            "operationId": "incidentAction", "tags": ["incidents"],
            "summary": "a lifecycle action (operator scope)", "security": OPERATOR_AUTH,
            "parameters": incident,
            "requestBody": _body(IncidentActionBody, components, required=True),
            "responses": _responses(
                _ok("the incident after the action (diagnose: requested)",
                    {"anyOf": [ref("Incident"), ref("Requested")]}),
                WRITE_ERRORS),
        }},
        "/api/v1/incidents/{incident_id}/postmortem.md": {"get": {
            "operationId": "postmortem", "tags": ["incidents"],
            "summary": "the post-mortem draft", "security": OPERATOR_AUTH,
            "parameters": incident,
            "responses": {
                **_responses({"description": "Markdown",
                              "content": {"text/markdown": {"schema": {"type": "string"}}}},
                             ("401", "404", "503")),
            },
        }},
        "/api/v1/jobs/{job_id}/approve": {"post": {
            "operationId": "approveJob", "tags": ["jobs"],
            "summary": "approve a waiting job (operator scope)", "security": OPERATOR_AUTH,
            "parameters": job, "requestBody": decision_body,
            "responses": _responses(_ok("the vote counted", ref("JobDecision")),
                                    WRITE_ERRORS),
        }},
        "/api/v1/jobs/{job_id}/deny": {"post": {
            "operationId": "denyJob", "tags": ["jobs"],
            "summary": "deny a waiting job; a reason is required", "security": OPERATOR_AUTH,
            "parameters": job, "requestBody": decision_body,
            "responses": _responses(_ok("denied", ref("JobDecision")), WRITE_ERRORS),
        }},
        "/api/v1/controls/pause": {"post": {
            "operationId": "pause", "tags": ["controls"],
            "summary": "the kill switch, or one rule (operator scope)",
            "security": OPERATOR_AUTH, "requestBody": control_body,
            "responses": _responses(_ok("paused", ref("Control")), WRITE_ERRORS),
        }},
        "/api/v1/controls/resume": {"post": {
            "operationId": "resume", "tags": ["controls"],
            "summary": "undo a pause (operator scope)",
            "security": OPERATOR_AUTH, "requestBody": control_body,
            "responses": _responses(_ok("resumed", ref("Control")), WRITE_ERRORS),
        }},
        "/api/v1/audit": {"get": {
            "operationId": "audit", "tags": ["audit"],
            "summary": "audit entries in chain order, filtered; JSON, JSONL or CSV",
            "security": OPERATOR_AUTH, "parameters": query_parameters(AuditQuery),
            "responses": _responses({
                "description": "a page of entries",
                "content": {**_json(ref("AuditPage")),
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}}},
            }, READ_ERRORS),
        }},
        "/api/v1/audit/verify": {"get": {
            "operationId": "auditVerify", "tags": ["audit"],
            "summary": "walk and check the audit chain", "security": OPERATOR_AUTH,
            "responses": _responses(_ok("the result", ref("AuditVerify")),
                                    ("401", "503")),
        }},
    }
    from receiver.web.status_openapi import status_paths  # deferred: it imports this module

    paths.update(status_paths(components))
    from receiver.web.undo import undo_paths  # deferred: it imports this module

    paths.update(undo_paths(components))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "remediator",
            "version": __version__,
            "description": "Alertmanager webhook receiver and guarded remediation. Errors are "
                           '`{"error": code, "detail": ...}`; a 400 lists each bad field.',
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
