"""What every part of the web layer's people handling shares: the operator asking, the
request's clock, and the request's origin as the audit log records it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flask import request

from receiver.web.services import services

Scope = Literal["read", "operator"]
_APPROVAL_PATH = re.compile(r"^(/approvals/)([^/]+)")


@dataclass(frozen=True)
class Operator:
    name: str
    scope: Scope
    via: str  # proxy | session | token
    session_hash: str | None = None


def now() -> datetime:
    return services().intake.clock()


def session_hash(sid: str) -> str:
    """What the sessions table keeps of a session id (the cookie's value)."""
    return hashlib.sha256(sid.encode()).hexdigest()


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
