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
from receiver.web.services import services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 500


@bp.before_request
def _authenticate() -> None:
    svc = services()
    if not svc.auth.check(request.headers.get("Authorization")):
        raise ApiError(
            401, "unauthorized", "missing or invalid credentials",
            {"WWW-Authenticate": svc.auth.challenge},
        )


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
