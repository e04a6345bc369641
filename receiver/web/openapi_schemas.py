"""The hand-written part of the OpenAPI document (see :mod:`receiver.web.openapi`): the
response shapes, what each error status means, and the security schemes."""

from __future__ import annotations

from typing import Any

from receiver.incidents.states import STATES

REF = "#/components/schemas/{model}"
SEVERITIES = ["P0", "P1", "P2", "P3"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = _nullable(TIME)
OBJECT = {"type": "object"}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "the parameter or dotted body path"},
            "message": {"type": "string"},
            "loc": {"type": "string", "description": "same as field (older name)"},
            "msg": {"type": "string", "description": "same as message (older name)"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "a machine-readable code",
                      "examples": ["invalid_query", "invalid_payload", "not_found"]},
            "detail": {"description": "what is wrong: a sentence, or one entry per bad field",
                       "anyOf": [{"type": "string"},
                                 {"type": "array", "items": ref("FieldError")},
                                 {"type": "object"}]},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"const": "accepted"},
            "notification_id": {"type": ["integer", "null"]},
            "duplicate": {"type": "boolean"},
            "incident_id": {"type": ["integer", "null"]},
            "severity": {"type": ["string", "null"]},
        },
    },
    "Incident": {
        "type": "object",
        "required": ["id", "state", "severity", "opened_at"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "key": {"type": "string"},
            "state": {"enum": list(STATES)},
            "severity": {"enum": SEVERITIES},
            "severity_reason": {"type": ["string", "null"]},
            "title": {"type": ["string", "null"]},
            "receiver": {"type": ["string", "null"]},
            "group_key": {"type": ["string", "null"]},
            "group_labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "opened_at": TIME,
            "ack_due_at": NULLABLE_TIME,
            "acknowledged_at": NULLABLE_TIME,
            "mitigated_at": NULLABLE_TIME,
            "resolved_at": NULLABLE_TIME,
            "closed_at": NULLABLE_TIME,
            "assignee": {"type": ["string", "null"]},
        },
    },
    "IncidentList": {
        "type": "object",
        "required": ["incidents"],
        "properties": {
            "incidents": {"type": "array", "items": ref("Incident")},
            "next": {"type": "string", "description": "the next (older) page"},
        },
    },
    "IncidentDetail": {
        "allOf": [ref("Incident")],
        "type": "object",
        "required": ["alerts", "timeline", "jobs", "approvals", "evidence"],
        "properties": {
            "alerts": {"type": "array", "items": OBJECT},
            "timeline": {"type": "array", "items": OBJECT},
            "jobs": {"type": "array", "items": OBJECT},
            "approvals": {"type": "array", "items": OBJECT},
            "evidence": {"type": "array", "items": OBJECT},
            "postmortem": {"type": ["string", "null"]},
            "similar": {"type": "array", "items": ref("SimilarIncident"),
                        "description": "the most similar past incidents, best first"},
        },
    },
    "SimilarIncident": {
        "type": "object",
        "required": ["id", "state", "score", "similarity", "shared", "fixed_by", "postmortem"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "title": {"type": "string"},
            "severity": {"enum": SEVERITIES},
            "state": {"enum": list(STATES)},
            "opened_at": TIME,
            "resolved_at": NULLABLE_TIME,
            "score": {"type": "number", "minimum": 0, "maximum": 1,
                      "description": "similarity times the recency decay"},
            "similarity": {"type": "number", "minimum": 0, "maximum": 1},
            "shared": {"type": "array", "items": {"type": "string"},
                       "description": "alert names and label pairs both incidents have"},
            "resolved_by": {"type": ["string", "null"]},
            "fixed_by": {
                "type": "object",
                "properties": {
                    "job_id": {"type": ["integer", "null"]},
                    "playbook": {"type": ["string", "null"]},
                    "rule": {"type": ["string", "null"]},
                    "approved_by": {"type": ["string", "null"]},
                    "person": {"type": ["string", "null"]},
                    "summary": {"type": "string"},
                },
            },
            "time_to_resolve_s": {"type": ["integer", "null"]},
            "postmortem": {"type": "string", "description": "path of its post-mortem draft"},
        },
    },
    "CsrfToken": {
        "type": "object", "required": ["csrf_token"],
        "properties": {"csrf_token": {"type": ["string", "null"]},
                       "user": {"type": ["string", "null"]},
                       "via": {"type": ["string", "null"]}},
    },
    "Requested": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"const": "requested"}},
    },
    "JobDecision": {
        "type": "object", "required": ["job_id", "state"],
        "properties": {"job_id": {"type": "integer"}, "state": {"type": "string"}},
    },
    "Control": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"enum": ["paused", "resumed"]},
                       "rule": {"type": ["string", "null"]}},
    },
    "AuditEntry": {
        "type": "object",
        "required": ["seq", "at", "actor", "action"],
        "properties": {
            "id": {"type": "integer"},
            "seq": {"type": "integer"},
            "at": TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "subject": {"type": ["string", "null"]},
            "incident_id": {"type": ["integer", "null"]},
            "details": {"type": ["object", "null"]},
            "origin": {"type": ["object", "null"]},
            "prev_hash": {"type": ["string", "null"]},
            "hash": {"type": "string"},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["entries"],
        "properties": {
            "entries": {"type": "array", "items": ref("AuditEntry")},
            "next": {"type": "string", "description": "the next page"},
        },
    },
    "AuditVerify": {
        "type": "object",
        "required": ["ok", "checked"],
        "properties": {
            "ok": {"type": "boolean"},
            "checked": {"type": "integer"},
            "first_bad_seq": {"type": ["integer", "null"]},
            "problem": {"type": ["string", "null"]},
        },
    },
}

ERRORS = {
    "400": "bad input; `detail` names each bad field",
    "401": "missing or invalid credentials",
    "403": "the credentials may not do this (a read-scoped token, a CSRF failure)",
    "404": "no such resource",
    "409": "the state does not allow it (already decided, a forbidden transition)",
    "413": "the body exceeds server.max_body_bytes",
    "415": "the body is not application/json",
    "503": "the store cannot be reached or failed; retry",
}
READ_ERRORS = ("400", "401", "503")
WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "503")

OPERATOR_AUTH: list[dict[str, list[str]]] = [
    {"apiToken": []}, {"sessionCookie": [], "csrfHeader": []},
]
WEBHOOK_AUTH: list[dict[str, list[str]]] = [{"webhookBearer": []}, {"webhookBasic": []}]

SECURITY_SCHEMES = {
    "webhookBearer": {"type": "http", "scheme": "bearer",
                      "description": "the webhook token (auth.bearer_token), as Alertmanager "
                                     "sends it"},
    "webhookBasic": {"type": "http", "scheme": "basic",
                     "description": "HTTP basic for the webhook (auth.basic)"},
    "apiToken": {"type": "http", "scheme": "bearer",
                 "description": "an API token from people.api_tokens; scope `read` may only "
                                "GET, scope `operator` may also act"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "remediator_session",
                      "description": "the session of a logged-in operator (or the trusted "
                                     "proxy's identity header)"},
    "csrfHeader": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                   "description": "with a session, every POST carries the session's CSRF "
                                  "token"},
}
