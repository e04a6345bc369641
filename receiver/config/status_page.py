"""The ``status_page`` section: the public status page's name, components and publishing policy.

A component is mapped to incidents by Alertmanager matchers (``match``, ``match_re``,
``matchers``, the same spellings as rules and severity rules), tested against the labels of
each of the incident's alerts and its group labels. Nothing on the page comes from an alert
by itself: an incident appears there once an operator writes a public update.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.intake.matchers import MatchSpec

_SLUG = re.compile(r"[^a-z0-9]+")


def component_id(name: str) -> str:
    """A component's stable id on the page and in ``/status.json``: its name, slugged."""
    return _SLUG.sub("-", name.lower()).strip("-") or "component"


class StatusComponent(MatchSpec):
    """One component: what the public sees (name, description) and which incidents affect
    it (the matchers; a component without matchers is only ever set by an override)."""

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)

    @field_validator("name")
    @classmethod
    def _name_has_letters(cls, value: str) -> str:
        value = value.strip()
        if not _SLUG.sub("", value.lower()):
            raise ValueError("must contain a letter or a digit")
        return value

    @property
    def id(self) -> str:
        return component_id(self.name)


class StatusApproval(Section):
    first_post: bool = Field(
        default=False, description="the first public update of an incident waits for a second "
        "operator's approval before it is shown")
    groups: list[str] = Field(
        default_factory=list,
        description="who may approve (people.users groups); empty: any other operator")


class StatusPageConfig(Section):
    enabled: bool = Field(default=False,
                          description="serve /status, /status.json and /status/feed.atom")
    title: str = Field(default="Service status", min_length=1, max_length=100)
    refresh: Duration = Field(default=timedelta(seconds=60),
                              description="the page reloads itself this often (meta refresh)")
    history: Duration = Field(default=timedelta(days=7),
                              description="resolved incidents stay on the page this long")
    feed_entries: int = Field(default=50, ge=1, le=500)
    components: list[StatusComponent] = Field(default_factory=list)
    approval: StatusApproval = Field(default_factory=StatusApproval)

    @field_validator("refresh")
    @classmethod
    def _refresh_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=5) <= value <= timedelta(hours=1):
            raise ValueError("between 5s and 1h")
        return value

    @field_validator("history")
    @classmethod
    def _history_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=3650):
            raise ValueError("between 0s and 3650d")
        return value

    @model_validator(mode="after")
    def _unique_components(self) -> StatusPageConfig:
        seen: set[str] = set()
        for c in self.components:
            if c.id in seen:
                raise ValueError(f"two components share the id {c.id!r} (names must differ "
                                 "in more than case and punctuation)")
            seen.add(c.id)
        return self

    def component(self, name_or_id: str) -> StatusComponent | None:
        return next((c for c in self.components if name_or_id in (c.name, c.id)), None)
