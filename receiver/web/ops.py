"""Operational endpoints: liveness, readiness (store reachable) and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from receiver.errors import StoreError
from receiver.web.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    try:
        services().store.ping()
    except StoreError as exc:
        resp = jsonify({"status": "unavailable", "store": "unreachable", "detail": str(exc)[:200]})
        resp.status_code = 503
        return resp
    return jsonify({"status": "ok", "store": services().store.dialect})


@bp.get("/metrics")
def metrics() -> Response:
    data, content_type = services().metrics.exposition()
    return Response(data, content_type=content_type)
