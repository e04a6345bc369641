"""Operational endpoints: liveness, readiness (store reachable) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from receiver.errors import StoreError
from receiver.metrics import IncidentCollector
from receiver.store import reports
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
    svc = services()

    def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with svc.store.db.transaction(write=False) as tx:
            return reports.incident_facts(tx, None), reports.job_facts(tx, None)

    collector = IncidentCollector(load, svc.intake.clock, svc.config.sla.noise_window)
    try:
        data, content_type = svc.metrics.exposition(collector)
    except StoreError:
        data, content_type = svc.metrics.exposition()  # request metrics even if the store is down
    return Response(data, content_type=content_type)
