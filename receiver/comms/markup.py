"""Escaping alert-derived text for each output format: one function per format, used by
every renderer of that format (post-mortem and notifications alike).

Alert labels and annotations are attacker input. Whatever they hold, they come out as
literal text: never a heading, list, quote, link, image, HTML, table cell or code span
break-out in Markdown; never an ``<url|text>`` anchor or ``<!channel>`` mention in Slack
mrkdwn; never a tag or attribute in HTML.

- Markdown (CommonMark + GFM tables, strikethrough and autolinks): :func:`md_text` makes a
  value one line and backslash-escapes ASCII punctuation (CommonMark lets each be escaped,
  and an escaped character never starts or ends a construct; it also breaks ``http://``,
  ``www.`` and ``a@b.c`` so no autolink forms); ``-``, ``=`` and ``#`` only at the start.
  :func:`md_code` puts a value in a code span whose fence is longer than any backtick run
  inside it.
- Slack mrkdwn: :func:`slack_text` escapes ``&``, ``<`` and ``>`` (all Slack asks for:
  anchors and mentions need a raw ``<``).
- HTML: :func:`html_text` escapes ``& < > " '``.

The links that remediator itself puts in a message (incident, approval pages) are made by
:func:`md_link`, :func:`slack_link` and :func:`html_link`, whose URLs come from the config.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import quote

# Every ASCII punctuation character but "-", "=" and "#", which only mean something at the
# start of a line (list item, setext underline, thematic break, heading) and are escaped
# there, and ":", which forms an autolink only before "//" or with "@" (both escaped).
_MD_PUNCTUATION = re.compile(r"([!\"$%&'()*+,./;<>?@\[\\\]^_`{|}~])")
_MD_LEADING = re.compile(r"^([-=#])")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
_BACKTICKS = re.compile(r"`+")


def one_line(value: Any) -> str:
    """``value`` as text on one line (every run of line breaks becomes one space)."""
    return _LINE_BREAKS.sub(" ", "" if value is None else str(value))


def md_text(value: Any) -> str:
    """``value`` as literal Markdown inline text, safe anywhere inside a line: in a
    paragraph, a heading, a list item or a table cell."""
    return _MD_LEADING.sub(r"\\\1", _md_inline(value))


def _md_inline(value: Any) -> str:
    # Text that never starts a line (a link label, after its "[").
    return _MD_PUNCTUATION.sub(r"\\\1", one_line(value))


def md_code(value: Any) -> str:
    """``value`` as a Markdown code span: a fence one backtick longer than the longest run
    inside, and a space inside each end (CommonMark strips exactly one), so nothing in it
    closes the span early. Not for table cells, where a ``|`` would still split the cell:
    use :func:`md_text` there."""
    text = one_line(value)
    if not text.strip(" "):
        return md_text(text)  # a code span of spaces only would lose its padding
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def _safe_url(url: str) -> str:
    # Our own URLs; percent-encode anything that could end the destination or the anchor.
    return quote(url, safe="/:?#[]@!$&'()*+,;=%-._~")


def md_link(url: str, label: Any) -> str:
    dest = _safe_url(url)
    for char in "()<>":
        dest = dest.replace(char, f"%{ord(char):02X}")
    return f"[{_md_inline(label)}]({dest})"


def slack_text(value: Any) -> str:
    """``value`` as literal Slack mrkdwn text."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: Any) -> str:
    return f"<{_safe_url(url).replace('|', '%7C')}|{slack_text(one_line(label))}>"


def html_text(value: Any) -> str:
    """``value`` as literal HTML text (and safe inside a quoted attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def html_link(url: str, label: Any) -> str:
    return f'<a href="{html.escape(_safe_url(url), quote=True)}">{html_text(label)}</a>'
