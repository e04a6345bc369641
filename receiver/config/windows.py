"""Time-of-week windows: business hours (for ``business_day`` deadlines) and maintenance
windows (when matching remediation is blocked)."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKWEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


class BusinessHours(Section):
    timezone: str = "UTC"
    days: list[Weekday] = Field(
        default_factory=lambda: list(_WORKWEEK), min_length=1
    )
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("use HH:MM, 24-hour")
        return value

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.opens >= self.closes:
            raise ValueError("business hours: start must be before end")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def opens(self) -> time:
        return time.fromisoformat(self.start)

    @property
    def closes(self) -> time:
        return time.fromisoformat(self.end)

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(_DAYS.index(d) for d in self.days)


class MaintenanceWindow(Section):
    """A time range during which matching actions are blocked: one-off (``start_at`` and
    ``end_at``) or recurring (``days`` with ``start``/``end`` local times, which may wrap
    past midnight). Empty ``rules``/``targets`` mean every rule/target."""

    name: str = Field(min_length=1, max_length=100)
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    days: list[Weekday] = Field(default_factory=list)
    start: str | None = None
    end: str | None = None
    rules: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list, description="fnmatch patterns")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return BusinessHours._tz(value)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        return BusinessHours._hhmm(value) if value is not None else None

    @model_validator(mode="after")
    def _shape(self) -> MaintenanceWindow:
        one_off = self.start_at is not None or self.end_at is not None
        recurring = bool(self.days) or self.start is not None or self.end is not None
        if one_off == recurring:
            raise ValueError("give either start_at/end_at or days/start/end")
        if one_off:
            if self.start_at is None or self.end_at is None:
                raise ValueError("a one-off window needs start_at and end_at")
            if self.start_at.tzinfo is None or self.end_at.tzinfo is None:
                raise ValueError("start_at/end_at need a time zone offset")
            if self.end_at <= self.start_at:
                raise ValueError("end_at must be after start_at")
        elif not (self.days and self.start and self.end) or self.start == self.end:
            raise ValueError("a recurring window needs days, start and end (start != end)")
        return self

    def active(self, now: datetime) -> bool:
        if self.start_at is not None and self.end_at is not None:
            return self.start_at <= now < self.end_at
        assert self.start is not None and self.end is not None  # noqa: S101 - validated
        local = now.astimezone(ZoneInfo(self.timezone))
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        t, day = local.time(), _DAYS[local.weekday()]
        if start < end:
            return day in self.days and start <= t < end
        # wraps midnight: the window belongs to the day it starts on
        yesterday = _DAYS[(local.weekday() - 1) % 7]
        return (day in self.days and t >= start) or (yesterday in self.days and t < end)

    def covers(self, rule: str, targets: list[str]) -> bool:
        if self.rules and rule not in self.rules:
            return False
        if not self.targets:
            return True
        return any(fnmatch.fnmatchcase(t, p) for t in targets for p in self.targets)
