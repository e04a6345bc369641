"""Signed approval links (itsdangerous): bound to one approval and one approver, expiring.

A link is ``<public_url>/approvals/<token>``; the token carries the approval id, the
approver, the approval's expiry and a nonce, signed with the server's secret key under
its own salt. Tampered or truncated tokens fail the signature check; a token past its
expiry is refused even if the approval itself would still be open. Single use is not the
token's job: the database enforces it (one vote per approver, one decision per approval).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeSerializer

from receiver.config import Config
from receiver.errors import TokenError

if TYPE_CHECKING:
    from receiver.store.approvals import Approval
    from receiver.store.oncall import Override

APPROVAL_SALT = "remediator.approval-link.v1"


def secret_key(config: Config) -> str:
    """The configured key, or a random one kept in ``data_dir/secret_key`` (0600)."""
    if config.server.secret_key is not None:
        return config.server.secret_key.reveal()
    path = Path(config.data_dir) / "secret_key"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class ApprovalClaim:
    approval_id: int
    approver: str
    expires_at: datetime
    nonce: str


def _serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=APPROVAL_SALT)


def make_token(key: str, approval_id: int, approver: str, expires_at: datetime) -> str:
    payload = {"a": approval_id, "u": approver, "e": int(expires_at.timestamp()),
               "n": secrets.token_urlsafe(8)}
    return str(_serializer(key).dumps(payload))


def read_token(key: str, token: str, *, now: datetime) -> ApprovalClaim:
    if len(token) > 1024:
        raise TokenError("invalid_token", "this approval link is not valid")
    try:
        data: Any = _serializer(key).loads(token)
    except BadSignature as exc:
        raise TokenError("invalid_token", "this approval link is not valid") from exc
    if not isinstance(data, dict) or not {"a", "u", "e", "n"} <= data.keys():
        raise TokenError("invalid_token", "this approval link is not valid")
    claim = ApprovalClaim(int(data["a"]), str(data["u"]),
                          datetime.fromtimestamp(int(data["e"]), UTC), str(data["n"]))
    if claim.expires_at <= now:
        raise TokenError("expired", f"this approval link expired at {claim.expires_at.isoformat()}")
    return claim


def eligible_approvers(config: Config, groups: Iterable[str], at: datetime | None = None,
                       overrides: Iterable[Override] = ()) -> list[str]:
    """The configured users who may decide an approval limited to ``groups`` (everyone
    when it names none); an ``oncall:<role>`` group is whoever holds the role ``at``
    (default now), with ``overrides``."""
    from receiver.people import roster

    wanted = set(groups)
    if not wanted:
        return sorted(config.people.users)
    at = at or datetime.now(UTC)
    overrides = list(overrides)
    people: set[str] = set()
    for group in wanted:
        people |= roster.members(config, group, at, overrides)
    return sorted(u for u in config.people.users if u in people)


def approval_links(config: Config, approval: Approval,
                   overrides: Iterable[Override] = ()) -> dict[str, str]:
    """One link per eligible approver now (user -> URL)."""
    key = secret_key(config)
    base = config.server.public_url.rstrip("/")
    return {
        user: f"{base}/approvals/{make_token(key, approval.id, user, approval.expires_at)}"
        for user in eligible_approvers(config, approval.groups, overrides=overrides)
    }
