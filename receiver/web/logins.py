"""Logging in: passwords checked in constant time, server-side sessions, failed-login limits.

The session cookie (signed) carries only a random session id; the ``sessions`` table says
whether it is still live (not logged out, not expired, the user still configured with the
same password hash). Failed logins are counted in the store before the password is
checked (see :mod:`receiver.store.people`), so the limits hold across workers and replicas.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app, g, request, session
from werkzeug.security import check_password_hash, generate_password_hash

from receiver.config.people import PeopleConfig
from receiver.store.people import LoginCount
from receiver.web.identity import Operator, now, origin, session_hash
from receiver.web.services import services

PASSWORDS_EXTENSION = "remediator.passwords"
TOUCH_EVERY_SECONDS = 60
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CACHED = ("_operator_page", "_operator_api", "_csrf")


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


# -- sessions ------------------------------------------------------------------------------
def session_operator() -> Operator | None:
    """The operator of the request's session cookie, if that session is live. A session
    whose user was removed or whose password changed ends here, with every other session
    of that user."""
    sid = session.get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    id_hash = session_hash(sid)
    svc = services()
    at = now()
    with svc.store.unit(write=False) as uow:
        rec = uow.sessions.get(id_hash)
    if rec is None or rec.revoked_at is not None or rec.expires_at <= at:
        return None
    person = svc.config.people.users.get(rec.user)
    reason = None
    if person is None:
        reason = "user removed from the configuration"
    elif not hmac.compare_digest(rec.password_fingerprint,
                                 password_fingerprint(person.password_hash)):
        reason = "password changed"
    if reason is not None:
        _revoke_all(rec.user, reason, at)
        return None
    if (at - rec.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS:
        with svc.store.unit() as uow:
            uow.sessions.touch(id_hash, at)
    return Operator(rec.user, "operator", "session", id_hash)


def _revoke_all(user: str, reason: str, at: datetime) -> None:
    with services().store.unit() as uow:
        n = uow.sessions.revoke_user(user, at, reason)
        if n:
            uow.audit.append(at=at, actor="system", action="auth.sessions_revoked",
                             subject=f"user:{user}"[:120], origin=origin(),
                             details={"reason": reason, "sessions": n})


def _forget_cached() -> None:
    for key in _CACHED:
        g.pop(key, None)


def start_session(user: str) -> str:
    """Log ``user`` in: a new session id (never the one the browser came with), a new CSRF
    token. Returns the session's digest (for the audit log)."""
    svc = services()
    at = now()
    old = session.get("sid")
    sid = secrets.token_urlsafe(32)
    id_hash = session_hash(sid)
    person = svc.config.people.users[user]
    lifetime = svc.config.people.session_lifetime
    with svc.store.unit() as uow:
        if isinstance(old, str) and old:
            uow.sessions.revoke(session_hash(old), at, "new login")
        uow.sessions.prune(at - lifetime)
        uow.sessions.create(id_hash=id_hash, user=user, now=at, expires_at=at + lifetime,
                            password_fingerprint=password_fingerprint(person.password_hash),
                            address=request.remote_addr)
    session.clear()
    session.permanent = True
    session["sid"] = sid
    _forget_cached()
    return id_hash[:12]


def end_session(op: Operator) -> bool:
    """Log out: the session ends on the server, the cookie is emptied."""
    ended = False
    if op.session_hash is not None:
        with services().store.unit() as uow:
            ended = uow.sessions.revoke(op.session_hash, now(), "logout")
    session.clear()
    _forget_cached()
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
    at = now()
    address = (request.remote_addr or "unknown")[:64]
    user = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", user)[:100]  # storable; names no user
    counted: list[tuple[LoginCount, int]] = []
    with svc.store.unit() as uow:
        uow.sessions.prune_login_attempts(at, limits.window)
        for kind, key, limit in (("user", user, limits.user_failures),
                                 ("address", address, limits.address_failures),
                                 ("global", "*", 0)):
            if limit > 0 or kind == "global":
                counted.append((uow.sessions.count_login_attempt(kind, key, at, limits.window),
                                limit))
    over = [c for c, limit in counted if limit > 0 and c.attempts > limit]
    if over:
        _audit_failure(user, address, counted, at, refused=True)
        return LoginResult(False, max(c.retry_after(limits.window, at) for c in over))
    if check_password(user, password):
        with svc.store.unit() as uow:
            uow.sessions.clear_login_attempts("user", user)
            for c, _ in counted:
                if c.kind != "user":
                    uow.sessions.give_back_attempt(c.kind, c.key)
        digest = start_session(user)
        with svc.store.unit() as uow:
            uow.audit.append(at=at, actor=f"user:{user}", action="auth.login",
                             subject=f"user:{user}"[:120], origin=origin(),
                             details={"session": digest})
        return LoginResult(True)
    _audit_failure(user, address, counted, at, refused=False)
    return LoginResult(False)


def _audit_failure(user: str, address: str, counted: list[tuple[LoginCount, int]],
                   at: datetime, *, refused: bool) -> None:
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
    with services().store.unit() as uow:
        for action, details in entries:
            uow.audit.append(at=at, actor="anonymous", action=action,
                             subject=f"user:{user}"[:120], origin=origin(), details=details)
