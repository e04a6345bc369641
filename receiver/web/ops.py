"""Operational endpoints: liveness, readiness (store reachable and able to commit) and
Prometheus metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from receiver.errors import ApiError, StoreError
from receiver.incidents.metrics import IncidentCollector, current_snapshot
from receiver.remediation.effectiveness import EffectivenessCollector
from receiver.runtime.health import AuditVerifier, Collectors, HealthCollector
from receiver.store.reports import Snapshot
from receiver.web.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the store answers and can commit: reachable, a one-row write commits
    and, on SQLite, the data directory has free space (cached for 1.5 s per process)."""
    store = services().store
    try:
        store.ping()
    except StoreError as exc:
        resp = jsonify({"status": "unavailable", "store": "unreachable", "detail": str(exc)[:200]})
        resp.status_code = 503
        return resp
    try:
        store.probe_commit()
    except StoreError as exc:
        resp = jsonify({"status": "unavailable", "store": "cannot_commit",
                        "detail": str(exc)[:200]})
        resp.status_code = 503
        return resp
    return jsonify({"status": "ok", "store": store.dialect})


def _metrics_allowed() -> bool:
    token = services().config.server.metrics_token
    if token is None:
        return True
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.reveal().encode())


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    if not _metrics_allowed():
        raise ApiError(401, "unauthorized", "/metrics needs the metrics token",
                       {"WWW-Authenticate": 'Bearer realm="remediator-metrics"'})

    def load() -> Snapshot:
        return current_snapshot(svc.store, svc.config, svc.intake.clock())

    verifier = current_app.extensions.setdefault("remediator.audit_verifier",
                                                 AuditVerifier(svc.store))
    collector = Collectors(IncidentCollector(load, svc.intake.clock),
                           HealthCollector(svc.store, svc.intake.clock, verifier),
                           current_app.extensions.setdefault(
                               "remediator.effectiveness", EffectivenessCollector(
                                   svc.store, svc.config, svc.intake.clock,
                                   every=svc.config.server.metrics_refresh)))
    try:
        data, content_type = svc.metrics.exposition(collector)
    except StoreError:
        data, content_type = svc.metrics.exposition()  # request metrics even if the store is down
    return Response(data, content_type=content_type)
