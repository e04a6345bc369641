"""Incident lifecycle states and the allowed transitions, as one explicit table (pure).

Every other list of incident states is derived from :data:`TRANSITIONS`: an incident is
*active* while it still has somewhere to go and cannot be closed yet (resolved and false
alarm incidents can be closed; a closed one goes nowhere).
"""

from __future__ import annotations

import enum

from receiver.errors import InvalidTransition


class IncidentState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    MITIGATING = "mitigating"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    FALSE_ALARM = "false_alarm"


S = IncidentState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.OPEN: frozenset({S.ACKNOWLEDGED, S.MITIGATING, S.MITIGATED, S.RESOLVED, S.FALSE_ALARM}),
    S.ACKNOWLEDGED: frozenset({S.MITIGATING, S.MITIGATED, S.RESOLVED, S.FALSE_ALARM}),
    S.MITIGATING: frozenset({S.MITIGATED, S.OPEN, S.ACKNOWLEDGED, S.RESOLVED, S.FALSE_ALARM}),
    S.MITIGATED: frozenset({S.MITIGATING, S.RESOLVED, S.FALSE_ALARM}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
    S.FALSE_ALARM: frozenset({S.CLOSED}),
}
"""state -> the states it may move to (keys and members are :class:`IncidentState`)."""
del S

STATES: tuple[str, ...] = tuple(s.value for s in IncidentState)
"""Every state's name, in lifecycle order."""
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
"""States with no way out (closed)."""
ACTIVE = frozenset(
    s for s, nxt in TRANSITIONS.items() if nxt and IncidentState.CLOSED not in nxt
)
"""States of an incident still being worked on: not final, and not ready to be closed."""
ACTIVE_STATES: tuple[str, ...] = tuple(s for s in STATES if s in ACTIVE)
""":data:`ACTIVE` as names, in lifecycle order (for SQL ``IN`` lists)."""


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def sources(target: str) -> tuple[str, ...]:
    """The states an incident may move to ``target`` from, in lifecycle order."""
    return tuple(s for s in STATES if can_transition(s, target))


def check_transition(current: str, target: str) -> None:
    if current == target:
        return  # a duplicate event is a no-op, not an error
    if not can_transition(current, target):
        raise InvalidTransition(f"an incident cannot go from {current} to {target}")


__all__ = ["ACTIVE", "ACTIVE_STATES", "FINAL", "STATES", "TRANSITIONS", "IncidentState",
           "can_transition", "check_transition", "sources"]
