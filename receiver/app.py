"""create_app(): wiring only. Nothing connects, reads config or starts threads at import."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import structlog
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from receiver.config import Config, load_config
from receiver.engine import Intake, utcnow
from receiver.metrics import Metrics
from receiver.store import Store, open_store
from receiver.tokens import secret_key
from receiver.web import api, openapi, ops, pages, webhook
from receiver.web.auth import Authenticator
from receiver.web.errors import register_error_handlers
from receiver.web.operators import csrf_token
from receiver.web.requests import IdConverter
from receiver.web.services import Services

log = structlog.get_logger(__name__)


class _JSON(DefaultJSONProvider):
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none';"
        " base-uri 'none'; form-action 'self'",
    )
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def create_app(
    config: Config | None = None,
    *,
    store: Store | None = None,
    insecure_no_auth: bool | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Flask:
    """Build the Flask app.

    With no arguments (gunicorn's ``receiver.app:create_app()``), the config path comes
    from ``REMEDIATOR_CONFIG`` and the auth opt-out from ``REMEDIATOR_INSECURE_NO_AUTH=1``.
    """
    if config is None:
        config = load_config(os.environ.get("REMEDIATOR_CONFIG", "remediator.yml"))
    if insecure_no_auth is None:
        insecure_no_auth = os.environ.get("REMEDIATOR_INSECURE_NO_AUTH") == "1"
    if not config.auth.configured and not insecure_no_auth:
        raise RuntimeError(
            "no webhook auth is configured (auth.bearer_token or auth.basic); "
            "refusing to start without --insecure-no-auth"
        )
    if store is None:
        store = open_store(
            config.store_url(),
            pool_min=config.store.pool_min,
            pool_max=config.store.pool_max,
            timeout=config.store.connect_timeout.total_seconds(),
        )

    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.json = _JSON(app)
    app.config.update(
        SECRET_KEY=secret_key(config),
        SESSION_COOKIE_NAME="remediator_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.server.secure_cookies,
        PERMANENT_SESSION_LIFETIME=config.people.session_lifetime,
    )
    app.jinja_env.autoescape = True
    app.jinja_env.filters["when"] = _when
    app.jinja_env.globals["csrf_token"] = csrf_token
    # One byte of slack lets the webhook tell "exactly the cap" from "over it" on chunked
    # bodies, which werkzeug would otherwise cut silently at MAX_CONTENT_LENGTH.
    app.config["REMEDIATOR_MAX_BODY"] = config.server.max_body_bytes
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_body_bytes + 1
    app.extensions["remediator"] = Services(
        config=config,
        store=store,
        intake=Intake(config, store, clock),
        auth=Authenticator(config.auth, insecure_no_auth=insecure_no_auth),
        metrics=Metrics(),
    )
    register_error_handlers(app)
    app.after_request(_security_headers)
    app.url_map.converters["id"] = IdConverter
    app.register_blueprint(webhook.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(pages.bp)
    if insecure_no_auth and not config.auth.configured:
        log.warning(
            "insecure_no_auth", detail="the webhook and API accept unauthenticated requests"
        )
    return app
