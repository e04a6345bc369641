"""Login sessions and failed-login counters.

Sessions live here, not in the cookie: the cookie carries a random id, this table keeps
its SHA-256 with the user, the expiry and a fingerprint of the user's password hash, so
that logout, a password change or a removed user ends a session on the server.

Failed logins are counted per ``(kind, key)`` (``user``/name, ``address``/IP, and
``global``/``*`` for all of them, which bounds what is audited) in a fixed
window that starts at the first attempt. An attempt is counted *before* the password is
checked, in its own committed transaction, so that parallel guesses across workers and
replicas all see each other; a successful login gives its count back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository


@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    user: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    password_fingerprint: str
    revoked_at: datetime | None
    revoked_reason: str | None


@dataclass(frozen=True)
class LoginCount:
    kind: str
    key: str
    attempts: int
    window_started_at: datetime
    previous_attempts: int

    def retry_after(self, window: timedelta, now: datetime) -> int:
        """Seconds until this window ends (at least 1)."""
        left = (self.window_started_at + window - now).total_seconds()
        return max(1, int(left + 0.999))


def _session(row: Row) -> SessionRecord:
    return SessionRecord(
        id_hash=row["id_hash"], user=row["user_name"], created_at=row["created_at"],
        last_seen_at=row["last_seen_at"], expires_at=row["expires_at"],
        password_fingerprint=row["password_fingerprint"], revoked_at=row["revoked_at"],
        revoked_reason=row["revoked_reason"],
    )


def create_session(tx: Tx, *, id_hash: str, user: str, now: datetime, expires_at: datetime,
                   password_fingerprint: str, address: str | None) -> None:
    tx.execute(
        "INSERT INTO sessions (id_hash, user_name, created_at, last_seen_at, expires_at,"
        " password_fingerprint, address) VALUES (:id, :u, :now, :now, :exp, :fp, :addr)",
        {"id": id_hash, "u": user, "now": now, "exp": expires_at, "fp": password_fingerprint,
         "addr": (address or "")[:64] or None},
    )


def get_session(tx: Tx, id_hash: str) -> SessionRecord | None:
    row = tx.fetchone(
        "SELECT id_hash, user_name, created_at, last_seen_at, expires_at,"
        " password_fingerprint, revoked_at, revoked_reason FROM sessions WHERE id_hash = :id",
        {"id": id_hash},
    )
    return _session(row) if row else None


def touch_session(tx: Tx, id_hash: str, now: datetime) -> None:
    tx.execute("UPDATE sessions SET last_seen_at = :now WHERE id_hash = :id"
               " AND revoked_at IS NULL", {"id": id_hash, "now": now})


def revoke_session(tx: Tx, id_hash: str, now: datetime, reason: str) -> bool:
    """End one session; False when it was already ended (or never existed)."""
    row = tx.fetchone(
        "UPDATE sessions SET revoked_at = :now, revoked_reason = :r"
        " WHERE id_hash = :id AND revoked_at IS NULL RETURNING id_hash",
        {"id": id_hash, "now": now, "r": reason[:200]},
    )
    return row is not None


def revoke_user_sessions(tx: Tx, user: str, now: datetime, reason: str) -> int:
    """End every live session of ``user``; the number ended."""
    rows = tx.fetchall(
        "UPDATE sessions SET revoked_at = :now, revoked_reason = :r"
        " WHERE user_name = :u AND revoked_at IS NULL AND expires_at > :now RETURNING id_hash",
        {"u": user, "now": now, "r": reason[:200]},
    )
    return len(rows)


def live_sessions(tx: Tx, user: str, now: datetime) -> list[SessionRecord]:
    rows = tx.fetchall(
        "SELECT id_hash, user_name, created_at, last_seen_at, expires_at,"
        " password_fingerprint, revoked_at, revoked_reason FROM sessions"
        " WHERE user_name = :u AND revoked_at IS NULL AND expires_at > :now"
        " ORDER BY created_at",
        {"u": user, "now": now},
    )
    return [_session(r) for r in rows]


def prune_sessions(tx: Tx, before: datetime) -> None:
    """Forget sessions that expired before ``before``."""
    tx.execute("DELETE FROM sessions WHERE expires_at < :t", {"t": before})


def count_login_attempt(tx: Tx, kind: str, key: str, now: datetime,
                        window: timedelta) -> LoginCount:
    """Count one attempt for ``(kind, key)``: the first of a new window when the last
    window has ended (its count moves to ``previous_attempts``), else one more."""
    cutoff = now - window
    row = tx.fetchone(
        "INSERT INTO login_failures (kind, key, window_started_at, attempts, previous_attempts)"
        " VALUES (:k, :key, :now, 1, 0)"
        " ON CONFLICT (kind, key) DO UPDATE SET"
        "  attempts = CASE WHEN login_failures.window_started_at <= :cutoff THEN 1"
        "                  ELSE login_failures.attempts + 1 END,"
        "  previous_attempts = CASE WHEN login_failures.window_started_at <= :cutoff"
        "                  THEN login_failures.attempts ELSE login_failures.previous_attempts END,"
        "  window_started_at = CASE WHEN login_failures.window_started_at <= :cutoff THEN :now"
        "                  ELSE login_failures.window_started_at END"
        " RETURNING attempts, window_started_at, previous_attempts",
        {"k": kind, "key": key, "now": now, "cutoff": cutoff},
    )
    assert row is not None  # noqa: S101 - an upsert with RETURNING always returns the row
    return LoginCount(kind, key, int(row["attempts"]), row["window_started_at"],
                      int(row["previous_attempts"]))


def give_back_attempt(tx: Tx, kind: str, key: str) -> None:
    """A counted attempt turned out to be a successful login."""
    tx.execute("UPDATE login_failures SET attempts = attempts - 1"
               " WHERE kind = :k AND key = :key AND attempts > 0", {"k": kind, "key": key})


def clear_login_attempts(tx: Tx, kind: str, key: str) -> None:
    tx.execute("DELETE FROM login_failures WHERE kind = :k AND key = :key",
               {"k": kind, "key": key})


def prune_login_attempts(tx: Tx, now: datetime, window: timedelta) -> None:
    """Forget counters whose window (and the one after it) has ended."""
    tx.execute("DELETE FROM login_failures WHERE window_started_at < :t",
               {"t": now - 2 * window})


class SessionRepository(Repository):
    """Login sessions and failed-login counters."""

    def create(self, *, id_hash: str, user: str, now: datetime, expires_at: datetime,
               password_fingerprint: str, address: str | None) -> None:
        create_session(self.tx, id_hash=id_hash, user=user, now=now, expires_at=expires_at,
                       password_fingerprint=password_fingerprint, address=address)

    def get(self, id_hash: str) -> SessionRecord | None:
        return get_session(self.tx, id_hash)

    def touch(self, id_hash: str, now: datetime) -> None:
        touch_session(self.tx, id_hash, now)

    def revoke(self, id_hash: str, now: datetime, reason: str) -> bool:
        """End one session; False when it was already ended (or never existed)."""
        return revoke_session(self.tx, id_hash, now, reason)

    def revoke_user(self, user: str, now: datetime, reason: str) -> int:
        """End every live session of ``user``; the number ended."""
        return revoke_user_sessions(self.tx, user, now, reason)

    def live(self, user: str, now: datetime) -> list[SessionRecord]:
        return live_sessions(self.tx, user, now)

    def prune(self, before: datetime) -> None:
        """Forget sessions that expired before ``before``."""
        prune_sessions(self.tx, before)

    def count_login_attempt(self, kind: str, key: str, now: datetime,
                            window: timedelta) -> LoginCount:
        """Count one attempt for ``(kind, key)`` (see :func:`count_login_attempt`)."""
        return count_login_attempt(self.tx, kind, key, now, window)

    def give_back_attempt(self, kind: str, key: str) -> None:
        give_back_attempt(self.tx, kind, key)

    def clear_login_attempts(self, kind: str, key: str) -> None:
        clear_login_attempts(self.tx, kind, key)

    def prune_login_attempts(self, now: datetime, window: timedelta) -> None:
        prune_login_attempts(self.tx, now, window)
