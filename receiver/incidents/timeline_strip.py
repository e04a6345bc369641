"""The incident page's timeline strip: the incident's milestones as an SVG
(:func:`receiver.incidents.charts.timeline`), above its table of events.

Marks: the first alert's start (``startsAt``), detection (remediator received it and
opened the incident), acknowledgement, each remediation job (its run from start to
finish, or the moment it was created when it has not run), mitigation and resolution.
"""

from __future__ import annotations

from markupsafe import Markup

from receiver.incidents import charts
from receiver.store.incident_views import IncidentDetail


def marks(inc: IncidentDetail) -> list[charts.Mark]:
    out: list[charts.Mark] = []
    if inc.alerts:
        out.append(charts.Mark("alert_start", "alert started",
                               min(a.starts_at for a in inc.alerts)))
    out.append(charts.Mark("detected", "detected", inc.opened_at))
    if inc.acknowledged_at is not None:
        out.append(charts.Mark("acknowledged", "acknowledged", inc.acknowledged_at))
    for j in inc.jobs:
        label = f"job #{j.id} {j.playbook} ({j.state})"
        if j.started_at is not None:
            out.append(charts.Mark("job", label, j.started_at, j.finished_at))
        else:
            out.append(charts.Mark("job", label, j.created_at))
    if inc.mitigated_at is not None:
        out.append(charts.Mark("mitigated", "mitigated", inc.mitigated_at))
    if inc.resolved_at is not None:
        out.append(charts.Mark("resolved", "resolved", inc.resolved_at))
    return out


def strip(inc: IncidentDetail) -> Markup:
    return charts.timeline(f"incident-strip-{inc.id}", f"Incident #{inc.id} timeline",
                           marks(inc))
