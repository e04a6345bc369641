"""The status page's two machine formats: ``/status.json`` in the shape of Atlassian
Statuspage's ``summary.json`` (page, components, unresolved incidents with their updates,
scheduled maintenances, the overall status), and ``/status/feed.atom`` (RFC 4287), one
entry per published update.

Both carry only what the HTML page shows: the operator's titles and texts, the configured
components, statuses and times. The feed is built with ElementTree, which escapes every
text and attribute; characters XML 1.0 cannot hold are dropped first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET  # noqa: S405 - building XML, never parsing it

from receiver.comms.status import ComponentView, IncidentView, PageView
from receiver.config.status_page import component_id
from receiver.store.status import StatusUpdate

ATOM = "http://www.w3.org/2005/Atom"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _page_id(view: PageView) -> str:
    return component_id(view.title)


def _component(c: ComponentView, view: PageView) -> dict[str, Any]:
    stamp = _iso(c.override.set_at if c.override else view.updated_at)
    return {"id": c.id, "name": c.name, "status": c.status, "created_at": stamp,
            "updated_at": stamp, "position": c.position, "description": c.description or None,
            "showcase": True, "start_date": None, "group_id": None, "page_id": _page_id(view),
            "group": False, "only_show_if_degraded": False}


def _update(u: StatusUpdate, v: IncidentView, affected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": str(u.id), "status": u.status, "body": u.body, "incident_id": str(v.incident.id),
            "created_at": _iso(u.created_at), "updated_at": _iso(u.published_at or u.created_at),
            "display_at": _iso(u.published_at or u.created_at),
            "affected_components": affected, "deliver_notifications": False,
            "custom_tweet": None, "tweet_id": None}


def _incident(v: IncidentView, view: PageView, base: str) -> dict[str, Any]:
    i = v.incident
    comps = [_component(c, view) for c in view.components if c.name in i.components]
    affected = [{"code": c["id"], "name": c["name"], "old_status": "operational",
                 "new_status": c["status"]} for c in comps]
    monitoring = [u.published_at for u in v.updates if u.status == "monitoring"]
    return {"id": str(i.id), "name": i.title, "status": i.status,
            "created_at": _iso(i.published_at), "updated_at": _iso(i.updated_at),
            "monitoring_at": _iso(min((m for m in monitoring if m), default=None)),
            "resolved_at": _iso(i.resolved_at), "impact": v.impact,
            "shortlink": f"{base}/status#incident-{i.id}", "started_at": _iso(i.published_at),
            "page_id": _page_id(view),
            "incident_updates": [_update(u, v, affected) for u in v.updates],
            "components": comps}


def summary(view: PageView, base: str) -> dict[str, Any]:
    """``summary.json``'s shape (https://metastatuspage.com/api#summary)."""
    return {
        "page": {"id": _page_id(view), "name": view.title, "url": f"{base}/status",
                 "time_zone": "Etc/UTC", "updated_at": _iso(view.updated_at)},
        "components": [_component(c, view) for c in view.components],
        "incidents": [_incident(v, view, base) for v in view.active],
        "scheduled_maintenances": [],
        "status": {"indicator": view.indicator, "description": view.description},
    }


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: _text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _text(text)
    return el


def atom_feed(view: PageView, updates: list[StatusUpdate], base: str) -> bytes:
    """The published updates, newest first, as an Atom feed."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, "id", f"{base}/status")
    _sub(feed, "title", view.title)
    newest = max((u.published_at for u in updates if u.published_at), default=view.updated_at)
    _sub(feed, "updated", _iso(newest))
    _sub(feed, "link", rel="self", href=f"{base}/status/feed.atom",
         type="application/atom+xml")
    _sub(feed, "link", rel="alternate", href=f"{base}/status", type="text/html")
    _sub(_sub(feed, "author"), "name", view.title)
    for u in updates:
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"{base}/status#update-{u.id}")
        _sub(entry, "title", f"{u.title}: {u.status.capitalize()}")
        stamp = _iso(u.published_at or u.created_at)
        _sub(entry, "updated", stamp)
        _sub(entry, "published", stamp)
        _sub(entry, "link", rel="alternate", href=f"{base}/status#incident-{u.status_incident_id}",
             type="text/html")
        _sub(entry, "content", u.body, type="text")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
