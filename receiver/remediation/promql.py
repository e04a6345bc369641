"""PromQL from alert data: one escaping function, and templates whose values may stand only
inside a quoted matcher value.

    up{instance="{{ labels.instance }}"}          allowed: the value becomes a string literal
    up{instance=~"{{ labels.instance }}:.*"}      allowed: regex meta-characters escaped too
    up{instance="a"} or {{ labels.x }}            refused at config load
    sum by ({{ labels.x }}) (rate(x[5m]))         refused
    up{ {{ labels.k }}="x" }                      refused (a label name)
    up{x=`{{ labels.v }}`}                        refused (a raw string cannot escape anything)
    label_replace(up, "a", "{{ labels.v }}", ...) refused (not a matcher value)

:func:`check_query_template` is run on every configured query when the config loads;
:func:`render_query` substitutes an alert's values, each through :func:`escape_string` (and
:func:`escape_regex` first in ``=~`` and ``!~`` matchers, so a value matches only itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from receiver.remediation.rules import PLACEHOLDER, placeholder_value

_OPERATORS = ("=~", "!~", "!=", "=")
_REGEX_OPERATORS = ("=~", "!~")
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_OUTSIDE = (
    "a label or annotation may only stand inside a quoted matcher value, "
    'as in up{instance="{{ labels.instance }}"}'
)


@dataclass(frozen=True)
class _Slot:
    match: re.Match[str]
    quote: str
    regex: bool


def escape_string(value: str, quote: str = '"') -> str:
    """``value`` as the inside of a PromQL string literal opened by ``quote`` (``"`` or ``'``).

    Backslash and the quote are escaped, newline, carriage return and tab as ``\\n \\r \\t``,
    other control characters as ``\\xHH``, and U+FFFD as ``\\ufffd`` (Prometheus' lexer reads
    it literally as invalid UTF-8). ValueError for a lone surrogate, which is not text.
    """
    out: list[str] = []
    for ch in value:
        code = ord(ch)
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("the value holds a lone surrogate, which is not text")
        elif code == 0xFFFD:
            out.append("\\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """``value`` as a Go (RE2) regular expression that matches exactly ``value``, like Go's
    ``regexp.QuoteMeta``."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in value)


def check_query_template(template: str) -> None:
    """Refuse a query that puts a label or annotation anywhere but inside a quoted matcher
    value (ValueError saying where, for the config loader)."""
    _slots(template)


def render_query(template: str, labels: dict[str, str], annotations: dict[str, str]) -> str:
    """The query for one alert: each value escaped for the string literal it stands in
    (TemplateError when the alert lacks one, ValueError when a value is not text)."""
    out: list[str] = []
    pos = 0
    for slot in _slots(template):
        out.append(template[pos: slot.match.start()])
        value = placeholder_value(slot.match, labels, annotations)
        out.append(escape_string(escape_regex(value) if slot.regex else value, slot.quote))
        pos = slot.match.end()
    out.append(template[pos:])
    return "".join(out)


def _operator_before(text: str, at: int) -> str | None:
    head = text[:at].rstrip()
    for op in _OPERATORS:
        if head.endswith(op):
            return None if op == "=" and head[-2:-1] in ("=", "<", ">") else op
    return None


def _slots(template: str) -> list[_Slot]:
    """Lex the query far enough to know where each placeholder stands: strings (with their
    escapes), comments and selector braces."""
    marks = {m.start(): m for m in PLACEHOLDER.finditer(template)}
    slots: list[_Slot] = []
    depth = 0
    i, n = 0, len(template)
    while i < n:
        if i in marks:
            raise ValueError(f"{marks[i].group(0)!r} at offset {i}: {_OUTSIDE}")
        c = template[i]
        if c == "#":  # a comment, to the end of the line
            end = template.find("\n", i)
            end = n if end < 0 else end
            inside = [p for p in marks if i <= p < end]
            if inside:
                raise ValueError(f"{marks[inside[0]].group(0)!r} in a comment: {_OUTSIDE}")
            i = end
            continue
        if c in "\"'`":
            op = _operator_before(template, i)
            j = i + 1
            while True:
                if j >= n:
                    raise ValueError(f"unterminated string at offset {i}")
                if j in marks:
                    m = marks[j]
                    if c == "`":
                        raise ValueError(
                            f"{m.group(0)!r} in a backquoted string, which cannot escape it; "
                            'use a double-quoted matcher value ("...")'
                        )
                    if depth == 0 or op is None:
                        raise ValueError(f"{m.group(0)!r} at offset {j}: {_OUTSIDE}")
                    slots.append(_Slot(m, c, op in _REGEX_OPERATORS))
                    j = m.end()
                    continue
                ch = template[j]
                if ch == "\\" and c != "`":
                    if j + 1 in marks:
                        raise ValueError(f"a backslash before {marks[j + 1].group(0)!r}")
                    j += 2
                    continue
                if ch == c:
                    break
                j += 1
            i = j + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        i += 1
    return slots
