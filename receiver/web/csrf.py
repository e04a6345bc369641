"""What a browser must prove for a change: the request is same-site and carries the CSRF
token of whoever it is authenticated as (see :mod:`receiver.web.operators`).

The CSRF token is signed and timestamped (itsdangerous) over what the request is bound to:
the session id for a login session (so it changes at every login and dies at logout), the
user name for a proxy-authenticated user (who may have no cookie at all; valid for
``people.session_lifetime``), and a random value kept in the cookie before login (the login
form).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer

from receiver.web.errors import ApiError
from receiver.web.identity import Operator
from receiver.web.services import services

CSRF_SALT = "remediator.csrf.v1"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(str(current_app.secret_key), salt=CSRF_SALT)


def _binding(op: Operator | None) -> str:
    if op is not None and op.via == "session" and op.session_hash:
        return "s:" + op.session_hash
    if op is not None and op.via == "proxy":
        return "p:" + op.name
    anon = session.get("anon")
    if not isinstance(anon, str):
        anon = secrets.token_urlsafe(16)
        session["anon"] = anon
    return "a:" + anon


def csrf_token_for(op: Operator | None) -> str:
    return str(_serializer().dumps(_binding(op)))


def _token_ok(sent: str, op: Operator | None) -> bool:
    if not sent or len(sent) > 512:
        return False
    max_age = int(services().config.people.session_lifetime.total_seconds())
    try:
        bound = _serializer().loads(sent, max_age=max_age)
    except BadSignature:
        return False
    return isinstance(bound, str) and hmac.compare_digest(bound.encode(),
                                                          _binding(op).encode())


def check_csrf(op: Operator | None) -> None:
    """A page form: same origin, and the ``csrf_token`` field of this operator (or of this
    browser before login, ``op`` None)."""
    check_same_origin()
    if not _token_ok(request.form.get("csrf_token", ""), op):
        raise ApiError(400, "csrf_failed", "the form expired or did not come from this site; "
                       "reload the page and try again")


def check_csrf_header(op: Operator) -> None:
    """A JSON API write by a session or proxy user: same origin, and ``X-CSRF-Token``."""
    check_same_origin()
    if not _token_ok(request.headers.get("X-CSRF-Token", ""), op):
        raise ApiError(400, "csrf_failed",
                       "browser-authenticated API writes need the X-CSRF-Token header "
                       "(GET /api/v1/csrf-token)")


def _origin_of(url: str, *, exact: bool = False) -> str | None:
    """``scheme://host[:port]`` of a URL, lowercased, without a default port. With
    ``exact`` (an Origin header) anything more than that (path, query, userinfo) is None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    if exact and (parts.path or parts.query or parts.fragment or "@" in parts.netloc):
        return None
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def check_same_origin() -> None:
    """Refuse a request that its browser says comes from another site (403)."""
    fetch_site = (request.headers.get("Sec-Fetch-Site") or "").strip().lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        raise ApiError(403, "cross_site_request",
                       f"refused: the browser says this request comes from another site "
                       f"(Sec-Fetch-Site: {fetch_site[:20]})")
    sent = request.headers.get("Origin")
    if sent is None or (sent.strip() == "null" and fetch_site == "same-origin"):
        return  # no Origin (older clients), or hidden by a referrer policy: the browser
        # itself vouches for a same-origin request with Sec-Fetch-Site
    allowed = {_origin_of(services().config.server.public_url),
               _origin_of(f"{request.scheme}://{request.host}")} - {None}
    if _origin_of(sent, exact=True) not in allowed:
        raise ApiError(403, "cross_site_request",
                       f"refused: Origin {sent[:100]!r} is not this site "
                       f"({', '.join(sorted(a for a in allowed if a))})")


def browser_write_checks(op: Operator) -> None:
    """What an API write must prove, by how its operator was authenticated."""
    if op.via in ("session", "proxy"):
        check_csrf_header(op)
