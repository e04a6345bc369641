"""Structured JSON logs (structlog) with secrets redacted by a processor, not by habit.

The processor cuts secret-named keys, URL credentials and bearer tokens from every event,
and every configured secret (the :class:`~receiver.secrets.Redactor` given to
:func:`configure_logging`) from every string in it, the rendered exception included.
Records of the standard library's loggers (gunicorn's error log, apprise, urllib3) get the
same treatment where they are made, by the process's log record factory, whatever handler
writes them afterwards.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable, MutableMapping
from functools import lru_cache
from typing import Any

import structlog

from receiver.secrets import NO_SECRETS, REDACTED, Redactor

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key|dsn|cookie)", re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}")


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        # a search first: most strings hold neither, and a search costs less than a sub
        if "@" in value and "://" in value:
            value = _URL_CREDENTIALS.sub(r"\g<scheme>[redacted]@", value)
        if _BEARER.search(value) is not None:
            value = _BEARER.sub(r"\1 [redacted]", value)
        return value
    if isinstance(value, dict):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


@lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None


def redact_mapping(data: MutableMapping[str, Any] | dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, str) and value not in (None, "") and _secret_key(key):
            out[key] = REDACTED
        elif value is None or isinstance(value, int | float):
            out[key] = value  # nothing to redact in a number (bool is an int)
        else:
            out[key] = redact_value(value)
    return out


class RedactSecrets:
    """The structlog processor: patterns first, then the configured secrets."""

    def __init__(self, redactor: Redactor = NO_SECRETS) -> None:
        self.redactor = redactor

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        return self.redactor(redact_mapping(event_dict))


class _RedactingRecordFactory:
    """Wraps the log record factory: each record's message is rendered and redacted, and
    its exception text with it, before any handler or formatter sees the record."""

    def __init__(self, base: Callable[..., logging.LogRecord], redactor: Redactor) -> None:
        self.base = base
        self.redactor = redactor

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the logging module's to report
            return record
        clean = self.redactor(redact_value(message))
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redactor(redact_value(text))
        return record


def redact_stdlib_records(redactor: Redactor) -> None:
    """Install (or replace) the redacting record factory for this process."""
    base = logging.getLogRecordFactory()
    if isinstance(base, _RedactingRecordFactory):
        base = base.base
    logging.setLogRecordFactory(_RedactingRecordFactory(base, redactor))


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
    redact_stdlib_records(redactor)
