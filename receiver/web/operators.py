"""Who is asking: operators for pages and the JSON API.

Resolution order, first match wins:
1. a trusted auth proxy's identity header, only from the configured proxy addresses;
2. the session cookie set by the login form (local users with hashed passwords);
3. for the JSON API, ``Authorization: Bearer <token>`` from ``people.api_tokens``, with
   its scope (``read`` or ``operator``).
Pages use CSRF tokens on every POST; the API uses bearer tokens, which browsers never send
on their own, so it needs none.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Literal, TypeVar, cast

from flask import redirect, request, session, url_for
from werkzeug.security import check_password_hash

from receiver.web.errors import ApiError
from receiver.web.services import services

Scope = Literal["read", "operator"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operator:
    name: str
    scope: Scope
    via: str  # proxy | session | token


def origin() -> dict[str, Any]:
    """The request's origin, as recorded in the audit log."""
    return {
        "ip": request.remote_addr,
        "user_agent": (request.user_agent.string or "")[:200],
        "path": request.path,
    }


def _from_proxy() -> Operator | None:
    proxy = services().config.people.trusted_proxy
    if proxy is None or not proxy.trusts(request.remote_addr):
        return None
    name = (request.headers.get(proxy.header) or "").strip()
    if not name or name not in services().config.people.users:
        return None
    return Operator(name, "operator", "proxy")


def _from_session() -> Operator | None:
    name = session.get("user")
    if not isinstance(name, str) or name not in services().config.people.users:
        return None
    return Operator(name, "operator", "session")


def _from_token() -> Operator | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    for tok in services().config.people.api_tokens.values():
        if hmac.compare_digest(value.strip().encode(), tok.token.reveal().encode()):
            return Operator(tok.user, tok.scope, "token")
    return None


def current_operator(*, api: bool = False) -> Operator | None:
    return _from_proxy() or _from_session() or (_from_token() if api else None)


def check_password(user: str, password: str) -> bool:
    person = services().config.people.users.get(user)
    if person is None or not person.password_hash:
        check_password_hash("pbkdf2:sha256:600000$x$" + "0" * 64, password)  # same cost
        return False
    return check_password_hash(person.password_hash, password)


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(400, "csrf_failed", "the form expired or did not come from this site; "
                       "reload the page and try again")


def page_login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_operator() is None:
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        if request.method == "POST":
            check_csrf()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def api_auth(scope: Scope = "read") -> Callable[[F], F]:
    def deco(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            op = current_operator(api=True)
            if op is None:
                raise ApiError(401, "unauthorized", "missing or invalid credentials",
                               {"WWW-Authenticate": 'Bearer realm="remediator"'})
            if op.via == "session" and request.method != "GET":
                check_csrf_header()
            if scope == "operator" and op.scope != "operator":
                raise ApiError(403, "forbidden", "this token is read-only")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return deco


def check_csrf_header() -> None:
    sent = request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(400, "csrf_failed", "session-authenticated API writes need X-CSRF-Token")
