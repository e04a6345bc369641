"""Webhook and API authentication: bearer token and/or HTTP basic, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from receiver.config import AuthConfig


class Authenticator:
    def __init__(self, config: AuthConfig, *, insecure_no_auth: bool = False) -> None:
        self.config = config
        self.insecure = insecure_no_auth and not config.configured
        self._token = (
            config.bearer_token.reveal().encode() if config.bearer_token is not None else None
        )
        self._basic = (
            (config.basic.username.encode(), config.basic.password.reveal().encode())
            if config.basic is not None
            else None
        )

    @property
    def challenge(self) -> str:
        return 'Basic realm="remediator"' if self._basic else 'Bearer realm="remediator"'

    def check(self, header: str | None) -> bool:
        """True when the Authorization header carries valid credentials (or auth is off)."""
        if self.insecure:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and self._token is not None:
            return hmac.compare_digest(value.encode(), self._token)
        if scheme == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(value.encode(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            if not sep:
                return False
            user_ok = hmac.compare_digest(user, self._basic[0])
            pass_ok = hmac.compare_digest(password, self._basic[1])
            return user_ok and pass_ok
        return False
