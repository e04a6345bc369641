"""Remediation job states and the allowed transitions, as one explicit table (pure).

:mod:`receiver.store.jobs` makes every move as a conditional UPDATE from the states this
table allows; every other list of job states is derived from it.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    REFUSED = "refused"
    DENIED = "denied"
    EXPIRED = "expired"
    DRY_RUN = "dry_run"
    ESCALATED = "escalated"


J = JobState
# state -> states it may move to. ``running -> queued`` is the lease owner putting its own
# job back (a retry after backoff, a wait for a locked target); nobody else can make it,
# since a move from ``running`` needs the lease owner.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    J.QUEUED: frozenset({J.RUNNING}),
    J.RUNNING: frozenset(
        {J.SUCCEEDED, J.FAILED, J.BLOCKED, J.REFUSED, J.AWAITING_APPROVAL, J.DRY_RUN,
         J.QUEUED, J.INTERRUPTED, J.ESCALATED}
    ),
    J.AWAITING_APPROVAL: frozenset({J.QUEUED, J.DENIED, J.EXPIRED}),
    J.INTERRUPTED: frozenset({J.QUEUED, J.ESCALATED}),
    J.FAILED: frozenset(),
    J.SUCCEEDED: frozenset(),
    J.BLOCKED: frozenset(),
    J.REFUSED: frozenset(),
    J.DENIED: frozenset(),
    J.EXPIRED: frozenset(),
    J.DRY_RUN: frozenset(),
    J.ESCALATED: frozenset(),
}
del J

STATES: tuple[str, ...] = tuple(s.value for s in JobState)
FINAL = frozenset(s for s, nxt in JOB_TRANSITIONS.items() if not nxt)
"""States a job never leaves."""


def sources(target: str) -> list[str]:
    """The states a job may move to ``target`` from."""
    return [str(s) for s, nxt in JOB_TRANSITIONS.items() if target in nxt]


__all__ = ["FINAL", "JOB_TRANSITIONS", "STATES", "JobState", "sources"]
