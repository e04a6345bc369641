"""The ``oncall`` section: the roster of roles (the checklist's emergency contacts).

Each role has either a fixed ``primary`` or a weekly ``rotation`` of people with a hand-off
day, time and time zone, and an optional ``backup``::

    oncall:
      backup_after: 10m
      roles:
        oncall-engineer:
          rotation:
            people: [alice, bob, carol]
            handoff: {day: monday, time: "09:00", timezone: Europe/Berlin}
            starts: 2026-01-05          # people[0]'s turn begins at the first hand-off from here
          backup: dave
        tech-lead: {primary: erin, backup: frank}

People are ``people.users`` names. Temporary overrides are made with
``remediator oncall override`` and kept in the store (see :mod:`receiver.people.roster`).
"""

from __future__ import annotations

import datetime as dt
from datetime import date, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from receiver.config.people import UserName
from receiver.config.section import Section
from receiver.durations import Duration

RoleName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday",
                             "saturday", "sunday")


class Handoff(Section):
    day: Weekday = "monday"
    time: dt.time = dt.time(9, 0)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def weekday(self) -> int:
        return WEEKDAYS.index(self.day)


class Rotation(Section):
    people: list[UserName] = Field(min_length=1)
    handoff: Handoff = Field(default_factory=Handoff)
    starts: date = date(2026, 1, 5)
    """``people[0]``'s first turn begins at the first hand-off on or after this date; the
    others follow one week each, in order, and round again."""


class Role(Section):
    primary: UserName | None = None
    rotation: Rotation | None = None
    backup: UserName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Role:
        if (self.primary is None) == (self.rotation is None):
            raise ValueError("give either primary or rotation")
        return self


class OncallConfig(Section):
    roles: dict[RoleName, Role] = Field(default_factory=dict)
    backup_after: Duration = timedelta(minutes=10)
    """The backup is called in when the primary has not acknowledged within this."""


def roster_problems(config: OncallConfig, users: set[str]) -> list[tuple[str, str]]:
    """Each person the roster names must be a ``people.users`` entry: (path, message)."""
    problems: list[tuple[str, str]] = []
    for name, role in config.roles.items():
        where = f"oncall.roles.{name}"
        for field, person in (("primary", role.primary), ("backup", role.backup)):
            if person is not None and person not in users:
                problems.append((f"{where}.{field}", f"{person!r} is not in people.users"))
        if role.rotation is not None:
            for i, person in enumerate(role.rotation.people):
                if person not in users:
                    problems.append((f"{where}.rotation.people[{i}]",
                                     f"{person!r} is not in people.users"))
    return problems


ROLE_GROUP_PREFIX = "oncall:"


def role_reference_problems(config: OncallConfig,
                            named: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """Each ``oncall:<role>`` group named at a path (approval groups, chat invitations)
    must be a configured role: (path, message)."""
    problems: list[tuple[str, str]] = []
    for where, groups in named:
        for j, group in enumerate(groups):
            role = group.removeprefix(ROLE_GROUP_PREFIX)
            if group.startswith(ROLE_GROUP_PREFIX) and role not in config.roles:
                known = ", ".join(config.roles) or "none configured"
                problems.append((f"{where}[{j}]", f"no on-call role {role!r} (oncall.roles: "
                                                  f"{known})"))
    return problems
