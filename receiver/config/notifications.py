"""The ``notifications`` section: apprise channels, which events and severities each hears
about, the audiences they speak to, and the retry policy.

Audiences are named presets of a channel's filters and of how its messages are written::

    notifications:
      audiences:                 # optional: the three below exist unless redefined
        stakeholders: {severities: [P0, P1], events: [opened, mitigated, resolved]}
      channels:
        execs: {url: env:EXEC_MAIL_URL, audience: stakeholders}

``notifications.audiences.<name>`` has ``severities``, ``events``, ``message`` (``responder``:
the full message on-call engineers get; ``stakeholder``: written for people outside the
incident, see :mod:`receiver.comms.stakeholder`), ``labels`` (the only incident group labels
a stakeholder message shows, none by default), ``update_every`` (the "next update" time of a
stakeholder message) and ``impact`` (the impact summary per severity). Built in:
``stakeholders`` (P0/P1: opened, mitigated, resolved; stakeholder messages, next update in
30 minutes), ``management`` (P0/P1: also escalated and sla_breached; next update in an hour)
and ``oncall`` (everything a channel hears by default; responder messages). Redefining one
of them changes only the fields given.

``notifications.channels.<name>.audience`` names one; the channel's own ``events`` and
``severities``, when given, still win over the audience's. A channel with an audience also
hears ``mitigated`` (an incident moved to mitigated) and a person's resolve as ``resolved``.
A channel without an audience behaves exactly as before audiences existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.incidents.event_kinds import (
    audience_event_names,
    default_channel_kinds,
    event_names,
    notified_kinds,
)
from receiver.intake.severity import Severity
from receiver.secrets import SecretRef

ChannelName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]
AudienceName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]


def _notify_kinds() -> list[str]:
    return default_channel_kinds()


def _check_kinds(value: list[str], known: list[str]) -> list[str]:
    unknown = [k for k in value if k not in known]
    if unknown:
        raise ValueError(f"unknown event kinds {unknown}; known: {', '.join(known)}")
    return value


DEFAULT_IMPACT: dict[str, str] = {
    "P0": "Critical: a service is down or unusable for many users.",
    "P1": "Major: a service is degraded for many users.",
    "P2": "Minor: some users may notice a degraded service.",
    "P3": "Low: little or no effect on users.",
}
"""The impact summary of a stakeholder message, per severity, unless an audience says."""


class Audience(Section):
    """Who a channel speaks to: which events and severities reach it, and how it is told."""

    severities: list[Severity] = Field(default_factory=lambda: list(Severity), min_length=1)
    events: list[str] = Field(default_factory=_notify_kinds, min_length=1)
    message: Literal["responder", "stakeholder"] = Field(
        default="responder",
        description="responder: the full message; stakeholder: title, severity, state, "
        "impact, next update and the incident link only",
    )
    labels: list[Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$")]] = Field(
        default_factory=list,
        description="incident group labels a stakeholder message may show (none by default)",
    )
    update_every: Duration | None = None
    impact: dict[Severity, Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=dict)

    @field_validator("events")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        return _check_kinds(value, audience_event_names())

    def impact_of(self, severity: str) -> str:
        own = {str(k): v for k, v in self.impact.items()}
        return own.get(severity) or DEFAULT_IMPACT.get(severity, "")


AUDIENCE_PRESETS: dict[str, dict[str, object]] = {
    "stakeholders": {"severities": ["P0", "P1"], "events": ["opened", "mitigated", "resolved"],
                     "message": "stakeholder", "update_every": "30m"},
    "management": {"severities": ["P0", "P1"],
                   "events": ["opened", "escalated", "sla_breached", "mitigated", "resolved"],
                   "message": "stakeholder", "update_every": "1h"},
    "oncall": {},
}
"""The built-in audiences; ``notifications.audiences.<name>`` changes the fields it gives."""


@dataclass(frozen=True)
class Route:
    """What one channel hears: its events and severities, and its audience (if any)."""

    events: frozenset[str]
    severities: frozenset[str]
    audience: Audience | None

    def matches(self, kind: str, severity: str, detail: Mapping[str, Any] | None = None) -> bool:
        names = event_names(kind, detail, derived=self.audience is not None)
        return severity in self.severities and not names.isdisjoint(self.events)


class NotificationChannel(Section):
    """One apprise destination. ``url`` is an apprise URL (``slack://...``, ``msteams://...``,
    ``mailtos://...``, ``jsons://host/path``...) given as env:/file:, since it holds tokens."""

    url: SecretRef
    audience: AudienceName | None = None
    events: list[str] = Field(default_factory=_notify_kinds, min_length=1)
    severities: list[Severity] = Field(default_factory=lambda: list(Severity), min_length=1)
    format: Literal["text", "markdown", "slack", "html"] = Field(
        default="text",
        description="the body's markup: text, markdown (CommonMark), slack (mrkdwn) or html; "
        "alert text is escaped for it, so only remediator's own links are links",
    )

    @field_validator("url")
    @classmethod
    def _apprise_url(cls, value: SecretRef) -> SecretRef:
        import apprise  # deferred: only configs with channels pay for loading its plugins

        if apprise.Apprise.instantiate(value.reveal()) is None:
            scheme = value.reveal().partition("://")[0] if "://" in value.reveal() else "?"
            raise ValueError(f"{value.ref} is not a URL apprise can send to (scheme {scheme!r})")
        return value

    @field_validator("events")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        return _check_kinds(value, audience_event_names())

    @model_validator(mode="after")
    def _derived_need_audience(self) -> NotificationChannel:
        if self.audience is None and "events" in self.model_fields_set:
            derived = sorted(set(self.events) - set(notified_kinds()))
            if derived:
                raise ValueError(f"events {derived} are heard only by a channel with an "
                                 "audience (set audience)")
        return self

    def matches(self, kind: str, severity: str) -> bool:
        """The filters of the channel itself (a channel without an audience)."""
        return kind in self.events and severity in self.severities


class NotificationRetry(Section):
    max_attempts: int = Field(default=20, ge=1, le=1000)
    backoff_initial: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _order(self) -> NotificationRetry:
        if self.backoff_initial <= timedelta(0) or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        return self


class NotificationsConfig(Section):
    """Phase 4: who hears about what. Outbox rows fan out to every channel whose events and
    severities match; the worker sends them with retries. ``link_base`` defaults to
    ``server.public_url``."""

    audiences: dict[AudienceName, Audience] = Field(default_factory=dict)
    channels: dict[ChannelName, NotificationChannel] = Field(default_factory=dict)
    retry: NotificationRetry = Field(default_factory=NotificationRetry)
    link_base: str | None = Field(default=None, pattern=r"^https?://")
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="before")
    @classmethod
    def _presets(cls, data: Any) -> Any:
        """The built-in audiences, each with the fields the config gives for it."""
        if not isinstance(data, dict):
            return data
        given = data.get("audiences") or {}
        if not isinstance(given, dict):
            return data
        merged: dict[str, Any] = {name: dict(preset) for name, preset in AUDIENCE_PRESETS.items()}
        for name, fields in given.items():
            base = merged.get(name, {})
            merged[name] = {**base, **fields} if isinstance(fields, dict) else fields
        return {**data, "audiences": merged}

    def audience_problems(self) -> list[tuple[str, str]]:
        """``(path, problem)`` for each channel naming an audience that does not exist."""
        known = ", ".join(sorted(self.audiences))
        return [(f"notifications.channels.{name}.audience",
                 f"unknown audience {ch.audience!r}; known: {known}")
                for name, ch in sorted(self.channels.items())
                if ch.audience is not None and ch.audience not in self.audiences]

    def route(self, name: str) -> Route:
        """What channel ``name`` hears: its own events and severities when it gives them,
        else its audience's (a channel naming an unknown audience hears nothing)."""
        channel = self.channels[name]
        if channel.audience is None:
            return Route(frozenset(channel.events), frozenset(channel.severities), None)
        audience = self.audiences.get(channel.audience)
        if audience is None:
            return Route(frozenset(), frozenset(), None)
        own = channel.model_fields_set
        events = channel.events if "events" in own else audience.events
        severities = channel.severities if "severities" in own else audience.severities
        return Route(frozenset(events), frozenset(str(s) for s in severities), audience)

    def audience_of(self, name: str) -> Audience | None:
        channel = self.channels.get(name)
        return None if channel is None or channel.audience is None \
            else self.audiences.get(channel.audience)
