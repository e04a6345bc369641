"""What remediator writes in an incident's room: its name, topic, pinned summary and one
message per timeline event (pure functions).

Alert labels and annotations are attacker input. Every message is sent as plain text
(``msgtype: m.text`` with a ``body`` only: no ``format``/``formatted_body``, so no client
renders HTML from it) with an empty ``m.mentions``, so that no text in it pings anyone. Each
value taken from an alert or from the timeline passes through :func:`chat_text`, the one
escaping function of chat text: one line, control, zero-width and bidirectional-override
characters dropped, ``@room`` defused, the length bounded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.incidents.event_kinds import label_of
from receiver.store.chat import NAME_LIMIT, IncidentFacts, PostableEvent

APPROVE_KEYS = frozenset({"\u2705"})  # ✅
DENY_KEYS = frozenset({"\u274c"})  # ❌

_INVISIBLE = re.compile(
    "[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")
_BREAKS = re.compile(r"[\t\r\n\v\f\x85\u2028\u2029]+")
_ROOM_MENTION = re.compile(r"@(room)\b", re.IGNORECASE)
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def chat_text(value: Any, limit: int = 300) -> str:
    """``value`` as one line of literal chat text, at most ``limit`` characters."""
    text = "" if value is None else str(value)
    text = _BREAKS.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = _ROOM_MENTION.sub(r"@ \1", text)
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def slug(text: str, limit: int = NAME_LIMIT) -> str:
    """Lower-case ASCII letters and digits joined by single dashes, at most ``limit`` long."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _SLUG_DROP.sub("-", folded).strip("-")[:limit].rstrip("-")


def first(facts: IncidentFacts, key: str, *, labels: bool = False) -> str | None:
    """The first alert's annotation (or label) ``key`` that is a non-empty string."""
    for alert in facts.alerts:
        value = (alert.labels if labels else alert.annotations).get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def room_name(template: str, facts: IncidentFacts) -> str:
    """The room's name from the template (``incident-{date}-{slug}``): the slug from the
    alert name and summary, cut so that the whole name holds at most 80 characters. The
    store adds a numbered suffix when another incident has the name already."""
    alertname = facts.alerts[0].alertname if facts.alerts else ""
    summary = first(facts, "summary") or ("" if alertname else facts.title)
    fields = {"date": facts.opened_at.strftime("%Y-%m-%d"), "severity": facts.severity.lower(),
              "id": str(facts.incident_id)}
    fixed = len(template.format(**fields, slug=""))
    text = slug(f"{alertname} {summary}", max(NAME_LIMIT - fixed, 8)) or "incident"
    name = template.format(**fields, slug=text)[:NAME_LIMIT]
    return name.strip("-") or f"incident-{facts.incident_id}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def services(facts: IncidentFacts) -> list[str]:
    """The affected services: the alerts' ``service`` labels, else their ``job`` labels."""
    for key in ("service", "job"):
        found = sorted({chat_text(a.labels[key], 80) for a in facts.alerts
                        if isinstance(a.labels.get(key), str) and a.labels[key].strip()})
        if found:
            return found[:10]
    return []


def runbook(facts: IncidentFacts) -> str | None:
    """The ``runbook_url`` annotation, when it is an http(s) URL (shown as text)."""
    url = first(facts, "runbook_url")
    if url is None or not re.match(r"^https?://\S+$", url.strip()):
        return None
    return chat_text(url.strip(), 500)


def sla(facts: IncidentFacts) -> str:
    if facts.acknowledged_at is not None:
        return f"acknowledged {_when(facts.acknowledged_at)}"
    return f"acknowledge by {_when(facts.ack_due_at)}"


def topic(facts: IncidentFacts, link: str) -> str:
    parts = [f"{facts.severity} {chat_text(facts.title, 120)}", f"SLA: {sla(facts)}", link]
    found = services(facts)
    if found:
        parts.append("services: " + ", ".join(found))
    book = runbook(facts)
    if book:
        parts.append(f"runbook: {book}")
    return " | ".join(parts)


def summary(facts: IncidentFacts, link: str) -> str:
    """The pinned message: what the incident is and where to look."""
    lines = [
        f"Incident #{facts.incident_id}: {chat_text(facts.title, 200)}",
        f"Severity: {facts.severity}",
        f"SLA: {sla(facts)}",
        f"Opened: {_when(facts.opened_at)}",
        f"Incident page: {link}",
        f"Runbook: {runbook(facts) or '-'}",
        f"Services: {', '.join(services(facts)) or '-'}",
    ]
    for alert in facts.alerts[:5]:
        text = alert.annotations.get("summary")
        lines.append(f"Alert: {chat_text(alert.alertname, 100)}"
                     + (f" - {chat_text(text, 200)}" if isinstance(text, str) else ""))
    return "\n".join(lines)


def event_body(event: PostableEvent, backend: str = "matrix") -> str:
    """One timeline event as a message; an approval request says how to decide in chat
    (on ``backend``: Matrix reactions, Slack buttons; both take the ! commands)."""
    lines = [f"[{label_of(event.kind)}] {chat_text(event.message, 500)}"]
    if event.kind == "job_awaiting_approval" and event.job_id is not None:
        raw = event.detail.get("plan")
        plan: dict[str, Any] = raw if isinstance(raw, dict) else {}
        extra = plan.get("detail")
        more: dict[str, Any] = extra if isinstance(extra, dict) else {}
        if event.playbook:
            lines.append(f"Playbook: {chat_text(event.playbook, 80)}")
        targets = plan.get("targets") or []
        if isinstance(targets, list) and targets:
            lines.append("Targets: " + ", ".join(chat_text(t, 100) for t in targets[:10]))
        risk = plan.get("risk") or more.get("risk")
        if risk:
            lines.append(f"Risk: {chat_text(risk, 40)}")
        steps = plan.get("steps") or []
        if isinstance(steps, list):
            lines += [f"- {chat_text(step, 200)}" for step in steps[:10]]
        if backend == "slack":
            lines.append("Approve or Deny with the buttons. Only people of an approving "
                         "group, with their Slack id mapped, count.")
        else:
            lines.append(f"React \u2705 to approve or \u274c to deny, or write "
                         f"!approve {event.job_id} / !deny {event.job_id} <reason>. Only "
                         "people of an approving group, with their Matrix id mapped, count.")
    return "\n".join(lines)


_COMMAND = re.compile(r"^!([a-z]{2,12})(?:\s+(.*))?$", re.DOTALL)
_JOB = re.compile(r"^#?(\d{1,18})(?:\s+(.+))?$", re.DOTALL)
COMMANDS = ("approve", "deny", "ack", "assign", "commander", "note", "resolve", "status",
            "public")
"""What people may write in a room: a decision on a job, or an action on the incident (the
actions of the incident page, through the same code)."""


@dataclass(frozen=True)
class Command:
    name: str
    job_id: int | None = None
    arg: str = ""


def parse_command(body: str) -> Command | None:
    """``!approve <job>``, ``!deny <job> <reason>``, ``!ack [text]``, ``!assign <user>``,
    ``!commander <user>``, ``!note <text>``, ``!resolve [reason]``, ``!status``,
    ``!public [status] [title |] <text>``: the command,
    or None for anything else (a message that does not start with one)."""
    match = _COMMAND.match(body.strip())
    if match is None or match.group(1) not in COMMANDS:
        return None
    name, rest = match.group(1), chat_text(match.group(2) or "", 2000)
    if name in ("approve", "deny"):
        job = _JOB.match(rest)
        if job is None:
            return None
        return Command(name, int(job.group(1)), chat_text(job.group(2) or "", 500))
    if name in ("assign", "commander", "note", "public") and not rest:
        return None
    if name in ("assign", "commander"):
        rest = rest.split(" ", 1)[0]
    return Command(name, None, rest)


PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")


@dataclass(frozen=True)
class PublicPost:
    status: str
    title: str
    body: str


def parse_public(arg: str) -> PublicPost:
    """The argument of ``!public``: an optional status word first (default investigating),
    then the text; ``title | text`` gives the public title (needed by the first update)."""
    first_word, _, rest = arg.partition(" ")
    status = "investigating"
    if first_word.lower() in PUBLIC_STATUSES and rest.strip():
        status, arg = first_word.lower(), rest
    title, bar, body = arg.partition(" | ")
    if not bar:
        title, body = "", arg
    return PublicPost(status, title.strip()[:200], body.strip())


def status(facts: IncidentFacts, jobs: list[tuple[int, str, str]], link: str) -> str:
    """The answer to ``!status``: state, SLA, commander, what was done and what is pending."""
    done = [f"#{j} {chat_text(p, 60)} {s}" for j, p, s in jobs
            if s not in ("queued", "awaiting_approval", "running", "waiting")]
    pending = [f"#{j} {chat_text(p, 60)} {s.replace('_', ' ')}" for j, p, s in jobs
               if s in ("queued", "awaiting_approval", "running", "waiting")]
    return "\n".join([
        f"Status of incident #{facts.incident_id}: {facts.state} ({facts.severity})",
        f"SLA: {sla(facts)}",
        f"Commander: {chat_text(facts.assignee, 100) if facts.assignee else '-'}",
        f"Done: {', '.join(done) or '-'}",
        f"Pending: {', '.join(pending) or '-'}",
        f"Incident page: {link}",
    ])


def reaction_decision(key: str) -> bool | None:
    """True for ✅, False for ❌ (with or without the emoji variation selector), else None."""
    key = key.replace("\ufe0f", "").strip()
    if key in APPROVE_KEYS:
        return True
    if key in DENY_KEYS:
        return False
    return None
