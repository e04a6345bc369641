"""JSON API: incidents list (filters, paging) and incident detail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from receiver.durations import parse_duration
from receiver.incidents import STATES
from receiver.severity import Severity
from receiver.store import IncidentFilter
from receiver.web.errors import ApiError
from receiver.web.operators import check_csrf_header, current_operator, origin
from receiver.web.services import services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 500


@bp.before_request
def _authenticate() -> None:
    """Operators only: an API token (read or operator scope), a session, or the proxy."""
    op = current_operator(api=True)
    if op is None:
        raise ApiError(401, "unauthorized", "missing or invalid credentials",
                       {"WWW-Authenticate": 'Bearer realm="remediator"'})
    if request.method not in ("GET", "HEAD"):
        if op.scope != "operator":
            raise ApiError(403, "forbidden", "this token is read-only")
        if op.via == "session":
            check_csrf_header()


def _list_arg(name: str, allowed: set[str]) -> list[str] | None:
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ApiError(400, "invalid_query", [{"loc": name, "msg": f"unknown value(s): {bad}"}])
    return values or None


def _since() -> datetime | None:
    raw = request.args.get("since")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        window: timedelta = parse_duration(raw)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_query",
            [{"loc": "since", "msg": "an RFC3339 time or a duration like 24h"}],
        ) from exc
    return datetime.now(UTC) - window


def _int_arg(name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_query", [{"loc": name, "msg": "not an integer"}]) from exc
    if not lo <= value <= hi:
        raise ApiError(400, "invalid_query", [{"loc": name, "msg": f"must be in {lo}..{hi}"}])
    return value


@bp.get("/incidents")
def list_incidents() -> Response:
    f = IncidentFilter(
        state=_list_arg("state", set(STATES)),
        severity=_list_arg("severity", {s.value for s in Severity}),
        since=_since(),
        limit=_int_arg("limit", 50, 1, MAX_LIMIT) or 50,
        before_id=_int_arg("before", None, 1, 2**62),
    )
    rows = services().store.list_incidents(f)
    body: dict[str, Any] = {"incidents": rows}
    if len(rows) == f.limit:
        args: dict[str, Any] = request.args.to_dict(flat=False)
        args["before"] = [str(rows[-1]["id"])]
        body["next"] = url_for(".list_incidents", **args)
    return jsonify(body)


@bp.get("/incidents/<int:incident_id>")
def get_incident(incident_id: int) -> Response:
    row = services().store.get_incident(incident_id)
    if row is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return jsonify(row)


def _operator_name() -> str:
    op = current_operator(api=True)
    assert op is not None  # noqa: S101 - checked in before_request
    return op.name


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_payload", [{"loc": "(body)", "msg": "expected an object"}])
    return data


@bp.post("/incidents/<int:incident_id>/actions")
def incident_action(incident_id: int) -> Response:
    from receiver import lifecycle

    body = _body()
    svc = services()
    action = str(body.get("action", ""))
    if action == "diagnose":
        from receiver.diagnostics import request as request_diagnostics

        req = request_diagnostics(svc.store, incident_id, actor=f"user:{_operator_name()}",
                                  reason=str(body.get("text", "requested through the API"))[:500],
                                  now=svc.intake.clock())
        if req is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        return jsonify({"status": "requested"})
    try:
        row = lifecycle.act(svc.store, svc.config, incident_id, action, user=_operator_name(),
                            now=svc.intake.clock(), text=str(body.get("text", "")),
                            value=str(body.get("value", "")), origin=origin())
    except lifecycle.ActionError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from exc
    return jsonify(row)


@bp.get("/incidents/<int:incident_id>/postmortem.md")
def postmortem_md(incident_id: int) -> Response:
    from receiver import postmortem

    svc = services()
    text = postmortem.render(svc.store, svc.config, incident_id)
    if text is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return Response(text, mimetype="text/markdown")


@bp.post("/jobs/<int:job_id>/<any(approve, deny):decision>")
def decide_job(job_id: int, decision: str) -> Response:
    from receiver.approvals import DecisionError
    from receiver.approvals import decide_job as decide

    svc = services()
    body = _body()
    reason = str(body.get("reason", ""))[:1000]
    if decision == "deny" and not reason.strip():
        raise ApiError(400, "invalid_payload", [{"loc": "reason", "msg": "a reason is required"}])
    try:
        row = decide(svc.store, svc.config, job_id, approve=decision == "approve",
                     user=_operator_name(), reason=reason, now=svc.intake.clock(),
                     origin={**origin(), "via": "api"})
    except DecisionError as exc:
        status = {"not_found": 404, "not_allowed": 403}.get(exc.code, 409)
        raise ApiError(status, exc.code, str(exc)) from exc
    return jsonify({"job_id": job_id, "state": row["state"]})


@bp.post("/controls/<any(pause, resume):what>")
def control(what: str) -> Response:
    from receiver import controls

    svc = services()
    body = _body()
    rule = body.get("rule")
    if rule is not None and (not isinstance(rule, str) or svc.config.rule(rule) is None):
        raise ApiError(400, "invalid_payload", [{"loc": "rule", "msg": "unknown rule"}])
    fn = controls.pause if what == "pause" else controls.resume
    fn(svc.store, actor=f"user:{_operator_name()}", reason=str(body.get("reason", what))[:500],
       now=svc.intake.clock(), rule=rule, origin=origin())
    return jsonify({"status": what + "d", "rule": rule})


@bp.get("/audit")
def audit() -> Response:
    from receiver.audit_export import to_csv, to_jsonl
    from receiver.web.pages import audit_filter_from_args

    fmt = request.args.get("format", "json")
    limit = _int_arg("limit", 100, 1, 100000) or 100
    f, _, _ = audit_filter_from_args(limit)
    rows = services().store.audit(f)
    if fmt == "jsonl":
        return Response(to_jsonl(rows), mimetype="application/x-ndjson")
    if fmt == "csv":
        return Response(to_csv(rows), mimetype="text/csv")
    body: dict[str, Any] = {"entries": rows}
    if len(rows) == f.limit:
        args: dict[str, Any] = request.args.to_dict()
        args["after"] = str(rows[-1]["seq"])
        body["next"] = url_for(".audit", **args)
    return jsonify(body)


@bp.get("/audit/verify")
def audit_verify() -> Response:
    report = services().store.verify_audit()
    resp = jsonify({"ok": report.ok, "checked": report.checked,
                    "first_bad_seq": report.first_bad_seq, "problem": report.problem})
    return resp
