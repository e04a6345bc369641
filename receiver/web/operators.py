"""Who is asking: operators for pages and the JSON API, and what a browser must prove.

Resolution order, first match wins:
1. for the JSON API, ``Authorization: Bearer <token>`` from ``people.api_tokens``, with its
   scope (``read`` or ``operator``);
2. a trusted auth proxy's identity header, only from the configured proxy addresses;
3. the session cookie set by the login form. The cookie (signed) carries only a random
   session id; the ``sessions`` table says whether it is still live (not logged out, not
   expired, the user still configured with the same password hash).

A browser sends the proxy's identity and the session cookie on its own, also when another
site makes it post a form. So every state-changing request authenticated by either must
(a) not say it comes from another site (``Origin`` other than ``server.public_url`` or the
request's own host, ``null`` unless ``Sec-Fetch-Site: same-origin``, or ``Sec-Fetch-Site``
other than ``same-origin``/``none``: 403 ``cross_site_request``) and (b) carry the CSRF
token (form field ``csrf_token`` on pages, header ``X-CSRF-Token`` on the API: 400
``csrf_failed``). Bearer tokens are never sent by a browser on its own and need neither.

Pages embed the CSRF token (:func:`csrf_token`); API clients that use the session or the
proxy read it from ``GET /api/v1/csrf-token`` (which another site cannot read: no CORS).
The checks are in :mod:`receiver.web.csrf`, passwords, sessions and the login limits in
:mod:`receiver.web.logins`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, redirect, request, url_for

from receiver.web import csrf
from receiver.web.csrf import browser_write_checks, csrf_token_for
from receiver.web.errors import ApiError
from receiver.web.identity import Operator, Scope, origin, token_digest
from receiver.web.logins import (
    PASSWORDS_EXTENSION,
    PasswordChecker,
    end_session,
    log_in,
    session_operator,
    start_session,
)
from receiver.web.services import services

__all__ = ["PASSWORDS_EXTENSION", "Operator", "PasswordChecker", "Scope", "api_auth",
           "browser_write_checks", "check_csrf", "csrf_token", "csrf_token_for",
           "current_operator", "end_session", "log_in", "origin", "page_login_required",
           "start_session", "token_digest"]

F = TypeVar("F", bound=Callable[..., Any])


# -- identity ------------------------------------------------------------------------------
def _from_proxy() -> Operator | None:
    proxy = services().config.people.trusted_proxy
    if proxy is None or not proxy.trusts(request.remote_addr):
        return None
    name = (request.headers.get(proxy.header) or "").strip()
    if not name or name not in services().config.people.users:
        return None
    return Operator(name, "operator", "proxy")


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
    """Who is asking (cached for the request)."""
    key = "_operator_api" if api else "_operator_page"
    if key in g:
        cached: Operator | None = g.get(key)
        return cached
    op = (_from_token() if api else None) or _from_proxy() or session_operator()
    setattr(g, key, op)
    return op


# -- CSRF ----------------------------------------------------------------------------------
def csrf_token() -> str:
    """The CSRF token of whoever is asking (pages embed it in every form)."""
    if "_csrf" not in g:
        g._csrf = csrf_token_for(current_operator())
    token: str = g._csrf
    return token


def check_csrf(op: Operator | None = None) -> None:
    """A page form: same origin, and the ``csrf_token`` field of ``op`` (default: whoever
    is asking, or this browser before login)."""
    csrf.check_csrf(op or current_operator())


# -- decorators ------------------------------------------------------------------------------
def page_login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        op = current_operator()
        if op is None:
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        if request.method == "POST":
            check_csrf(op)
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
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                browser_write_checks(op)
            if scope == "operator" and op.scope != "operator":
                raise ApiError(403, "forbidden", "this token is read-only")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return deco
