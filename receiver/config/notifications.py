"""The ``notifications`` section: apprise channels, which events and severities each hears
about, and the retry policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.incidents.event_kinds import notified_kinds
from receiver.intake.severity import Severity
from receiver.secrets import SecretRef

ChannelName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]


def _notify_kinds() -> list[str]:
    return notified_kinds()


class NotificationChannel(Section):
    """One apprise destination. ``url`` is an apprise URL (``slack://...``, ``msteams://...``,
    ``mailtos://...``, ``jsons://host/path``...) given as env:/file:, since it holds tokens."""

    url: SecretRef
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
        known = _notify_kinds()
        unknown = [k for k in value if k not in known]
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; known: {', '.join(known)}")
        return value

    def matches(self, kind: str, severity: str) -> bool:
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

    channels: dict[ChannelName, NotificationChannel] = Field(default_factory=dict)
    retry: NotificationRetry = Field(default_factory=NotificationRetry)
    link_base: str | None = Field(default=None, pattern=r"^https?://")
    timeout: Duration = timedelta(seconds=10)
