"""The field types of the web layer's request models (:mod:`receiver.web.requests`):
values that fit both stores, parsed and bounded at the edge.

- ids and cursors fit a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT);
- times are aware and convertible to UTC; durations are finite and bounded, so
  ``now - window`` cannot overflow;
- text holds neither NUL (PostgreSQL text cannot store it) nor lone surrogates (not
  encodable as UTF-8).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    WithJsonSchema,
)
from werkzeug.routing import IntegerConverter, Map

from receiver.durations import parse_duration
from receiver.incidents.states import STATES

MAX_ID = 2**63 - 1
"""The largest id or cursor: a signed 64-bit integer, the range of both stores' columns."""
MAX_WINDOW = timedelta(days=36_525)
"""The longest ``since`` window (100 years); longer ones are refused, never overflowed."""
MAX_FILTER_LEN = 500
MAX_TIME_LEN = 64


class IdConverter(IntegerConverter):
    """``<id:name>`` in a route: 1..2**63-1. Any other path segment does not match (404)."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=MAX_ID)


# -- field types ---------------------------------------------------------------------------

def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from exc
    return value


Text = Annotated[str, AfterValidator(_clean_text)]
"""A string that both stores can hold: no NUL, encodable as UTF-8."""


def _blank_is_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Cursor = Annotated[int, Field(ge=0, le=MAX_ID)]
FilterText = Annotated[
    Text, BeforeValidator(_strip), Field(min_length=1, max_length=MAX_FILTER_LEN)
]


def parse_time(value: Any) -> datetime:
    """An RFC 3339 / ISO 8601 time; a time without a zone is taken as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) > MAX_TIME_LEN:
        raise ValueError(f"at most {MAX_TIME_LEN} characters")
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("not an RFC 3339 time such as 2026-03-02T10:00:00Z") from exc
    else:
        raise ValueError("not an RFC 3339 time such as 2026-03-02T10:00:00Z")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc


def parse_window(value: str) -> timedelta:
    """A duration such as ``90s``, ``15m``, ``1h30m`` or ``2d``, at most :data:`MAX_WINDOW`."""
    too_long = ValueError(f"a duration of at most {MAX_WINDOW.days} days")
    try:
        window = parse_duration(value.strip() or "-")
    except OverflowError:
        raise too_long from None
    except ValueError:
        raise ValueError("not a duration such as 90s, 15m, 24h or 7d") from None
    if window > MAX_WINDOW:
        raise too_long
    return window


def _time_or_window(value: Any) -> datetime | timedelta:
    if isinstance(value, datetime | timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("an RFC3339 time or a duration like 24h")
    if len(value) > MAX_TIME_LEN:
        raise ValueError(f"at most {MAX_TIME_LEN} characters")
    try:
        return parse_time(value)
    except ValueError:
        pass
    try:
        return parse_window(value)
    except ValueError as exc:
        if "at most" in str(exc):
            raise
        raise ValueError("an RFC3339 time or a duration like 24h") from exc


_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"

Time = Annotated[
    datetime,
    PlainValidator(parse_time),
    WithJsonSchema({"type": "string", "format": "date-time", "maxLength": MAX_TIME_LEN,
                    "description": "RFC 3339; a time without a zone is UTC"}),
]
TimeOrWindow = Annotated[
    datetime | timedelta,
    PlainValidator(_time_or_window),
    WithJsonSchema({
        "description": "an RFC 3339 time, or a window back from now such as 24h or 7d "
                       f"(at most {MAX_WINDOW.days} days)",
        "anyOf": [{"type": "string", "format": "date-time", "maxLength": MAX_TIME_LEN},
                  {"type": "string", "pattern": _DURATION_PATTERN,
                   "maxLength": MAX_TIME_LEN}],
    }),
]

IncidentState = Literal[STATES]  # type: ignore[valid-type]
SeverityName = Literal["P0", "P1", "P2", "P3"]
