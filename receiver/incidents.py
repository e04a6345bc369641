"""Incident lifecycle states and the allowed transitions, as one explicit table (pure)."""

from __future__ import annotations

from receiver.errors import InvalidTransition

STATES = ("open", "acknowledged", "mitigating", "mitigated", "resolved", "closed", "false_alarm")
ACTIVE = frozenset({"open", "acknowledged", "mitigating", "mitigated"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "mitigating", "mitigated", "resolved", "false_alarm"}),
    "acknowledged": frozenset({"mitigating", "mitigated", "resolved", "false_alarm"}),
    "mitigating": frozenset({"mitigated", "open", "acknowledged", "resolved", "false_alarm"}),
    "mitigated": frozenset({"mitigating", "resolved", "false_alarm"}),
    "resolved": frozenset({"open", "closed"}),
    "closed": frozenset(),
    "false_alarm": frozenset({"closed"}),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, target: str) -> None:
    if current == target:
        return  # a duplicate event is a no-op, not an error
    if not can_transition(current, target):
        raise InvalidTransition(f"an incident cannot go from {current} to {target}")
