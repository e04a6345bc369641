"""The context of an incident that its record alone does not hold: similar past incidents
(:mod:`receiver.incidents.similar`) and deploys just before it started
(:mod:`receiver.diagnostics.deploys`), as the post-mortem draft and the incident page show
them. Every value goes through :func:`receiver.comms.markup.md_text` (or ``md_code``) in
Markdown, and through Jinja's autoescaping on the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from receiver.comms.markup import md_code, md_text
from receiver.config import Config
from receiver.diagnostics.deploys import RecentDeploy, recent
from receiver.durations import format_duration
from receiver.incidents import similar
from receiver.secrets import Redactor
from receiver.store import Store
from receiver.store.incident_views import IncidentDetail
from receiver.store.unit import UnitOfWork


def started_at(inc: IncidentDetail) -> datetime | None:
    starts = [a.starts_at for a in inc.alerts]
    return min(starts) if starts else None


def recent_deploys(inc: IncidentDetail) -> list[RecentDeploy]:
    """The deploys and commits that the incident's ``deploys`` evidence places within its
    ``deploy_window`` before the first alert started."""
    return recent([e.detail for e in inc.evidence if e.kind == "deploys" and e.detail],
                  started_at(inc))


@dataclass(frozen=True)
class PageContext:
    """What the incident page shows besides the record."""

    similar: list[similar.SimilarIncident]
    deploys: list[RecentDeploy]


def for_page(store: Store, config: Config, inc: IncidentDetail, *,
             now: datetime) -> PageContext:
    return PageContext(similar.find(store, config, inc.id, now=now), recent_deploys(inc))


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def postmortem_lines(store: Store, config: Config, inc: IncidentDetail,
                     secrets: Redactor) -> list[str]:
    """The post-mortem's "Recent deploys" and "Similar past incidents" sections. Past
    incidents are those that opened before this one."""
    out = ["## Recent deploys", ""]
    deploys = recent_deploys(inc)
    if not deploys:
        out.append("No deploy recorded within the deploy window before the alert started.")
    for d in deploys:
        what = (f"commit {md_code(secrets(d.name))} {md_text(secrets(d.image))}"
                if d.kind == "commit" else
                f"{md_text(d.kind)} {md_code(secrets(d.name))} now on "
                f"{md_code(secrets(d.image))}"
                + (f" (previously {md_code(secrets(d.previous_image))})"
                   if d.previous_image else ""))
        lead = ("**Deployed before the alert started:**" if d.before.total_seconds() >= 0
                else "**Deployed as the alert started:**")
        ago = format_duration(abs(d.before))
        out.append(f"- {lead} {what}, at {_t(d.at)} ({ago} "
                   f"{'before' if d.before.total_seconds() >= 0 else 'after'} the start).")
    out += ["", "## Similar past incidents", ""]
    found = similar.find(store, config, inc.id, now=inc.opened_at)
    if not found:
        out.append("No similar past incident found.")
    for s in found:
        out.append(
            f"- [Incident #{s.id}]({s.postmortem_path}) {md_text(secrets(s.title))} "
            f"({md_text(s.severity)}, {md_text(s.state)}, opened {_t(s.opened_at)}; "
            f"score {s.score:.2f}): shared {md_text(secrets(', '.join(s.shared)))}; "
            f"fixed by {md_text(secrets(s.fixed_by))}; resolved by "
            f"{md_text(secrets(s.resolved_by or '—'))} in {md_text(s.time_to_resolve)}.")
    out.append("")
    return out


def chat_similar(uow: UnitOfWork, config: Config, incident_id: int, now: datetime) -> str:
    """Lines for a chat status update: the similar past incidents, each through
    :func:`receiver.comms.chat.text.chat_text`; empty when there are none."""
    from receiver.comms.chat.text import chat_text

    found = similar.find_in(uow, config, incident_id, now=now)
    if not found:
        return ""
    lines = ["Similar past incidents:"]
    for s in found[:3]:
        lines.append(f"- #{s.id} {chat_text(s.title, 100)} ({s.state}, "
                     f"{s.time_to_resolve} to resolve): {chat_text(s.fixed_by, 160)}")
    return "\n" + "\n".join(lines)
