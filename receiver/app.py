"""create_app(): wiring only. Nothing connects, reads config or starts threads at import."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import structlog
from flask import Flask, Request, Response
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer
from markupsafe import Markup

from receiver.audit import checkpoints as audit_checkpoints
from receiver.config import Config, load_config
from receiver.incidents.metrics import Metrics
from receiver.intake.engine import Intake, utcnow
from receiver.people.tokens import secret_key
from receiver.secrets import NO_SECRETS, Redactor, derived_forms, redactor_for
from receiver.store import Store, open_store
from receiver.web import api, openapi, ops, pages, report_pages, slack_events, webhook
from receiver.web import slack as slack_web
from receiver.web import status as status_web
from receiver.web import undo as undo_web
from receiver.web.auth import Authenticator
from receiver.web.errors import register_error_handlers
from receiver.web.operators import PASSWORDS_EXTENSION, PasswordChecker, csrf_token
from receiver.web.requests import IdConverter
from receiver.web.services import Services

log = structlog.get_logger(__name__)

INSECURE_NO_AUTH_WARNING = (
    "--insecure-no-auth: the webhook (POST /api/v1/alerts and /alertmanager) accepts "
    "unauthenticated posts, so anyone who can reach it can open incidents and start the "
    "configured rules (within their guards and approvals); the JSON API and the pages "
    "still need an operator (API token, login session or trusted proxy)"
)


class _JSON(DefaultJSONProvider):
    sort_keys = False

    def __init__(self, app: Flask, redactor: Redactor = NO_SECRETS) -> None:
        super().__init__(app)
        self.redactor = redactor

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        # Every JSON body, API answers and error bodies alike, leaves through here: dumped
        # once, and again from the redacted value when the text holds a secret.
        try:
            text = super().dumps(obj, **kwargs)
        except TypeError:  # a value only the redactor turns into JSON (a pydantic model)
            return super().dumps(self.redactor(obj), **kwargs)
        if self.redactor.found_in_json(text):
            text = super().dumps(self.redactor(obj), **kwargs)
        return text

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def _finalize(redactor: Redactor) -> Callable[[Any], Any]:
    """Jinja's last step for every ``{{ value }}`` of every page: configured secrets out."""

    def finalize(value: Any) -> Any:
        if isinstance(value, str) and redactor.found(value):
            text = redactor.text(value)
            # Safe markup stays safe: only a secret was replaced, by plain "[redacted]".
            return Markup(text) if isinstance(value, Markup) else text  # noqa: S704
        return value

    return finalize


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with our
    # own form posts, and the origin check needs the real one. Other sites get no referrer.
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy",
     "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none';"
     " base-uri 'none'; form-action 'self'"),
    ("Cache-Control", "no-store"),
)


def _security_headers(resp: Response) -> Response:
    """Each header of :data:`_SECURITY_HEADERS` that the view did not set itself."""
    present = {name.lower() for name in resp.headers.keys()}  # noqa: SIM118 - Headers
    for name, value in _SECURITY_HEADERS:
        if name.lower() not in present:
            resp.headers.add(name, value)
    return resp


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once rather than
    on every request (the secret key does not change while the app runs)."""

    _serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if self._serializer is None:
            self._serializer = super().get_signing_serializer(app)
        return self._serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        # No Cookie header (the webhook, API clients): an empty session without parsing
        # cookies; what Flask would return for a request without the session cookie.
        if "HTTP_COOKIE" not in request.environ and self.get_signing_serializer(app):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not session and not session.modified and not session.accessed:
            return  # nothing to set, delete or vary on (Flask's own outcome, sooner)
        super().save_session(app, session, response)


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
            **audit_checkpoints.store_options(config),
        )

    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    app.config.update(
        SECRET_KEY=secret_key(config),
        SESSION_COOKIE_NAME="remediator_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.server.secure_cookies,
        PERMANENT_SESSION_LIFETIME=config.people.session_lifetime,
    )
    # No body carries a configured secret: JSON (errors included) and every page value pass
    # the redactor, and the store cuts secrets from the timeline and audit details it writes.
    redactor = redactor_for(config).merged(Redactor(derived_forms(app.config["SECRET_KEY"])))
    store.redact_with(redactor)
    if redactor.too_short:
        log.warning("short_password_not_redacted", paths=list(redactor.too_short),
                    detail="a password inside these DSNs/URLs is too short to redact on its own")
    app.json = _JSON(app, redactor)
    app.session_interface = _Sessions()
    app.jinja_env.autoescape = True
    app.jinja_env.finalize = _finalize(redactor)
    app.jinja_env.filters["when"] = _when
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["status_page_enabled"] = config.status_page.enabled
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
    app.extensions[PASSWORDS_EXTENSION] = PasswordChecker(config.people)
    register_error_handlers(app)
    app.after_request(_security_headers)
    app.url_map.converters["id"] = IdConverter
    app.register_blueprint(webhook.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(report_pages.bp)
    app.register_blueprint(status_web.bp)
    app.register_blueprint(status_web.api)
    app.register_blueprint(undo_web.bp)
    app.register_blueprint(slack_web.bp)
    app.register_blueprint(slack_events.bp)
    if insecure_no_auth and not config.auth.configured:
        log.warning("insecure_no_auth", detail=INSECURE_NO_AUTH_WARNING)
    return app
