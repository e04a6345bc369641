"""The post-mortem draft: Markdown built from the incident record (phase 6 of the checklist).

Everything known is filled in (summary, impact with times and durations, affected alerts,
instances and services, the full timeline, remediation, diagnostics, approvals, notes);
the sections only people can write are left as headed blanks.

Every value from the record goes through :func:`receiver.comms.markup.md_text` (or ``md_code``)
and nothing else: alert text can not add a heading, link, image, HTML or table row, and
configured secrets are redacted from the record before it is rendered.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Any, TypeVar

from receiver.comms.markup import md_code, md_text
from receiver.config import Config
from receiver.durations import format_duration
from receiver.incidents import context
from receiver.people.roster import on_duty_at
from receiver.secrets import Redactor, redactor_for
from receiver.store import Store
from receiver.store.incident_views import IncidentDetail

_cell = md_text
_WORD = re.compile(r"[a-z][a-z_]*")
R = TypeVar("R")


def _kind(value: Any) -> str:
    """An event kind: a lower-case word (intraword ``_`` is no emphasis), else escaped."""
    return value if isinstance(value, str) and _WORD.fullmatch(value) else _cell(value)


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _d(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return format_duration(max(end - start, timedelta(0)))


def milestones(inc: IncidentDetail) -> dict[str, datetime | None]:
    starts = [a.starts_at for a in inc.alerts]
    return {
        "started": min(starts) if starts else None,
        "detected": inc.opened_at,
        "acknowledged": inc.acknowledged_at,
        "mitigated": inc.mitigated_at,
        "resolved": inc.resolved_at,
        "closed": inc.closed_at,
    }


def _scrub(secrets: Redactor, value: R) -> R:
    """``value`` with every secret cut from it; records (and tuples of them) stay records."""
    if not secrets:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _scrub(secrets, getattr(value, f.name))
                   for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, tuple | list):
        return type(value)(_scrub(secrets, v) for v in value)
    return secrets(value)


def render(store: Store, config: Config, incident_id: int) -> str | None:
    with store.unit(write=False) as uow:
        found = uow.incidents.detail(incident_id)
        if found is None:
            return None
        sent = uow.incidents.sent_notices(incident_id)
        overrides = uow.oncall.overrides() if config.oncall.roles else []
    secrets = redactor_for(config)
    inc, sent = _scrub(secrets, found), _scrub(secrets, sent)
    m = milestones(inc)
    out: list[str] = []
    w = out.append
    w(f"# Post-mortem: {_cell(inc.title)} (incident #{inc.id})")
    w("")
    w(f"_Draft generated from the incident record. Severity {_cell(inc.severity)}, "
      f"state {_cell(inc.state)}._")
    w("")
    w("## Summary")
    w("")
    w(f"- **Severity:** {_cell(inc.severity)} ({_cell(inc.severity_reason)})")
    w(f"- **State:** {_cell(inc.state)}")
    w(f"- **Incident commander:** {_cell(inc.assignee or '—')}")
    w(f"- **Alertmanager group:** {md_code(inc.group_key) or '—'} "
      f"(receiver {md_code(inc.receiver) or '—'})")
    w(f"- **Acknowledge-by deadline (SLA):** {_t(inc.ack_due_at)}"
      + (" — **breached**" if inc.sla_breached_at else ""))
    for duty in on_duty_at(config, inc.opened_at, overrides):
        how = " (override)" if duty.source == "override" else ""
        w(f"- **On duty ({_cell(duty.role)}):** {_cell(duty.primary)}{how}"
          + (f", backup {_cell(duty.backup)}" if duty.backup else ""))
    w("")
    w("## Impact")
    w("")
    w("| Milestone | Time | Since start |")
    w("| --- | --- | --- |")
    for name in ("started", "detected", "acknowledged", "mitigated", "resolved", "closed"):
        w(f"| {name.capitalize()} | {_t(m[name])} | {_d(m['started'], m[name])} |")
    w("")
    w(f"- Time to detect: {_d(m['started'], m['detected'])}")
    w(f"- Time to acknowledge: {_d(m['detected'], m['acknowledged'])}")
    w(f"- Time to mitigate: {_d(m['detected'], m['mitigated'])}")
    w(f"- Time to resolve: {_d(m['detected'], m['resolved'])}")
    w("")
    names: dict[str, int] = {}
    instances, services = set(), set()
    for a in inc.alerts:
        names[a.alertname] = names.get(a.alertname, 0) + 1
        labels = a.labels
        if labels.get("instance"):
            instances.add(labels["instance"])
        for key in ("service", "job", "container", "namespace"):
            if labels.get(key):
                services.add(f"{key}={_cell(labels[key])}")
    w("**Affected alerts:** " + (", ".join(f"{_cell(n)} ×{c}" for n, c in sorted(names.items()))
                                 or "—"))
    w("")
    w("**Instances:** " + (", ".join(sorted(_cell(i) for i in instances)) or "—"))
    w("")
    w("**Services:** " + (", ".join(sorted(services)) or "—"))
    w("")
    w("## Timeline")
    w("")
    w("| Time (UTC) | Who | Event | Detail |")
    w("| --- | --- | --- | --- |")
    rows = [(e.at, e.actor, e.kind, e.message) for e in inc.timeline]
    rows += [(n.delivered_at, "system", "notification",
              f"{n.kind} sent to {n.channel}") for n in sent]  # cells escape below
    for at, actor, kind, message in sorted(rows, key=lambda r: r[0]):
        w(f"| {_t(at)} | {_cell(actor)} | {_kind(kind)} | {_cell(message)} |")
    w("")
    w("## Remediation")
    w("")
    if not inc.jobs:
        w("No automatic remediation ran.")
    for j in inc.jobs:
        plan = (j.plan or {}).get("summary", "")
        result = (j.result or {}).get("summary", "")
        w(f"- Job #{j.id} {md_code(j.playbook)} (rule {_cell(j.rule)}): "
          f"**{_cell(j.state)}**."
          + (f" Plan: {_cell(plan)}." if plan else "")
          + (f" Result: {_cell(result)}." if result else "")
          + (f" Reason: {_cell(j.reason)}." if j.reason else ""))
    for ap in inc.approvals:
        past = {"approve": "approved", "deny": "denied"}
        votes = "; ".join(f"{_cell(v.approver)} "
                          f"{_cell(past.get(v.decision, v.decision))} at "
                          f"{_t(v.at)}" for v in ap.votes) or "no votes"
        w(f"- Approval for job #{ap.job_id}: {_cell(ap.state)} ({votes}).")
    w("")
    w("## Diagnostics")
    w("")
    if not inc.evidence:
        w("No diagnostics were recorded.")
    for e in inc.evidence:
        w(f"- {_t(e.started_at)} **{_cell(e.check_name)}** ({_cell(e.kind)}, "
          f"{'ok' if e.ok else 'failed'}): {_cell(e.summary)}")
    w("")
    notes = [e for e in inc.timeline if e.kind == "note"]
    if notes:
        w("## Notes")
        w("")
        for n in notes:
            w(f"- {_t(n.at)} {_cell(n.actor)}: {_cell(n.message)}")
        w("")
    out += context.postmortem_lines(store, config, inc, secrets)
    for section, hint in (
        ("Root cause", "What failed, and why. Link evidence from the timeline above."),
        ("What went well", ""),
        ("What went wrong", ""),
        ("Where we got lucky", ""),
    ):
        w(f"## {section}")
        w("")
        w(f"_{hint or 'To be written by the team.'}_")
        w("")
    w("## Action items")
    w("")
    w("| Action | Owner | Due | Ticket |")
    w("| --- | --- | --- | --- |")
    w("|  |  |  |  |")
    w("")
    return "\n".join(out)
