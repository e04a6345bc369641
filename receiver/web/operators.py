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

The CSRF token is signed and timestamped (itsdangerous) over what the request is bound to:
the session id for a login session (so it changes at every login and dies at logout), the
user name for a proxy-authenticated user (who may have no cookie at all; valid for
``people.session_lifetime``), and a random value kept in the cookie before login (the login
form). Pages embed it; API clients that use the session or the proxy read it from
``GET /api/v1/csrf-token`` (which another site cannot read: no CORS).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import structlog
from flask import current_app, g, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from receiver.config.people import PeopleConfig
from receiver.store import audit as audit_store
from receiver.store import people as people_store
from receiver.web.errors import ApiError
from receiver.web.services import services

log = structlog.get_logger(__name__)

Scope = Literal["read", "operator"]
F = TypeVar("F", bound=Callable[..., Any])
CSRF_SALT = "remediator.csrf.v1"
PASSWORDS_EXTENSION = "remediator.passwords"
TOUCH_EVERY_SECONDS = 60
_APPROVAL_PATH = re.compile(r"^(/approvals/)([^/]+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class Operator:
    name: str
    scope: Scope
    via: str  # proxy | session | token
    session_hash: str | None = None


def _now() -> datetime:
    return services().intake.clock()


def token_digest(token: str) -> str:
    """A short, stable stand-in for an approval-link token in logs and the audit log."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _audit_path() -> str:
    """The request path with any approval-link token replaced by its short digest."""
    path = request.path
    token = (request.view_args or {}).get("token")
    if isinstance(token, str) and token:
        return path.replace(token, f"~{token_digest(token)}")
    return _APPROVAL_PATH.sub(lambda m: f"{m.group(1)}~{token_digest(m.group(2))}", path)


def origin() -> dict[str, Any]:
    """The request's origin, as recorded in the audit log (no approval-link tokens)."""
    return {
        "ip": request.remote_addr,
        "user_agent": (request.user_agent.string or "")[:200],
        "path": _audit_path(),
    }


# -- passwords -----------------------------------------------------------------------------
class PasswordChecker:
    """Checks passwords in the same time for known and unknown users.

    A user name that is not configured (or has no password) is checked against a dummy
    hash made at startup with the method (algorithm and cost) that most configured hashes
    use, so the answer takes as long as for a known user with a wrong password.
    """

    def __init__(self, people: PeopleConfig) -> None:
        methods = Counter(p.password_hash.split("$", 1)[0] for p in people.users.values()
                          if p.password_hash and "$" in p.password_hash)
        self.method = methods.most_common(1)[0][0] if methods else "scrypt"
        filler = secrets.token_urlsafe(16)
        try:
            self._dummy = generate_password_hash(filler, method=self.method)
        except (ValueError, TypeError):
            self.method = "scrypt"
            self._dummy = generate_password_hash(filler, method=self.method)
        self._people = people

    def check(self, user: str, password: str) -> bool:
        person = self._people.users.get(user)
        stored = person.password_hash if person is not None else None
        if not stored:
            self._verify(self._dummy, password)
            return False
        return self._verify(stored, password)

    @staticmethod
    def _verify(stored: str, password: str) -> bool:
        try:
            return check_password_hash(stored, password)
        except (ValueError, TypeError):
            return False


def check_password(user: str, password: str) -> bool:
    checker: PasswordChecker = current_app.extensions[PASSWORDS_EXTENSION]
    return checker.check(user, password)


def password_fingerprint(password_hash: str | None) -> str:
    """An HMAC of the configured password hash: changes when the hash does."""
    key = str(current_app.secret_key).encode()
    return hmac.new(key, b"pw:" + (password_hash or "").encode(), hashlib.sha256).hexdigest()


# -- identity ------------------------------------------------------------------------------
def _from_proxy() -> Operator | None:
    proxy = services().config.people.trusted_proxy
    if proxy is None or not proxy.trusts(request.remote_addr):
        return None
    name = (request.headers.get(proxy.header) or "").strip()
    if not name or name not in services().config.people.users:
        return None
    return Operator(name, "operator", "proxy")


def _session_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def _from_session() -> Operator | None:
    sid = session.get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    id_hash = _session_hash(sid)
    svc = services()
    now = _now()
    with svc.store.db.transaction(write=False) as tx:
        rec = people_store.get_session(tx, id_hash)
    if rec is None or rec.revoked_at is not None or rec.expires_at <= now:
        return None
    person = svc.config.people.users.get(rec.user)
    reason = None
    if person is None:
        reason = "user removed from the configuration"
    elif not hmac.compare_digest(rec.password_fingerprint,
                                 password_fingerprint(person.password_hash)):
        reason = "password changed"
    if reason is not None:
        _revoke_all(rec.user, reason, now)
        return None
    if (now - rec.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS:
        with svc.store.db.transaction() as tx:
            people_store.touch_session(tx, id_hash, now)
    return Operator(rec.user, "operator", "session", id_hash)


def _revoke_all(user: str, reason: str, now: datetime) -> None:
    with services().store.db.transaction() as tx:
        n = people_store.revoke_user_sessions(tx, user, now, reason)
        if n:
            audit_store.append(tx, at=now, actor="system", action="auth.sessions_revoked",
                               subject=f"user:{user}"[:120], origin=origin(),
                               details={"reason": reason, "sessions": n})


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
    op = (_from_token() if api else None) or _from_proxy() or _from_session()
    setattr(g, key, op)
    return op


# -- sessions ------------------------------------------------------------------------------
def start_session(user: str) -> str:
    """Log ``user`` in: a new session id (never the one the browser came with), a new CSRF
    token. Returns the session's digest (for the audit log)."""
    svc = services()
    now = _now()
    old = session.get("sid")
    sid = secrets.token_urlsafe(32)
    id_hash = _session_hash(sid)
    person = svc.config.people.users[user]
    with svc.store.db.transaction() as tx:
        if isinstance(old, str) and old:
            people_store.revoke_session(tx, _session_hash(old), now, "new login")
        people_store.prune_sessions(tx, now - svc.config.people.session_lifetime)
        people_store.create_session(
            tx, id_hash=id_hash, user=user, now=now,
            expires_at=now + svc.config.people.session_lifetime,
            password_fingerprint=password_fingerprint(person.password_hash),
            address=request.remote_addr)
    session.clear()
    session.permanent = True
    session["sid"] = sid
    for key in ("_operator_page", "_operator_api", "_csrf"):
        g.pop(key, None)
    return id_hash[:12]


def end_session(op: Operator) -> bool:
    """Log out: the session ends on the server, the cookie is emptied."""
    ended = False
    if op.session_hash is not None:
        with services().store.db.transaction() as tx:
            ended = people_store.revoke_session(tx, op.session_hash, _now(), "logout")
    session.clear()
    for key in ("_operator_page", "_operator_api", "_csrf"):
        g.pop(key, None)
    return ended


# -- login ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginResult:
    ok: bool
    retry_after: int | None = None  # set when a limit refused the attempt (429)


def log_in(user: str, password: str) -> LoginResult:
    """Check a login form, within the failed-login limits; on success start a session.

    Each attempt is counted for its user name and its client address (and in the global
    count that bounds the audit entries) before the password is checked, in one committed
    transaction, so the limits hold across workers and replicas; past a limit the password
    is not checked at all. A known and an unknown user name cost the same work. Failures
    are audited in aggregate: one entry at a user name's first failure in a window, one
    when a limit is reached (with the counts), and none at all past
    ``login_limits.audited_failures`` failures of any kind in a window.
    """
    svc = services()
    limits = svc.config.people.login_limits
    now = _now()
    address = (request.remote_addr or "unknown")[:64]
    user = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", user)[:100]  # storable; names no user
    counted: list[tuple[people_store.LoginCount, int]] = []
    with svc.store.db.transaction() as tx:
        people_store.prune_login_attempts(tx, now, limits.window)
        for kind, key, limit in (("user", user, limits.user_failures),
                                 ("address", address, limits.address_failures),
                                 ("global", "*", 0)):
            if limit > 0 or kind == "global":
                counted.append((people_store.count_login_attempt(tx, kind, key, now,
                                                                 limits.window), limit))
    over = [c for c, limit in counted if limit > 0 and c.attempts > limit]
    if over:
        _audit_failure(user, address, counted, now, refused=True)
        return LoginResult(False, max(c.retry_after(limits.window, now) for c in over))
    if check_password(user, password):
        with svc.store.db.transaction() as tx:
            people_store.clear_login_attempts(tx, "user", user)
            for c, _ in counted:
                if c.kind != "user":
                    people_store.give_back_attempt(tx, c.kind, c.key)
        digest = start_session(user)
        with svc.store.db.transaction() as tx:
            audit_store.append(tx, at=now, actor=f"user:{user}", action="auth.login",
                               subject=f"user:{user}"[:120], origin=origin(),
                               details={"session": digest})
        return LoginResult(True)
    _audit_failure(user, address, counted, now, refused=False)
    return LoginResult(False)


def _audit_failure(user: str, address: str, counted: list[tuple[people_store.LoginCount, int]],
                   now: datetime, *, refused: bool) -> None:
    limits = services().config.people.login_limits
    window = limits.window
    counts = {f"{c.kind}_attempts": c.attempts for c, _ in counted if c.kind != "global"}
    entries: list[tuple[str, dict[str, Any]]] = []
    for c, limit in counted:
        if c.kind == "user" and c.attempts == 1 and not refused:
            details: dict[str, Any] = {"attempted_user": user[:100], "address": address,
                                       **counts}
            details |= {f"previous_window_{p.kind}_attempts": p.previous_attempts
                        for p, lim in counted
                        if p.kind != "global" and p.attempts == 1 and p.previous_attempts > lim}
            entries.append(("auth.login_failed", details))
        if limit > 0 and c.attempts == limit:
            entries.append(("auth.login_limited", {
                "limit": c.kind, "attempted_user": user[:100], "address": address,
                "failures": c.attempts, "window_seconds": int(window.total_seconds()),
                "until": (c.window_started_at + window).isoformat()}))
    total = next((c for c, _ in counted if c.kind == "global"), None)
    if total is not None and total.attempts >= limits.audited_failures:
        entries = [] if total.attempts > limits.audited_failures else [(
            "auth.login_failures_unaudited", {
                "failures": total.attempts, "window_seconds": int(window.total_seconds()),
                "until": (total.window_started_at + window).isoformat(),
                "note": "further failed logins in this window are counted, not audited"})]
    if not entries:
        return
    with services().store.db.transaction() as tx:
        for action, details in entries:
            audit_store.append(tx, at=now, actor="anonymous", action=action,
                               subject=f"user:{user}"[:120], origin=origin(), details=details)


# -- CSRF and origin -------------------------------------------------------------------------
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


def csrf_token() -> str:
    """The CSRF token of whoever is asking (pages embed it in every form)."""
    if "_csrf" not in g:
        g._csrf = csrf_token_for(current_operator())
    token: str = g._csrf
    return token


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


def check_csrf(op: Operator | None = None) -> None:
    """A page form: same origin, and the ``csrf_token`` field of this operator (or of this
    browser before login)."""
    check_same_origin()
    if not _token_ok(request.form.get("csrf_token", ""), op or current_operator()):
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
