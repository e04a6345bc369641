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
from receiver.store import Store, events
from receiver.store import incidents as incident_store
from receiver.store.db import Row, Tx

MAX_TEXT = 20_000


def _load(tx: Tx, incident_id: int) -> Row:
    incident_store.lock(tx, incident_id)
    row = tx.fetchone("SELECT id, state, severity, opened_at, acknowledged_at, ack_due_at,"
                      " assignee FROM incidents WHERE id = :id", {"id": incident_id})
    if row is None:
        raise ActionError("not_found", f"no incident {incident_id}", 404)
    return row


def _move(tx: Tx, inc: Row, to: str, *, actor: str, reason: str, now: datetime,
          origin: dict[str, Any] | None) -> None:
    if inc["state"] == to:
        return  # a repeated action is a no-op
    check_transition(inc["state"], to)  # InvalidTransition (an ActionError, 409) if forbidden
    if not incident_store.transition(tx, inc["id"], to, now=now, actor=actor, reason=reason,
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
) -> Row:
    """Run one named action; returns the incident row after it."""
    actor = f"user:{user}"
    with store.db.transaction() as tx:
        inc = _load(tx, incident_id)
        if action == "acknowledge":
            if inc["state"] == "open":
                _move(tx, inc, "acknowledged", actor=actor, reason=text, now=now, origin=origin)
            elif inc["acknowledged_at"] is None and inc["state"] in ACTIVE:
                tx.execute("UPDATE incidents SET acknowledged_at = :now WHERE id = :id"
                           " AND acknowledged_at IS NULL", {"id": incident_id, "now": now})
            if inc["acknowledged_at"] is None:
                events.record(tx, incident_id=incident_id, at=now, kind="acknowledged",
                              actor=actor, message=f"acknowledged by {user}", origin=origin,
                              detail={"late": now > inc["ack_due_at"]})
            if inc["assignee"] is None:
                tx.execute("UPDATE incidents SET assignee = :u WHERE id = :id",
                           {"u": user, "id": incident_id})
        elif action == "assign":
            who = _text(value, "assignee")
            if who not in config.people.users:
                raise ActionError("invalid", f"unknown user {who!r}", 400)
            tx.execute("UPDATE incidents SET assignee = :u, updated_at = :now WHERE id = :id",
                       {"u": who, "now": now, "id": incident_id})
            events.record(tx, incident_id=incident_id, at=now, kind="assigned", actor=actor,
                          message=f"incident commander: {who}", detail={"assignee": who},
                          origin=origin)
        elif action == "note":
            note = _text(text, "note")
            events.record(tx, incident_id=incident_id, at=now, kind="note", actor=actor,
                          message=note, detail={}, origin=origin)
        elif action == "resolve":
            firing = tx.fetchone("SELECT COUNT(*) AS n FROM alerts WHERE incident_id = :id"
                                 " AND status = 'firing'", {"id": incident_id})
            still = int(firing["n"]) if firing else 0
            reason = _text(text, "reason", required=False) or "resolved by hand"
            if still:
                reason += f" (while {still} alert(s) still firing)"
            _move(tx, inc, "resolved", actor=actor, reason=reason, now=now, origin=origin)
            tx.execute("UPDATE incidents SET resolved_by = :u WHERE id = :id",
                       {"u": user, "id": incident_id})
        elif action == "close":
            if inc["severity"] in ("P0", "P1"):
                pm = tx.fetchone("SELECT postmortem FROM incidents WHERE id = :id",
                                 {"id": incident_id})
                if not (pm and (pm["postmortem"] or "").strip()):
                    raise ActionError("postmortem_required",
                                      f"closing a {inc['severity']} incident needs its "
                                      "post-mortem first (save it on the incident)")
            _move(tx, inc, "closed", actor=actor, reason=_text(text, "reason", required=False),
                  now=now, origin=origin)
        elif action == "false_alarm":
            _move(tx, inc, "false_alarm", actor=actor,
                  reason=_text(text, "reason", required=False) or "marked a false alarm",
                  now=now, origin=origin)
            tx.execute("UPDATE incidents SET false_alarm_at = :now WHERE id = :id",
                       {"now": now, "id": incident_id})
        elif action == "severity":
            try:
                new = Severity(value)
            except ValueError as exc:
                raise ActionError("invalid", "severity must be P0, P1, P2 or P3", 400) from exc
            reason = _text(text, "reason")
            if new.value != inc["severity"]:
                due = SlaClock(config).ack_due(new, inc["opened_at"])
                tx.execute("UPDATE incidents SET severity = :s, severity_reason = :r,"
                           " ack_due_at = :due, updated_at = :now WHERE id = :id",
                           {"s": new.value, "r": f"set by {user}: {reason}", "due": due,
                            "now": now, "id": incident_id})
                events.record(tx, incident_id=incident_id, at=now, kind="severity_changed",
                              actor=actor,
                              message=f"severity {inc['severity']} -> {new.value}: {reason}",
                              detail={"from": inc["severity"], "to": new.value,
                                      "reason": reason}, origin=origin)
        elif action == "postmortem":
            body = _text(text, "post-mortem")
            tx.execute("UPDATE incidents SET postmortem = :t, updated_at = :now WHERE id = :id",
                       {"t": body, "now": now, "id": incident_id})
            events.record(tx, incident_id=incident_id, at=now, kind="postmortem_saved",
                          actor=actor, message=f"post-mortem saved by {user}",
                          detail={"chars": len(body)}, origin=origin)
        else:
            raise ActionError("invalid", f"unknown action {action!r}", 400)
        return _load(tx, incident_id)


ACTIONS = ("acknowledge", "assign", "note", "resolve", "close", "false_alarm", "severity",
           "postmortem")

__all__ = ["ACTIONS", "ActionError", "InvalidTransition", "act"]
