"""The ``people`` section: operators and approvers, their groups, the trusted auth proxy and
API tokens."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.secrets import SecretRef

UserName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,99}$")]
OsUser = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,63}$")]


class Person(Section):
    groups: list[str] = Field(default_factory=list)
    email: str | None = None
    password_hash: str | None = None
    os_user: OsUser | None = None
    """The OS account whose CLI commands act as this person (default: the same name)."""
    matrix: str | None = Field(
        default=None, pattern=r"^@[a-z0-9._=/+-]{1,200}:[A-Za-z0-9.-]{1,200}(:[0-9]{1,5})?$")
    """The Matrix user id that acts as this person in incident rooms (``@alice:example.org``)."""
    slack: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,30}$")
    """The Slack user id that acts as this person in incident channels (``U012ABC``)."""

    def chat_id(self, backend: str) -> str | None:
        """This person's identity on a chat backend (``matrix`` or ``slack``)."""
        return self.slack if backend == "slack" else self.matrix


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


class LoginLimits(Section):
    """Failed logins allowed per user name and per client address within ``window``
    (counted in the store, so across workers and replicas); 0 turns a limit off."""

    user_failures: int = Field(default=5, ge=0, le=1_000_000)
    address_failures: int = Field(default=20, ge=0, le=1_000_000)
    window: Duration = timedelta(minutes=15)
    audited_failures: int = Field(default=50, ge=1, le=1_000_000)
    """Failed logins of any user and address audited per window; the rest are counted."""

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


class PeopleConfig(Section):
    """Operators and approvers. Approval policies name groups from here."""

    users: dict[UserName, Person] = Field(default_factory=dict)
    trusted_proxy: TrustedProxy | None = None
    api_tokens: dict[str, ApiToken] = Field(default_factory=dict)
    session_lifetime: Duration = timedelta(hours=12)
    login_limits: LoginLimits = Field(default_factory=LoginLimits)

    @model_validator(mode="after")
    def _one_person_per_os_account(self) -> PeopleConfig:
        owner: dict[str, str] = {}
        for name, person in self.users.items():
            if person.os_user is None:
                continue
            if person.os_user in owner:
                raise ValueError(f"os_user {person.os_user!r} is given to both "
                                 f"{owner[person.os_user]} and {name}")
            owner[person.os_user] = name
        matrix: dict[str, str] = {}
        for name, person in self.users.items():
            if person.matrix is not None and person.matrix in matrix:
                raise ValueError(f"matrix id {person.matrix!r} is given to both "
                                 f"{matrix[person.matrix]} and {name}")
            if person.matrix is not None:
                matrix[person.matrix] = name
        slack: dict[str, str] = {}
        for name, person in self.users.items():
            if person.slack is not None and person.slack in slack:
                raise ValueError(f"slack id {person.slack!r} is given to both "
                                 f"{slack[person.slack]} and {name}")
            if person.slack is not None:
                slack[person.slack] = name
        return self

    def groups_of(self, user: str) -> set[str]:
        person = self.users.get(user)
        return set(person.groups) if person else set()

    def person_of_os_user(self, os_user: str) -> str | None:
        """The person an OS account acts as: the one whose ``os_user`` names it, else the
        person of the same name unless that person is bound to another account."""
        for name, person in self.users.items():
            if person.os_user == os_user:
                return name
        same = self.users.get(os_user)
        if same is not None and same.os_user is None:
            return os_user
        return None

    def person_of_chat(self, backend: str, user_id: str) -> str | None:
        """The person a chat identity acts as on ``backend`` (``matrix`` or ``slack``)."""
        for name, person in self.users.items():
            found = person.chat_id(backend)
            if found is not None and found == user_id:
                return name
        return None

    def person_of_matrix(self, user_id: str) -> str | None:
        """The person a Matrix user id acts as (their ``matrix`` field), or None."""
        for name, person in self.users.items():
            if person.matrix is not None and person.matrix == user_id:
                return name
        return None
