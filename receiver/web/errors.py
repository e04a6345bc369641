"""The one place where exceptions become HTTP responses.

A :class:`~receiver.errors.RemediatorError` carries its ``code``, ``status`` and headers
(the tree is drawn in receiver/errors.py), so views raise it and never translate it:

- :func:`json_error` answers the JSON API, the webhook and any non-page route:
  ``{"error": code, "detail": ...}`` with the error's status;
- :func:`page_error` answers a page (the ``pages`` blueprint): the error page with the same
  status and code for a browser (a client that prefers HTML), the JSON answer otherwise.

Werkzeug's HTTP errors (404 of an unknown route, 405, 413) are answered in the same JSON
shape; anything else is a 500 ``internal_error`` whose text goes only to the server log.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from receiver.errors import (
    INTERNAL_DETAIL,
    ApiError,
    RemediatorError,
    StoreError,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

PAGE_BLUEPRINTS = frozenset({"pages"})

__all__ = ["ApiError", "error_response", "json_error", "page_error", "register_error_handlers"]


def error_response(status: int, code: str, detail: Any = None) -> Response:
    body: dict[str, Any] = {"error": code}
    if detail is not None:
        body["detail"] = detail
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _log(exc: RemediatorError) -> None:
    """4xx answers are the client's business; a 5xx is logged with what the client is not
    told."""
    if exc.status < 500:
        return
    if isinstance(exc, StoreUnavailable):
        log.warning("store_unavailable", error=str(exc))
    elif isinstance(exc, StoreError):
        log.error("store_error", error=str(exc))
    else:
        log.exception("unhandled_error", code=exc.code)


def json_error(exc: RemediatorError) -> Response:
    """``{"error": code, "detail": ...}`` with the error's status and headers."""
    _log(exc)
    resp = error_response(exc.status, exc.code, exc.public_detail())
    resp.headers.update(exc.headers)
    return resp


def _wants_html() -> bool:
    """A browser (``Accept`` prefers text/html); other clients, and a request without an
    Accept header, get JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _page_message(detail: Any) -> str:
    if isinstance(detail, list):  # field errors: [{"field", "message"}]
        return "; ".join(f"{d.get('field')}: {d.get('message')}" for d in detail
                         if isinstance(d, dict)) or INTERNAL_DETAIL
    return str(detail) if detail is not None else INTERNAL_DETAIL


def page_error(exc: RemediatorError) -> Response:
    """The error page with the error's status, code and headers, for a browser.

    It is rendered without touching the store (no operator, no kill-switch banner), so it
    also works when the store is what failed."""
    if not _wants_html():
        return json_error(exc)
    _log(exc)
    html = render_template("message.html", operator=None, paused=None,
                           title=HTTP_STATUS_CODES.get(exc.status, "Error"),
                           message=_page_message(exc.public_detail()), level="error",
                           code=exc.code)
    resp = Response(html, status=exc.status, mimetype="text/html")
    resp.headers.update(exc.headers)
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RemediatorError)
    def _remediator_error(exc: RemediatorError) -> Response:
        if request.blueprint in PAGE_BLUEPRINTS:
            return page_error(exc)
        return json_error(exc)

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
        return error_response(500, "internal_error", INTERNAL_DETAIL)
