"""The public status page: what operators publish, and what the public sees.

Nothing from an alert is published by itself. An incident appears on the page only once an
operator writes a public update for it, under a title the operator writes; its body is the
operator's text. Alert labels decide only *which* configured components an incident
affects (the components' matchers), never what the page says. The components' status
follows the worst open *public* incident that affects them, at the severity the internal
incident had when an operator last published about it (P0 major outage, P1 partial
outage, P2 degraded performance, P3 operational), unless an operator overrides it. So the
page changes only when an operator acts.

With ``status_page.approval.first_post`` the first update of an incident waits until a
second operator (another person, in ``approval.groups`` when set) approves it.
Every post, decision and override is audited in the transaction that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.config import Config
from receiver.config.status_page import StatusComponent
from receiver.errors import ActionError, DecisionError
from receiver.intake.matchers import CompiledMatch
from receiver.store import Store
from receiver.store.status import (
    COMPONENT_STATUSES,
    PUBLIC_STATUSES,
    ComponentOverride,
    StatusIncident,
    StatusUpdate,
)

SEVERITY_STATUS = {"P0": "major_outage", "P1": "partial_outage", "P2": "degraded_performance"}
SEVERITY_IMPACT = {"P0": "critical", "P1": "major", "P2": "minor"}
_RANK = {s: i for i, s in enumerate(("operational", "under_maintenance", "degraded_performance",
                                     "partial_outage", "major_outage"))}
_INDICATOR = {  # worst component status -> Statuspage's overall indicator and description
    "operational": ("none", "All Systems Operational"),
    "under_maintenance": ("maintenance", "Service Under Maintenance"),
    "degraded_performance": ("minor", "Minor Service Outage"),
    "partial_outage": ("major", "Partial System Outage"),
    "major_outage": ("critical", "Major System Outage"),
}
_IMPACT_STATUS = {"critical": "major_outage", "major": "partial_outage",
                  "minor": "degraded_performance", "none": "operational"}

__all__ = ["COMPONENT_STATUSES", "PUBLIC_STATUSES", "ComponentView", "PageView", "PostResult",
           "affected_components", "clear_override", "decide", "page_view", "post_update",
           "set_override"]


def affected_components(components: list[StatusComponent],
                        label_sets: list[dict[str, str]]) -> list[str]:
    """The names of the components whose matchers match one of the label sets (an
    incident's group labels or one of its alerts' labels). A component without matchers
    matches nothing."""
    out = []
    for c in components:
        match = CompiledMatch(c)
        if match.matchers and any(match(labels) for labels in label_sets):
            out.append(c.name)
    return out


# -- posting --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PostResult:
    update: StatusUpdate
    published: bool  # False: waits for a second operator


def post_update(store: Store, config: Config, incident_id: int, *, status: str, body: str,
                user: str, now: datetime, title: str = "",
                origin: dict[str, Any] | None = None) -> PostResult:
    """Write a public update of incident ``incident_id`` as ``user``.

    The first one needs a ``title`` (the public name of the incident); a later one may
    change it. Refused: an unknown incident (404 ``not_found``), no title for the first
    update or an unknown status (400 ``invalid``, the message names the field), and a new
    update while one waits for approval (409 ``conflict``).
    """
    if status not in PUBLIC_STATUSES:
        raise ActionError("invalid", f"status: one of {', '.join(PUBLIC_STATUSES)}", 400)
    title, body = title.strip(), body.strip()
    if not body:
        raise ActionError("invalid", "body: the update's text is required", 400)
    sp = config.status_page
    with store.unit() as uow:
        internal = uow.status.internal(incident_id)
        if internal is None:
            raise ActionError("not_found", f"no incident {incident_id}", 404)
        current = uow.status.for_incident(incident_id, lock=True)
        if current is None and not title:
            raise ActionError("invalid", "title: the public title is required for an "
                              "incident's first public update", 400)
        si = current or uow.status.open(incident_id, title=title, severity=internal.severity,
                                        actor=user, now=now)
        if any(u.state == "pending" for u in uow.status.updates(si.id, published_only=False)):
            raise ActionError("conflict", "an update of this incident waits for approval; "
                              "approve or reject it first")
        if title and title != si.title:
            uow.status.retitle(si, title, now)
            si = uow.status.for_incident(incident_id) or si
        wait = sp.approval.first_post and si.published_at is None
        update = uow.status.add_update(si, status=status, body=body,
                                       state="pending" if wait else "published", actor=user,
                                       now=now, origin=origin)
        if not wait:
            _publish(uow, config, si, status, internal.severity, now)
    return PostResult(update, not wait)


def _publish(uow: Any, config: Config, si: StatusIncident, status: str, severity: str,
             now: datetime) -> None:
    components = affected_components(config.status_page.components,
                                     uow.status.label_sets(si.incident_id))
    uow.status.publish(si, status=status, severity=severity, components=components, now=now)


def decide(store: Store, config: Config, update_id: int, *, approve: bool, user: str,
           now: datetime, reason: str = "", origin: dict[str, Any] | None = None
           ) -> StatusUpdate:
    """Approve (publish) or reject a pending update as ``user``: another person than its
    author, in ``status_page.approval.groups`` when set. Refused: ``not_found`` (404),
    ``not_allowed`` (403: its author, or not in the groups), ``not_waiting`` (409)."""
    groups = set(config.status_page.approval.groups)
    person = config.people.users.get(user)
    if groups and (person is None or not groups & set(person.groups)):
        raise DecisionError("not_allowed", f"{user} is not in {', '.join(sorted(groups))}")
    with store.unit() as uow:
        found = uow.status.update(update_id)
        if found is None:
            raise DecisionError("not_found", f"no status update {update_id}")
        if found.created_by == user:
            raise DecisionError("not_allowed", "a second operator must approve: you wrote "
                                "this update")
        si = uow.status.for_incident(found.incident_id, lock=True)
        decided = uow.status.decide(update_id, approve=approve, approver=user, now=now,
                                    reason=reason.strip(), origin=origin)
        if decided is None:
            who = found.decided_by or "someone"
            raise DecisionError("not_waiting", f"this update is already {found.state}"
                                + (f" (by {who})" if found.state != "pending" else ""))
        if approve and si is not None:
            internal = uow.status.internal(found.incident_id)
            _publish(uow, config, si, decided.status,
                     internal.severity if internal else si.severity, now)
    return decided


# -- overrides ------------------------------------------------------------------------------

def _component(config: Config, name: str) -> StatusComponent:
    comp = config.status_page.component(name)
    if comp is None:
        raise ActionError("invalid", "component: not a configured component", 400)
    return comp


def set_override(store: Store, config: Config, component: str, status: str, *, user: str,
                 now: datetime, reason: str = "", origin: dict[str, Any] | None = None) -> None:
    """Pin a component's status (audited) until the override is cleared."""
    comp = _component(config, component)
    if status not in COMPONENT_STATUSES:
        raise ActionError("invalid", f"status: one of {', '.join(COMPONENT_STATUSES)}", 400)
    with store.unit() as uow:
        uow.status.set_override(comp.name, status, reason=reason.strip(), actor=user, now=now,
                                origin=origin)


def clear_override(store: Store, config: Config, component: str, *, user: str,
                   now: datetime, reason: str = "", origin: dict[str, Any] | None = None
                   ) -> bool:
    """Let the component follow its incidents again (audited); False if it had none."""
    comp = _component(config, component)
    with store.unit() as uow:
        return uow.status.clear_override(comp.name, reason=reason.strip(), actor=user,
                                         now=now, origin=origin)


# -- what the public sees ---------------------------------------------------------------------

@dataclass(frozen=True)
class ComponentView:
    id: str
    name: str
    description: str
    status: str
    position: int
    override: ComponentOverride | None

    @property
    def label(self) -> str:
        return self.status.replace("_", " ").capitalize()


@dataclass(frozen=True)
class IncidentView:
    incident: StatusIncident
    updates: tuple[StatusUpdate, ...]  # published, newest first

    @property
    def impact(self) -> str:
        return SEVERITY_IMPACT.get(self.incident.severity, "none")

    @property
    def resolved(self) -> bool:
        return self.incident.status == "resolved"


@dataclass(frozen=True)
class PageView:
    title: str
    updated_at: datetime
    components: tuple[ComponentView, ...]
    active: tuple[IncidentView, ...]
    resolved: tuple[IncidentView, ...]
    indicator: str
    description: str


def page_view(store: Store, config: Config, now: datetime) -> PageView:
    """Everything the page, the JSON summary and the feed show: components with their
    status, open public incidents and those resolved within ``status_page.history``, each
    with its published updates."""
    sp = config.status_page
    with store.unit(write=False) as uow:
        incidents = uow.status.published(resolved_since=now - sp.history)
        views = [IncidentView(i, tuple(uow.status.updates(i.id))) for i in incidents]
        overrides = {o.component: o for o in uow.status.overrides()}
    active = tuple(v for v in views if not v.resolved)
    worst: dict[str, str] = {}
    for v in active:
        status = SEVERITY_STATUS.get(v.incident.severity, "operational")
        for name in v.incident.components:
            if _RANK[status] > _RANK[worst.get(name, "operational")]:
                worst[name] = status
    components = []
    for pos, c in enumerate(sp.components, start=1):
        o = overrides.get(c.name)
        components.append(ComponentView(c.id, c.name, c.description,
                                        o.status if o else worst.get(c.name, "operational"),
                                        pos, o))
    overall = max([c.status for c in components]
                  + [_IMPACT_STATUS[v.impact] for v in active], key=_RANK.__getitem__,
                  default="operational")
    indicator, description = _INDICATOR[overall]
    stamps = [v.incident.updated_at for v in views] + [o.set_at for o in overrides.values()]
    return PageView(sp.title, max(stamps, default=now), tuple(components), active,
                    tuple(v for v in views if v.resolved), indicator, description)
