"""The one place where exceptions become HTTP responses: ``{"error": code, "detail": ...}``."""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from receiver.errors import StoreError, StoreUnavailable

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """An error answered as JSON with a given status and machine-readable code."""

    def __init__(
        self, status: int, code: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, code: str, detail: Any = None) -> Response:
    body: dict[str, Any] = {"error": code}
    if detail is not None:
        body["detail"] = detail
    resp = jsonify(body)
    resp.status_code = status
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        resp = error_response(exc.status, exc.code, exc.detail)
        resp.headers.update(exc.headers)
        return resp

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable) -> Response:
        log.warning("store_unavailable", error=str(exc))
        resp = error_response(503, "store_unavailable", "the store cannot be reached; retry")
        resp.headers["Retry-After"] = "5"
        return resp

    @app.errorhandler(StoreError)
    def _store_error(exc: StoreError) -> Response:
        log.error("store_error", error=str(exc))
        return error_response(503, "store_error", "the store failed; retry")

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Response:
        return error_response(413, "payload_too_large", "the body exceeds the configured cap")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = error_response(exc.code or 500, code, exc.description)
        if exc.code == 405 and exc.get_response().headers.get("Allow"):
            resp.headers["Allow"] = exc.get_response().headers["Allow"]
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled_error")
        return error_response(500, "internal_error", "unexpected error; see the server log")
