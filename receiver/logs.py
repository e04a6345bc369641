"""Structured JSON logs (structlog) with secrets redacted by a processor, not by habit.

The processor cuts secret-named keys, URL credentials and bearer tokens from every event,
and every configured secret (the :class:`~receiver.secrets.Redactor` given to
:func:`configure_logging`) from every string in it, the rendered exception included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from receiver.secrets import NO_SECRETS, REDACTED, Redactor

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key|dsn|cookie)", re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}")


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        value = _URL_CREDENTIALS.sub(r"\g<scheme>[redacted]@", value)
        return _BEARER.sub(r"\1 [redacted]", value)
    if isinstance(value, dict):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_mapping(data: MutableMapping[str, Any] | dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, str) and _SECRET_KEYS.search(key) and value not in (None, ""):
            out[key] = REDACTED
        else:
            out[key] = redact_value(value)
    return out


class RedactSecrets:
    """The structlog processor: patterns first, then the configured secrets."""

    def __init__(self, redactor: Redactor = NO_SECRETS) -> None:
        self.redactor = redactor

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return self.redactor(redact_mapping(event_dict))


def configure_logging(
    level: str = "info", fmt: str = "json", redactor: Redactor = NO_SECRETS
) -> None:
    """Configure structlog once per process; ``redactor`` (``secrets.redactor_for(config)``)
    names the secrets that no log line may carry."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            RedactSecrets(redactor),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
