"""Incident lifecycle: the transition table, and human actions with their record."""

from __future__ import annotations

import itertools

import pytest

from receiver.errors import InvalidTransition
from receiver.incidents import lifecycle
from receiver.incidents.states import STATES, TRANSITIONS, can_transition, check_transition
from receiver.store import AuditFilter, Store
from tests.conftest import Clock, people
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification

ALLOWED = {(a, b) for a, nxt in TRANSITIONS.items() for b in nxt}
EXPECTED = {
    ("open", "acknowledged"), ("open", "mitigating"), ("open", "mitigated"),
    ("open", "resolved"), ("open", "false_alarm"),
    ("acknowledged", "mitigating"), ("acknowledged", "mitigated"),
    ("acknowledged", "resolved"), ("acknowledged", "false_alarm"),
    ("mitigating", "mitigated"), ("mitigating", "open"), ("mitigating", "acknowledged"),
    ("mitigating", "resolved"),
    ("mitigating", "false_alarm"),
    ("mitigated", "mitigating"), ("mitigated", "resolved"), ("mitigated", "false_alarm"),
    ("resolved", "open"), ("resolved", "closed"),
    ("false_alarm", "closed"),
}


def test_transition_table_is_exactly_the_documented_one() -> None:
    """The table allows these 20 moves and nothing else."""
    assert ALLOWED == EXPECTED


@pytest.mark.parametrize(("a", "b"), list(itertools.product(STATES, STATES)))
def test_every_pair_is_allowed_or_refused(a: str, b: str) -> None:
    """Each of the 49 pairs is allowed iff the table says so; same-state is a no-op."""
    if a == b:
        check_transition(a, b)  # no error: a duplicate event changes nothing
        return
    assert can_transition(a, b) is ((a, b) in EXPECTED)
    if (a, b) in EXPECTED:
        check_transition(a, b)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(a, b)


@pytest.fixture
def kit(store: Store, clock: Clock) -> Kit:
    return Kit(store, clock, [], people=people())


def open_incident(kit: Kit, **over: object) -> int:
    return kit.fire(make_notification([make_alert(**over)], group_key="g1")).incident_id


def test_acknowledge_records_who_when_and_stops_nothing_else(kit: Kit, clock: Clock) -> None:
    """ack moves open -> acknowledged, stamps the time, sets the commander, and is audited."""
    inc = open_incident(kit)
    clock.advance(minutes=3)
    row = lifecycle.act(kit.store, kit.config, inc, "acknowledge", user="alice", now=clock())
    assert row.state == "acknowledged" and row.acknowledged_at == clock()
    assert row.assignee == "alice"
    again = lifecycle.act(kit.store, kit.config, inc, "acknowledge", user="bob", now=clock())
    assert again.acknowledged_at == row.acknowledged_at  # a repeat changes nothing
    actions = [e["action"] for e in kit.store.audit(AuditFilter(incident_id=inc))]
    assert "incident.state_changed" in actions and "incident.acknowledged" in actions


def test_forbidden_action_is_refused(kit: Kit, clock: Clock) -> None:
    """Closing an open incident is not in the table and is refused with the states named."""
    inc = open_incident(kit, labels={"severity": "warning"})
    with pytest.raises(lifecycle.ActionError, match="from open to closed"):
        lifecycle.act(kit.store, kit.config, inc, "close", user="alice", now=clock())


def test_human_resolution_while_firing_is_shown_as_such(kit: Kit, clock: Clock) -> None:
    """A person may resolve while alerts fire; the timeline says how many still fire."""
    inc = open_incident(kit)
    lifecycle.act(kit.store, kit.config, inc, "resolve", user="alice", now=clock(),
                  text="rolled back")
    detail = kit.store.get_incident(inc)
    assert detail["state"] == "resolved" and detail["resolved_by"] == "alice"
    msg = [e["message"] for e in detail["timeline"] if e["kind"] == "state_changed"][-1]
    assert "rolled back" in msg and "1 alert(s) still firing" in msg


def test_assign_note_severity(kit: Kit, clock: Clock) -> None:
    """Assign needs a known user; notes land on the timeline; severity changes need a reason
    and move the acknowledge-by deadline."""
    inc = open_incident(kit)
    with pytest.raises(lifecycle.ActionError, match="unknown user"):
        lifecycle.act(kit.store, kit.config, inc, "assign", user="alice", now=clock(),
                      value="mallory")
    lifecycle.act(kit.store, kit.config, inc, "assign", user="alice", now=clock(), value="bob")
    lifecycle.act(kit.store, kit.config, inc, "note", user="bob", now=clock(),
                  text="checked the DB")
    with pytest.raises(lifecycle.ActionError, match="reason is required"):
        lifecycle.act(kit.store, kit.config, inc, "severity", user="bob", now=clock(),
                      value="P0")
    row = lifecycle.act(kit.store, kit.config, inc, "severity", user="bob", now=clock(),
                        value="P0", text="customers affected")
    assert row.severity == "P0"
    assert (row.ack_due_at - row.opened_at).total_seconds() == 15 * 60
    detail = kit.store.get_incident(inc)
    assert detail["assignee"] == "bob"
    assert [e["message"] for e in detail["timeline"] if e["kind"] == "note"] == ["checked the DB"]


def test_false_alarm_then_close(kit: Kit, clock: Clock) -> None:
    """A false alarm frees the incident key; closing it afterwards is allowed."""
    inc = open_incident(kit, labels={"severity": "warning"})
    lifecycle.act(kit.store, kit.config, inc, "false_alarm", user="alice", now=clock())
    assert kit.store.get_incident(inc)["false_alarm_at"] == clock()
    lifecycle.act(kit.store, kit.config, inc, "close", user="alice", now=clock())
    assert kit.store.get_incident(inc)["state"] == "closed"
    clock.advance(minutes=1)
    new = kit.fire(make_notification([make_alert(labels={"severity": "warning",
                                                         "instance": "other"})],
                                     group_key="g1")).incident_id
    assert new != inc
