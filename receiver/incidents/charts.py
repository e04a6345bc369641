"""Server-rendered SVG charts: numbers in, an SVG document fragment out (no JavaScript).

Every builder is a pure function of its data. Each drawn value is a ``<g class="datum">``
whose ``<title>`` (the tooltip, read by screen readers and by tests) says what it is and
its number, with the exact value also in ``data-value``; the chart's own ``<title>`` names
it. Every label is escaped here, once, with :func:`markupsafe.escape`: category and series
names may come from alert data (alert names are attacker input). Colours and fonts are
SVG presentation attributes, not ``style``, so the pages' Content-Security-Policy (no
inline styles) still lets them through, and a chart saved into a file needs nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH = 480
HEIGHT = 220
PAD_LEFT = 44
PAD_RIGHT = 10
PAD_TOP = 26
PAD_BOTTOM = 40
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
SEVERITY_COLOURS = {"P0": "#b3001b", "P1": "#d9480f", "P2": "#b08900", "P3": "#3b6ea5"}
PALETTE = ("#3b6ea5", "#d9480f", "#2b8a3e", "#7048e8", "#b08900", "#c92a2a", "#1c7ed6")
MAX_LABEL = 40
SMALLEST = 1e-6


def colour(series: str, index: int) -> str:
    return SEVERITY_COLOURS.get(series, PALETTE[index % len(PALETTE)])


def short(label: str, limit: int = MAX_LABEL) -> str:
    """``label`` cut to ``limit`` characters (the full text stays in the datum's title)."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def number(value: float) -> str:
    """A value as ``data-value`` carries it: an integer without a point, else 6 digits."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def duration_text(value: float) -> str:
    """Seconds as people read them: 45s, 12.5m, 3.2h."""
    if value < 10:
        return f"{value:.1f}".removesuffix(".0") + "s"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for none);
    at least :data:`SMALLEST`, so that the power of ten never underflows to 0."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    value = max(value, SMALLEST)
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class Series:
    """One named row of values, one per category; None is "no value" (nothing drawn)."""

    name: str
    values: tuple[float | None, ...]


def _open(chart_id: str, title: str, height: int = HEIGHT, width: int = WIDTH) -> list[str]:
    cid = escape(chart_id)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{cid}-title" font-family="{FONT}" font-size="11">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<text x="{PAD_LEFT}" y="14" font-size="12" font-weight="600" fill="#1b1f24">'
        f"{escape(title)}</text>",
    ]


def _legend(names: Sequence[str], y: float, width: int = WIDTH) -> list[str]:
    out = ['<g class="legend">']
    x = float(PAD_LEFT)
    for i, name in enumerate(names):
        label = short(name, 16)
        out.append(f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="9" height="9" '
                   f'fill="{colour(name, i)}"/>'
                   f'<text x="{x + 12:.1f}" y="{y:.1f}" fill="#1b1f24">{escape(label)}</text>')
        x += 12 + 7 * len(label) + 14
        if x > width - 60:
            break
    out.append("</g>")
    return out


def _axis(top: float, fmt: Callable[[float], str], height: int = HEIGHT,
          width: int = WIDTH) -> list[str]:
    """The value axis: gridlines at 0, half and the top, labelled with ``fmt``."""
    bottom = height - PAD_BOTTOM
    out = ['<g class="axis" fill="#5b6470">']
    for frac in (0.0, 0.5, 1.0):
        y = bottom - frac * (bottom - PAD_TOP)
        out.append(f'<line x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#d7dce2" stroke-width="1"/>'
                   f'<text x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(fmt(top * frac))}</text>")
    out.append("</g>")
    return out


def _empty(out: list[str], message: str, height: int = HEIGHT) -> Markup:
    out.append(f'<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" '
               f'fill="#5b6470">{escape(message)}</text></svg>')
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


def _datum(series: str, category: str, value: float, shown: str, shape: str) -> str:
    return (f'<g class="datum" data-series="{escape(series)}" '
            f'data-category="{escape(category)}" data-value="{number(value)}">'
            f"<title>{escape(series)} · {escape(category)}: {escape(shown)}</title>"
            f"{shape}</g>")


def bars(chart_id: str, title: str, categories: Sequence[str], series: Sequence[Series], *,
         stacked: bool = False, fmt: Callable[[float], str] = number,
         axis: Callable[[float], str] | None = None,
         empty: str = "No data in this range.") -> Markup:
    """Vertical bars per category, one per series side by side (or ``stacked``).

    A datum's title reads ``<series> · <category>: <fmt(value)>``; the value axis is
    labelled with ``axis`` (``fmt`` by default)."""
    out = _open(chart_id, title)
    present = [v for s in series for v in s.values if v is not None]
    if not categories or not present:
        return _empty(out, empty)
    if stacked:
        totals = [sum(s.values[k] or 0.0 for s in series) for k in range(len(categories))]
        top = nice_max(max(totals))
    else:
        top = nice_max(max(present))
    bottom = HEIGHT - PAD_BOTTOM
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    slot = plot_w / len(categories)
    per = 1 if stacked else max(len(series), 1)
    bar_w = max(slot * 0.8 / per, 0.5)
    out += _axis(top, axis or fmt)
    every = max(1, math.ceil(len(categories) / 10))  # at most ~10 category labels
    for k, cat in enumerate(categories):
        x0 = PAD_LEFT + k * slot + slot * 0.1
        base = 0.0
        for i, s in enumerate(series):
            v = s.values[k] if k < len(s.values) else None
            if v is None:
                continue
            h = (bottom - PAD_TOP) * (v / top)
            if stacked:
                x, y = x0, bottom - (bottom - PAD_TOP) * ((base + v) / top)
                base += v
            else:
                x, y = x0 + i * bar_w, bottom - h
            shape = (f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
                     f'fill="{colour(s.name, i)}"/>')
            out.append(_datum(s.name, cat, v, fmt(v), shape))
        if k % every == 0:
            out.append(f'<text class="category" x="{PAD_LEFT + (k + 0.5) * slot:.1f}" '
                       f'y="{bottom + 13}" text-anchor="middle" fill="#5b6470">'
                       f"{escape(short(cat, 12))}</text>")
    out += _legend([s.name for s in series], HEIGHT - 8)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


@dataclass(frozen=True)
class Item:
    """One labelled value of a horizontal bar chart; ``shown`` is its text (the number)."""

    label: str
    value: float
    shown: str
    tag: str = ""
    """The short text drawn after the bar (``shown`` when empty; ``shown`` is the title)."""


def hbars(chart_id: str, title: str, items: Sequence[Item], *, series: str = "",
          top: float | None = None, empty: str = "No data in this range.") -> Markup:
    """Horizontal bars, one row per item, labelled on the left, ``shown`` on the right.
    ``top`` is the full-scale value (for rates, 1.0); otherwise the largest one."""
    row_h = 22
    height = PAD_TOP + 8 + row_h * max(len(items), 1)
    out = _open(chart_id, title, height)
    if not items:
        return _empty(out, empty, height)
    scale = top if top is not None else nice_max(max(i.value for i in items))
    label_w = 160
    plot_w = WIDTH - label_w - 64
    for k, item in enumerate(items):
        y = PAD_TOP + 4 + k * row_h
        w = plot_w * (item.value / scale) if scale else 0.0
        shape = (f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" fill="#1b1f24">'
                 f"{escape(short(item.label, 24))}</text>"
                 f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="14" fill="#f1f3f5"/>'
                 f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0.0):.2f}" height="14" '
                 f'fill="{colour(series, k if not series else 0)}"/>'
                 f'<text class="value" x="{label_w + plot_w + 6}" y="{y + 14}" '
                 f'fill="#1b1f24">{escape(item.tag or item.shown)}</text>')
        out.append(_datum(series or title, item.label, item.value, item.shown, shape))
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped


# -- the incident timeline strip ---------------------------------------------------------

@dataclass(frozen=True)
class Mark:
    """A moment (``end`` None) or a span (a job from start to finish) on the strip."""

    kind: str  # alert_start, detected, acknowledged, job, mitigated, resolved
    label: str
    at: datetime
    end: datetime | None = None


MARK_COLOURS = {"alert_start": "#5b6470", "detected": "#1c7ed6", "acknowledged": "#7048e8",
                "job": "#d9480f", "mitigated": "#b08900", "resolved": "#2b8a3e"}


def offset_text(seconds: float) -> str:
    """``+1h 02m 03s`` style offset from the strip's first moment."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"+{h}h {m:02d}m {sec:02d}s"
    if m:
        return f"+{m}m {sec:02d}s"
    return f"+{sec}s"


def timeline(chart_id: str, title: str, marks: Sequence[Mark]) -> Markup:
    """The incident's milestones along one time axis, in order. A mark's title reads
    ``<label>: <UTC time> (+offset)``; its ``data-value`` is the offset in seconds."""
    ordered = sorted(marks, key=lambda m: (m.at, m.kind))
    lanes = 3
    lane_h = 16
    axis_y = PAD_TOP + 10
    height = axis_y + 14 + lanes * lane_h + 6
    out = _open(chart_id, title, height)
    if not ordered:
        return _empty(out, "Nothing to show yet.", height)
    start = ordered[0].at
    last = max((m.end or m.at) for m in ordered)
    span = max((last - start).total_seconds(), 1.0)
    left, right = 12.0, WIDTH - 12.0

    def x_of(at: datetime) -> float:
        return left + (right - left) * ((at - start).total_seconds() / span)

    out.append(f'<line x1="{left}" x2="{right}" y1="{axis_y}" y2="{axis_y}" '
               f'stroke="#adb5bd" stroke-width="2"/>')
    for k, m in enumerate(ordered):
        x = x_of(m.at)
        fill = MARK_COLOURS.get(m.kind, "#1b1f24")
        offset = (m.at - start).total_seconds()
        when = m.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        shown = f"{when} ({offset_text(offset)})"
        if m.end is not None:
            x2 = max(x_of(m.end), x + 3)
            took = offset_text((m.end - m.at).total_seconds())[1:]
            shown += f" to {m.end.strftime('%H:%M:%S')} ({took})"
            mark = (f'<rect x="{x:.2f}" y="{axis_y - 5}" width="{x2 - x:.2f}" height="10" '
                    f'rx="2" fill="{fill}"/>')
        else:
            mark = f'<circle cx="{x:.2f}" cy="{axis_y}" r="5" fill="{fill}"/>'
        lane_y = axis_y + 14 + (k % lanes) * lane_h + 10
        anchor = "start" if x < WIDTH * 0.6 else "end"
        label = short(m.label, 28)
        shape = (mark + f'<line x1="{x:.2f}" x2="{x:.2f}" y1="{axis_y + 5}" y2="{lane_y - 9}" '
                 f'stroke="{fill}" stroke-width="1"/>'
                 f'<text x="{x:.2f}" y="{lane_y}" text-anchor="{anchor}" fill="{fill}">'
                 f"{escape(label)} {escape(offset_text(offset))}</text>")
        out.append(f'<g class="datum mark-{escape(m.kind)}" data-kind="{escape(m.kind)}" '
                   f'data-value="{number(offset)}">'
                   f"<title>{escape(m.label)}: {escape(shown)}</title>{shape}</g>")
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every piece above is escaped
