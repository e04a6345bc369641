"""JSON API: incidents list (filters, paging) and incident detail."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Response, jsonify, request

from receiver.web.errors import ApiError
from receiver.web.operators import (
    browser_write_checks,
    csrf_token_for,
    current_operator,
    origin,
)
from receiver.web.requests import (
    AuditQuery,
    ControlBody,
    DecisionBody,
    IncidentActionBody,
    IncidentsQuery,
    field_error,
    page_link,
    parse_body,
    parse_query,
)
from receiver.web.services import services

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate() -> None:
    """Operators only: an API token (read or operator scope), a session, or the proxy."""
    op = current_operator(api=True)
    if op is None:
        raise ApiError(401, "unauthorized", "missing or invalid credentials",
                       {"WWW-Authenticate": 'Bearer realm="remediator"'})
    if request.method not in ("GET", "HEAD"):
        browser_write_checks(op)  # session or proxy: same origin and X-CSRF-Token
        if op.scope != "operator":
            raise ApiError(403, "forbidden", "this token is read-only")


@bp.get("/csrf-token")
def csrf_token() -> Response:
    """The X-CSRF-Token value for API writes by a session or proxy-authenticated user
    (another site cannot read this answer: no CORS)."""
    op = current_operator(api=True)
    return jsonify({"csrf_token": csrf_token_for(op), "user": op.name if op else None,
                    "via": op.via if op else None})


@bp.get("/incidents")
def list_incidents() -> Response:
    f = parse_query(IncidentsQuery).filter(services().intake.clock())
    with services().store.unit(write=False) as uow:
        found = uow.incidents.matching(f)
    body: dict[str, Any] = {"incidents": [dataclasses.asdict(i) for i in found]}
    if len(found) == f.limit:
        body["next"] = page_link(".list_incidents", IncidentsQuery, before=found[-1].id)
    return jsonify(body)


@bp.get("/incidents/<id:incident_id>")
def get_incident(incident_id: int) -> Response:
    with services().store.unit(write=False) as uow:
        found = uow.incidents.detail(incident_id)
    if found is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    from receiver.incidents import similar

    svc = services()
    body = found.as_json()
    body["similar"] = [s.as_json() for s in similar.find(svc.store, svc.config, incident_id,
                                                          now=svc.intake.clock())]
    return jsonify(body)


def _operator_name() -> str:
    op = current_operator(api=True)
    assert op is not None  # noqa: S101 - checked in before_request
    return op.name


@bp.post("/incidents/<id:incident_id>/actions")
def incident_action(incident_id: int) -> Response:
    from receiver.incidents import lifecycle

    body = parse_body(IncidentActionBody)
    svc = services()
    action = body.action
    if action == "diagnose":
        from receiver.diagnostics import request as request_diagnostics

        req = request_diagnostics(svc.store, incident_id, actor=f"user:{_operator_name()}",
                                  reason=body.text[:500] or "requested through the API",
                                  now=svc.intake.clock())
        if req is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        return jsonify({"status": "requested"})
    row = lifecycle.act(svc.store, svc.config, incident_id, action, user=_operator_name(),
                        now=svc.intake.clock(), text=body.text, value=body.value,
                        origin=origin())  # a refusal: web/errors.py answers it
    return jsonify(dataclasses.asdict(row))


@bp.get("/incidents/<id:incident_id>/postmortem.md")
def postmortem_md(incident_id: int) -> Response:
    from receiver.incidents import postmortem

    svc = services()
    text = postmortem.render(svc.store, svc.config, incident_id)
    if text is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return Response(text, mimetype="text/markdown")


@bp.post("/jobs/<id:job_id>/<any(approve, deny):decision>")
def decide_job(job_id: int, decision: str) -> Response:
    from receiver.people.approvals import decide_job as decide

    svc = services()
    reason = parse_body(DecisionBody).reason
    if decision == "deny" and not reason.strip():
        raise ApiError(400, "invalid_payload", [field_error("reason", "a reason is required")])
    row = decide(svc.store, svc.config, job_id, approve=decision == "approve",
                 user=_operator_name(), reason=reason, now=svc.intake.clock(),
                 origin={**origin(), "via": "api"})  # a refusal: web/errors.py answers it
    return jsonify({"job_id": job_id, "state": row.state})


@bp.post("/controls/<any(pause, resume):what>")
def control(what: str) -> Response:
    from receiver.remediation import controls

    svc = services()
    body = parse_body(ControlBody)
    rule = body.rule
    if rule is not None and svc.config.rule(rule) is None:
        raise ApiError(400, "invalid_payload", [field_error("rule", "unknown rule")])
    fn = controls.pause if what == "pause" else controls.resume
    fn(svc.store, actor=f"user:{_operator_name()}", reason=body.reason or what,
       now=svc.intake.clock(), rule=rule, origin=origin())
    return jsonify({"status": what + "d", "rule": rule})


@bp.get("/audit")
def audit() -> Response:
    from receiver.audit.export import to_csv, to_jsonl

    query = parse_query(AuditQuery)
    f = query.filter()
    with services().store.unit(write=False) as uow:
        entries = uow.audit.query(f)
    if query.format == "jsonl":
        return Response(to_jsonl(entries), mimetype="application/x-ndjson")
    if query.format == "csv":
        return Response(to_csv(entries), mimetype="text/csv")
    body: dict[str, Any] = {"entries": [dataclasses.asdict(e) for e in entries]}
    if len(entries) == f.limit:
        body["next"] = page_link(".audit", AuditQuery, after=entries[-1].seq)
    return jsonify(body)


@bp.get("/audit/verify")
def audit_verify() -> Response:
    """The same checks as ``remediator audit verify``: the keyed chain, the signed
    checkpoints, the append-only triggers; ``problems`` names each one found."""
    report = services().store.verify_audit()
    return jsonify(report.as_dict())
