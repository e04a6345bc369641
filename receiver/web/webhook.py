"""POST /api/v1/alerts (alias /alertmanager): Alertmanager webhook intake.

Order of checks: auth (401), content type (415), size before reading (413), JSON and
model validation (400), then one store transaction (200, or 503 when the store is down).
Nothing is stored unless every check passes.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import ValidationError

from receiver.errors import StoreError
from receiver.intake.alertmanager import Notification
from receiver.web.errors import ApiError
from receiver.web.requests import field_error, field_errors
from receiver.web.services import services

bp = Blueprint("webhook", __name__)
log = structlog.get_logger(__name__)

MAX_ERRORS_SHOWN = 20


def _validation_detail(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    code = "invalid_json" if any(e["type"] == "json_invalid" for e in errors) else "invalid_payload"
    return code, field_errors(exc)  # [{"field", "message"}] as every endpoint answers


@bp.post("/api/v1/alerts")
@bp.post("/alertmanager")
def receive() -> Response:
    svc = services()
    started = time.perf_counter()
    try:
        return _receive(svc)
    except ApiError as exc:
        svc.metrics.rejected.labels(exc.code).inc()
        raise
    except StoreError:
        svc.metrics.rejected.labels("store_unavailable").inc()
        raise
    finally:
        svc.metrics.latency.observe(time.perf_counter() - started)


def _receive(svc: Any) -> Response:
    if not svc.auth.check(request.headers.get("Authorization")):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid credentials",
            {"WWW-Authenticate": svc.auth.challenge},
        )
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    cap = current_app.config["REMEDIATOR_MAX_BODY"]
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413, "payload_too_large", f"the body exceeds {cap} bytes")
    body = request.get_data(cache=False)  # werkzeug stops reading at cap + 1
    if len(body) > cap:
        raise ApiError(413, "payload_too_large", f"the body exceeds {cap} bytes")
    if not body.strip():
        raise ApiError(400, "invalid_json", [field_error("(body)", "empty body")])
    try:
        notification = Notification.model_validate_json(body, strict=True)  # JSON types as sent
    except ValidationError as exc:
        code, detail = _validation_detail(exc)
        raise ApiError(400, code, detail) from exc
    text = body.decode("utf-8")  # valid: the JSON parser has accepted it
    result = svc.intake.accept(notification, text)

    svc.metrics.notifications.labels(notification.status).inc()
    for alert in notification.alerts:
        svc.metrics.alerts.labels(alert.status).inc()
    if result.incident_opened or result.incident_reopened:
        svc.metrics.incidents_opened.labels(result.incident_severity or "unknown").inc()
    log.info(
        "notification_accepted",
        receiver=notification.receiver,
        group_key=notification.group_key[:200],
        status=notification.status,
        alerts=len(notification.alerts),
        **result.as_dict(),
    )
    return jsonify({"status": "accepted", **result.as_dict()})
