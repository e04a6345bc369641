"""The ``chat`` section: a room per incident on a chat server (Matrix, or a Slack channel),
which severities get one, how rooms are named, who is invited, and the chat outbox's retry.

The homeserver URL is the only host the chat client ever connects to: no ``.well-known``
discovery, no redirect followed. It must be ``https://``, or ``http://`` on a loopback
address only (the access token would otherwise cross a network in clear text).
"""

from __future__ import annotations

import ipaddress
import string
from datetime import timedelta
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, field_validator, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.incidents.event_kinds import EventKind
from receiver.intake.severity import Severity
from receiver.secrets import SecretRef

MatrixUserId = Annotated[
    str, Field(pattern=r"^@[a-z0-9._=/+-]{1,200}:[A-Za-z0-9.-]{1,200}(:[0-9]{1,5})?$")
]
"""A Matrix user id (``@alice:example.org``)."""

NAME_FIELDS = ("date", "slug", "severity", "id")
"""What a room name template may use: ``{date}`` (the incident's opening day, YYYY-MM-DD),
``{slug}`` (alert name and summary), ``{severity}`` (lower case), ``{id}`` (incident id)."""

POSTED_DEFAULT = (
    EventKind.OPENED, EventKind.REOPENED, EventKind.RESOLVED, EventKind.SEVERITY_CHANGED,
    EventKind.STATE_CHANGED, EventKind.ACKNOWLEDGED, EventKind.ASSIGNED, EventKind.NOTE,
    EventKind.SLA_BREACHED, EventKind.ESCALATED, EventKind.REMINDER, EventKind.DIAGNOSTICS,
    EventKind.JOB_ENQUEUED, EventKind.JOB_REFUSED, EventKind.JOB_DRY_RUN,
    EventKind.JOB_AWAITING_APPROVAL, EventKind.JOB_APPROVED, EventKind.JOB_DENIED,
    EventKind.JOB_EXPIRED, EventKind.JOB_STARTED, EventKind.JOB_SUCCEEDED,
    EventKind.JOB_FAILED, EventKind.JOB_ESCALATED, EventKind.VERIFICATION_PASSED,
    EventKind.VERIFICATION_FAILED, EventKind.CIRCUIT_OPENED,
)
"""Timeline kinds posted in an incident's room by default: the ones worth a human's eye. A
``reminder`` (``sla.reminders``: P0 every 15m, P1 every 30m while unresolved) is posted as a
status update: state, SLA, commander, what was done and what is pending."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(value: str, token: str) -> SplitResult:
    """An API base URL that ``token`` is sent to: https://, or http:// on a loopback
    address only; no credentials, query or fragment. ValueError says what is wrong."""
    try:
        url = urlsplit(value)
        host = url.hostname or ""
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not host:
        raise ValueError("must be an https:// URL (http:// only on a loopback address)")
    if url.scheme == "http" and not _loopback(host):
        raise ValueError(f"http:// is allowed on a loopback address only: the {token} "
                         "would cross the network in clear text")
    if url.username or url.password or url.query or url.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    return url


class MatrixConfig(Section):
    """A Matrix homeserver and the bot account remediator acts as there."""

    homeserver: str = Field(max_length=512, description="the client-server API base URL")
    user_id: MatrixUserId = Field(description="the bot's user id (it creates the rooms)")
    access_token: SecretRef = Field(description="the bot's access token, as env: or file:")
    timeout: Duration = timedelta(seconds=10)

    @field_validator("homeserver")
    @classmethod
    def _homeserver(cls, value: str) -> str:
        url = _base_url(value, "access token")
        if url.path not in ("", "/"):
            raise ValueError("must be the homeserver's base URL (no path)")
        return value.rstrip("/")


class SlackConfig(Section):
    """A Slack workspace through its Web API: the bot token remediator posts with and the
    signing secret that the interactivity endpoint (``POST /slack/interactivity``) checks
    every request of Slack against."""

    bot_token: SecretRef = Field(description="the bot's token (xoxb-...), as env: or file:")
    signing_secret: SecretRef = Field(description="the app's signing secret, as env: or file:")
    api_url: str = Field(default="https://slack.com/api/", max_length=512,
                         description="the Web API base URL (https://, or http:// on loopback)")
    bot_user_id: str = Field(default="", pattern=r"^([UWB][A-Z0-9]{2,30})?$",
                             description="the bot's own user id (its clicks never count)")
    timeout: Duration = timedelta(seconds=10)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        _base_url(value, "bot token")
        return value.rstrip("/") + "/"


class ChatRetry(Section):
    backoff_initial: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(minutes=1)

    @model_validator(mode="after")
    def _order(self) -> ChatRetry:
        if self.backoff_initial <= timedelta(0) or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        return self


class ChatConfig(Section):
    """A room per incident: created once when an incident opens at one of ``severities``,
    its timeline posted there, approvals decided there by mapped people."""

    matrix: MatrixConfig | None = None
    slack: SlackConfig | None = None
    severities: list[Severity] = Field(default_factory=lambda: [Severity.P0, Severity.P1],
                                       min_length=1)
    room_name: str = Field(default="incident-{date}-{slug}", min_length=1, max_length=80)
    invite_groups: list[str] | None = Field(
        default=None, description="people.users groups invited to each room (their members "
        "with a matrix id); default: the groups that any rule's approval names")
    events: list[EventKind] = Field(default_factory=lambda: list(POSTED_DEFAULT), min_length=1)
    archive_on_close: bool = Field(
        default=False, description="when the incident is closed (or a false alarm), mark the "
        "room closed: its topic starts with [closed]")
    update_interval: Duration | None = Field(
        default=None, description="a status update in the room every this long while a P0 "
        "or P1 incident is unresolved; default: sla.reminders (P0 15m, P1 30m)")
    poll_interval: Duration = timedelta(seconds=1)
    sync_timeout: Duration = timedelta(seconds=10)
    retry: ChatRetry = Field(default_factory=ChatRetry)

    @field_validator("room_name")
    @classmethod
    def _template(cls, value: str) -> str:
        literal = []
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"bad template: {exc}") from None
        for text, field_name, spec, conversion in parsed:
            literal.append(text)
            if field_name is None:
                continue
            if field_name not in NAME_FIELDS or spec or conversion:
                raise ValueError(f"unknown field {{{field_name}}}; a template may use "
                                 + ", ".join(f"{{{n}}}" for n in NAME_FIELDS))
        text = "".join(literal)
        if any(not (c.islower() or c.isdigit() or c in "-_.") or not c.isascii() for c in text):
            raise ValueError("the literal text may hold lower-case letters, digits, '-', '_' "
                             "and '.' only")
        if "{slug}" not in value and "{id}" not in value:
            raise ValueError("must use {slug} or {id}")
        return value

    @field_validator("sync_timeout", "poll_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(minutes=5):
            raise ValueError("must be between 0 and 5m")
        return value

    @field_validator("update_interval")
    @classmethod
    def _interval(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> ChatConfig:
        if self.matrix is not None and self.slack is not None:
            raise ValueError("configure one chat backend: matrix or slack")
        return self

    @property
    def enabled(self) -> bool:
        return self.matrix is not None or self.slack is not None

    def update_intervals(self, reminders: dict[Severity, timedelta]
                         ) -> dict[Severity, timedelta]:
        """How often each severity gets a status update (``sla.reminders``, with P0 and P1
        at ``update_interval`` when it is set)."""
        found = dict(reminders)
        if self.update_interval is not None:
            found[Severity.P0] = found[Severity.P1] = self.update_interval
        return found

    @property
    def timeout(self) -> timedelta:
        found = self.matrix or self.slack
        return found.timeout if found is not None else timedelta(seconds=10)
