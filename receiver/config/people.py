"""The ``people`` section: operators and approvers, their groups, the trusted auth proxy and
API tokens."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.secrets import SecretRef


class Person(Section):
    groups: list[str] = Field(default_factory=list)
    email: str | None = None
    password_hash: str | None = None


UserName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,99}$")]


class TrustedProxy(Section):
    """An auth proxy (oauth2-proxy style) that sets the user in a header."""

    header: str = Field(default="X-Forwarded-User", pattern=r"^[A-Za-z0-9-]{1,64}$")
    addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"], min_length=1)

    @field_validator("addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    def trusts(self, remote: str | None) -> bool:
        if not remote:
            return False
        try:
            ip = ipaddress.ip_address(remote)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.addresses)


class ApiToken(Section):
    token: SecretRef
    user: UserName
    scope: Literal["read", "operator"] = "read"


class PeopleConfig(Section):
    """Operators and approvers. Approval policies name groups from here."""

    users: dict[UserName, Person] = Field(default_factory=dict)
    trusted_proxy: TrustedProxy | None = None
    api_tokens: dict[str, ApiToken] = Field(default_factory=dict)
    session_lifetime: Duration = timedelta(hours=12)

    def groups_of(self, user: str) -> set[str]:
        person = self.users.get(user)
        return set(person.groups) if person else set()
