"""Intake moves incidents (reopen, resolve) only as the incident transition table allows."""

from __future__ import annotations

import json

import pytest

from receiver.errors import InvalidTransition
from receiver.incidents import lifecycle
from receiver.incidents.states import TRANSITIONS, IncidentState
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.store import Store
from receiver.store.incidents import allowed_sources
from receiver.store.records import IngestResult
from tests.conftest import Clock, make_config, people
from tests.factories import later, make_alert, make_notification

S = IncidentState


def accept(store: Store, clock: Clock, body: dict) -> IngestResult:
    intake = Intake(make_config(), store, clock)
    raw = json.dumps(body)
    return intake.accept(Notification.model_validate_json(raw), raw)


def resolved(alert: dict) -> dict:
    return dict(alert, status="resolved", endsAt="2026-01-01T12:01:00Z")


def test_a_move_from_a_state_the_table_forbids_is_refused_with_the_states_named() -> None:
    """Asking for closed -> open (a final state has no way out) raises InvalidTransition."""
    with pytest.raises(InvalidTransition, match="from closed to open"):
        allowed_sources(S.OPEN, (S.RESOLVED, S.CLOSED))
    assert allowed_sources(S.OPEN, (S.RESOLVED,)) == (S.RESOLVED,)
    assert allowed_sources(S.RESOLVED) == ("open", "acknowledged", "mitigating", "mitigated")


def test_reopening_follows_the_table(store: Store, clock: Clock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With resolved -> open taken out of the table, a new episode within the flap window
    is refused (InvalidTransition) and the resolved incident stays as it was."""
    a = make_alert()
    first = accept(store, clock, make_notification([a]))
    accept(store, clock, make_notification([resolved(a)]))
    clock.advance(minutes=10)
    monkeypatch.setitem(TRANSITIONS, S.RESOLVED, frozenset({S.CLOSED}))
    with pytest.raises(InvalidTransition, match="from resolved to open"):
        accept(store, clock, make_notification([make_alert(starts_at=later(12))]))
    inc = store.get_incident(first.incident_id)
    assert inc is not None
    assert inc["state"] == "resolved" and inc["reopened_count"] == 0


def test_resolution_by_alerts_follows_the_table(store: Store, clock: Clock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With acknowledged -> resolved taken out of the table, the alerts resolving leave an
    acknowledged incident acknowledged; an open one still resolves."""
    monkeypatch.setitem(TRANSITIONS, S.ACKNOWLEDGED,
                        frozenset({S.MITIGATING, S.MITIGATED, S.FALSE_ALARM}))
    config = make_config(people=people())
    acked, plain = make_alert(labels={"instance": "a"}), make_alert(labels={"instance": "b"})
    inc = accept(store, clock, make_notification([acked], group_key="g-acked")).incident_id
    other = accept(store, clock, make_notification([plain], group_key="g-open")).incident_id
    assert inc is not None and other is not None
    lifecycle.act(store, config, inc, "acknowledge", user="alice", now=clock())
    clock.advance(minutes=1)
    done = accept(store, clock, make_notification([resolved(acked)], group_key="g-acked"))
    assert done.resolved_alerts == 1 and not done.incident_resolved
    assert store.get_incident(inc)["state"] == "acknowledged"  # type: ignore[index]
    assert accept(store, clock, make_notification([resolved(plain)],
                                                  group_key="g-open")).incident_resolved
    assert store.get_incident(other)["state"] == "resolved"  # type: ignore[index]
