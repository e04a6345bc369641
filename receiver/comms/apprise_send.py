"""Sending one message through apprise, and keeping channel URLs' secrets out of errors.

Channel URLs hold tokens. They never reach a log line, a message, or ``last_error``: error
text is scrubbed of every part of the URL (:func:`secret_parts`), then passed through
``logs.redact_value``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from receiver.comms import markup
from receiver.config import NotificationChannel
from receiver.errors import DeliveryFailed
from receiver.incidents.event_kinds import NotifyType
from receiver.runtime.logs import redact_value

ERROR_LIMIT = 1000

BodyFormat = Literal["text", "markdown", "slack", "html"]


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    body_format: BodyFormat = "text"
    notify_type: NotifyType = "info"
    subject: str = ""
    """The title as plain text on one line, for services whose title is a header (email)."""

APPRISE_FORMATS: dict[str, str] = {"text": "text", "markdown": "markdown", "slack": "markdown",
                                   "html": "html"}
"""The apprise body format of each of our body formats (Slack's mrkdwn goes as markdown)."""


def secret_parts(url: str) -> list[str]:
    """Every piece of an apprise URL that could be a credential, longest first."""
    parts: set[str] = {url}
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    rest = url.partition("://")[2] or url
    for piece in re.split(r"[/:@?&=#,;]+", rest):
        if len(piece) >= 4 and piece.lower() != host.lower():
            parts.update({piece, unquote(piece)})
    return sorted(parts, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets``, with URL credentials and bearer tokens redacted."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return str(redact_value(text))[:ERROR_LIMIT]


# -- apprise ------------------------------------------------------------------------------
class _ThreadLog(logging.Handler):
    """Collects the apprise log records of one thread (apprise reports why only by logging)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


@dataclass
class AppriseSender:
    """Sends through apprise: one ``apprise.Apprise()`` per channel, kept for this sender's
    life (so apprise's own per-service throttling applies), with socket timeouts."""

    timeout: float
    _clients: dict[str, Any] = field(default_factory=dict)
    _header_title: set[str] = field(default_factory=set)

    def _client(self, name: str, channel: NotificationChannel) -> Any:
        import apprise  # deferred: loading apprise's plugins is slow and only a worker needs it

        client = self._clients.get(name)
        if client is None:
            plugin = apprise.Apprise.instantiate(channel.url.reveal())
            if plugin is None:
                raise DeliveryFailed(f"channel {name}: apprise does not accept its URL "
                                     f"({channel.url.ref})")
            plugin.socket_connect_timeout = self.timeout
            plugin.socket_read_timeout = self.timeout
            client = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
            client.add(plugin)
            self._clients[name] = client
            if "mailto" in (getattr(plugin, "protocol", None) or ()):
                # A mail's title is its Subject header: plain text, never markup.
                self._header_title.add(name)
        return client

    def __call__(self, name: str, channel: NotificationChannel, message: Message) -> None:
        secrets = secret_parts(channel.url.reveal())
        client = self._client(name, channel)
        capture = _ThreadLog()
        apprise_log = logging.getLogger("apprise")
        apprise_log.addHandler(capture)
        title, body = message.title, message.body
        body_format = APPRISE_FORMATS[message.body_format]
        if message.body_format == "text":
            # apprise's chat plugins read markup even in plain text (Slack's makes a link of
            # "<url|text>" and a mention of "<!channel>"): hand it HTML, which apprise
            # converts for each service, so that plain text stays plain text everywhere.
            # (Only "<br>": with a newline after it, apprise's HTML-to-text conversion for
            # text services starts every line with a space.)
            title, body = markup.html_text(title), markup.html_text(body).replace("\n", "<br>")
            body_format = "html"
        if name in self._header_title and message.subject:
            title = message.subject
        try:
            ok = client.notify(title=title, body=body, body_format=body_format,
                               notify_type=message.notify_type)
        except Exception as exc:  # noqa: BLE001 - a plugin bug is one failed delivery, not a crash
            raise DeliveryFailed(scrub(f"{type(exc).__name__}: {exc}", secrets)) from None
        finally:
            apprise_log.removeHandler(capture)
        if not ok:
            why = "; ".join(dict.fromkeys(capture.lines)) or "apprise reported a failure"
            raise DeliveryFailed(scrub(why, secrets))
