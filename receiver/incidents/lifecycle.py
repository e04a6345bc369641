"""Human actions on an incident: acknowledge, assign, note, resolve, close, false alarm,
severity change, post-mortem text. One module serves the pages, the API and the CLI.

Each action is one transaction: the change, its timeline event and its audit entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.config import Config
from receiver.errors import ActionError, InvalidTransition
from receiver.incidents.states import ACTIVE, check_transition
from receiver.intake.engine import SlaClock
from receiver.intake.severity import Severity
from receiver.store import Store, UnitOfWork
from receiver.store.incidents import IncidentHead

MAX_TEXT = 20_000


def _load(uow: UnitOfWork, incident_id: int) -> IncidentHead:
    uow.incidents.lock(incident_id)
    inc = uow.incidents.head(incident_id)
    if inc is None:
        raise ActionError("not_found", f"no incident {incident_id}", 404)
    return inc


def _move(uow: UnitOfWork, inc: IncidentHead, to: str, *, actor: str, reason: str,
          now: datetime, origin: dict[str, Any] | None) -> None:
    if inc.state == to:
        return  # a repeated action is a no-op
    check_transition(inc.state, to)  # InvalidTransition (an ActionError, 409) if forbidden
    if not uow.incidents.transition(inc.id, to, now=now, actor=actor, reason=reason,
                                    origin=origin):
        raise ActionError("conflict", "the incident changed meanwhile; reload and retry")


def _text(value: str, what: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ActionError("invalid", f"{what} is required", 400)
    if len(value) > MAX_TEXT or "\x00" in value:
        raise ActionError("invalid", f"{what} is too long or holds NUL", 400)
    return value


def act(
    store: Store,
    config: Config,
    incident_id: int,
    action: str,
    *,
    user: str,
    now: datetime,
    text: str = "",
    value: str = "",
    origin: dict[str, Any] | None = None,
) -> IncidentHead:
    """Run one named action; returns the incident after it."""
    actor = f"user:{user}"
    with store.unit() as uow:
        inc = _load(uow, incident_id)
        incidents, events = uow.incidents, uow.events
        if action == "acknowledge":
            if inc.state == "open":
                _move(uow, inc, "acknowledged", actor=actor, reason=text, now=now,
                      origin=origin)
            elif inc.acknowledged_at is None and inc.state in ACTIVE:
                incidents.stamp_acknowledged(incident_id, now)
            if inc.acknowledged_at is None:
                events.record(incident_id=incident_id, at=now, kind="acknowledged",
                              actor=actor, message=f"acknowledged by {user}", origin=origin,
                              detail={"late": now > inc.ack_due_at})
            if inc.assignee is None:
                incidents.take_command(incident_id, user)
        elif action == "assign":
            who = _text(value, "assignee")
            if who not in config.people.users:
                raise ActionError("invalid", f"unknown user {who!r}", 400)
            incidents.assign(incident_id, who, now)
            events.record(incident_id=incident_id, at=now, kind="assigned", actor=actor,
                          message=f"incident commander: {who}", detail={"assignee": who},
                          origin=origin)
        elif action == "note":
            note = _text(text, "note")
            events.record(incident_id=incident_id, at=now, kind="note", actor=actor,
                          message=note, detail={}, origin=origin)
        elif action == "resolve":
            still = incidents.firing_alerts(incident_id)
            reason = _text(text, "reason", required=False) or "resolved by hand"
            if still:
                reason += f" (while {still} alert(s) still firing)"
            _move(uow, inc, "resolved", actor=actor, reason=reason, now=now, origin=origin)
            incidents.set_resolved_by(incident_id, user)
        elif action == "close":
            if inc.severity in ("P0", "P1"):
                if not (incidents.postmortem(incident_id) or "").strip():
                    raise ActionError("postmortem_required",
                                      f"closing a {inc.severity} incident needs its "
                                      "post-mortem first (save it on the incident)")
            _move(uow, inc, "closed", actor=actor, reason=_text(text, "reason", required=False),
                  now=now, origin=origin)
        elif action == "false_alarm":
            _move(uow, inc, "false_alarm", actor=actor,
                  reason=_text(text, "reason", required=False) or "marked a false alarm",
                  now=now, origin=origin)
            incidents.mark_false_alarm(incident_id, now)
        elif action == "severity":
            try:
                new = Severity(value)
            except ValueError as exc:
                raise ActionError("invalid", "severity must be P0, P1, P2 or P3", 400) from exc
            reason = _text(text, "reason")
            if new.value != inc.severity:
                due = SlaClock(config).ack_due(new, inc.opened_at)
                incidents.set_severity(incident_id, new.value, reason=f"set by {user}: {reason}",
                                       ack_due_at=due, now=now)
                events.record(incident_id=incident_id, at=now, kind="severity_changed",
                              actor=actor,
                              message=f"severity {inc.severity} -> {new.value}: {reason}",
                              detail={"from": inc.severity, "to": new.value,
                                      "reason": reason}, origin=origin)
        elif action == "postmortem":
            body = _text(text, "post-mortem")
            incidents.save_postmortem(incident_id, body, now)
            events.record(incident_id=incident_id, at=now, kind="postmortem_saved",
                          actor=actor, message=f"post-mortem saved by {user}",
                          detail={"chars": len(body)}, origin=origin)
        else:
            raise ActionError("invalid", f"unknown action {action!r}", 400)
        return _load(uow, incident_id)


ACTIONS = ("acknowledge", "assign", "note", "resolve", "close", "false_alarm", "severity",
           "postmortem")

__all__ = ["ACTIONS", "ActionError", "InvalidTransition", "act"]
