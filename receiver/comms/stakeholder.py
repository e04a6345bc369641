"""Messages for people outside the incident (audiences with ``message: stakeholder``).

A stakeholder is told what happened and what it means for them, not how responders work:
the incident's title, severity, state, an impact summary (the audience's own text for the
severity, else :data:`receiver.config.notifications.DEFAULT_IMPACT`), when the next update is
due (``update_every`` after the event, while the incident is not over) and the incident
link. No event message, alert label, annotation or hostname is shown, except the incident
group labels the audience lists in ``labels``. Every value is redacted of the config's
secrets and escaped for the channel's body format by the caller's format functions; the
title is one line (no CR, LF or other control character survives into a subject).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from receiver.config.notifications import Audience
from receiver.store.outbox import MessageContext

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")

WHAT = {
    "opened": ("Incident opened", "We are investigating an incident."),
    "reopened": ("Incident reopened", "The incident has started again; we are investigating."),
    "mitigated": ("Incident mitigated",
                  "The impact has been mitigated; we are watching until it is resolved."),
    "resolved": ("Incident resolved", "The incident is resolved."),
    "escalated": ("Incident escalated", "More people have been called in to respond."),
    "sla_breached": ("Response delayed", "The incident has not been acknowledged in time."),
    "severity_changed": ("Severity changed", "The incident's severity has changed."),
}
"""Headline and sentence per event (a state change reads as the state it moved to)."""
OVER = frozenset({"resolved", "closed", "false_alarm"})


class Format(Protocol):
    @property
    def text(self) -> Callable[[Any], str]: ...
    @property
    def link(self) -> Callable[[str, Any], str]: ...
    @property
    def label(self) -> Callable[[str], str]: ...
    @property
    def newline(self) -> str: ...


def one_line(value: str) -> str:
    """``value`` with every run of control characters (CR, LF, tab...) made one space."""
    return _CONTROL.sub(" ", value).strip()


def event_of(ctx: MessageContext) -> str:
    """The event a stakeholder reads: a state change is the state it moved to."""
    if ctx.kind == "state_changed":
        return str((ctx.detail or {}).get("to") or "state_changed")
    return str(ctx.kind)


def state_at(ctx: MessageContext) -> str:
    """The incident's state as the event left it (not as it is when the message is sent:
    the mitigated message of an incident resolved since still says mitigated)."""
    event = event_of(ctx)
    if ctx.kind == "state_changed" or event == "resolved":
        return event
    if event in ("opened", "reopened"):
        return "open"
    return str(ctx.incident_state)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def render(ctx: MessageContext, audience: Audience, fmt: Format, link: str,
           *, plain: bool) -> tuple[str, str, str]:
    """``(title, body, subject)`` of a stakeholder message (``subject``: the title as plain
    text, for a mail's Subject header); ``ctx`` is already redacted."""
    event = event_of(ctx)
    headline, sentence = WHAT.get(event, (f"Incident {event.replace('_', ' ')}",
                                          "The incident has been updated."))
    state = state_at(ctx)
    text, label = fmt.text, fmt.label
    subject = one_line(f"[{ctx.severity}] {headline}: {ctx.title}")
    title = text(subject)
    lines = [text(sentence), "",
             f"{label('Incident:')} {text(one_line(str(ctx.title)))}",
             f"{label('Severity:')} {text(ctx.severity)}",
             f"{label('State:')} {text(state.replace('_', ' '))}",
             f"{label('Impact:')} {text(audience.impact_of(str(ctx.severity)))}"]
    labels = ctx.group_labels or {}
    for name in audience.labels:
        if name in labels:
            lines.append(f"{label(name + ':')} {text(one_line(str(labels[name])))}")
    if state in OVER:
        lines.append(f"{label('Next update:')} {text('none planned')}")
    elif audience.update_every is not None:
        lines.append(f"{label('Next update:')} "
                     + text(f"by {_when(ctx.created_at + audience.update_every)}"))
    lines.append(f"{label('Details:')} "
                 + (link if plain else fmt.link(link, f"incident #{ctx.incident_id}")))
    lines += ["", f"Notification id: {int(ctx.id)}"]
    return title, fmt.newline.join(lines), subject
