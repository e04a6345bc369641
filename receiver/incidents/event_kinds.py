"""The kinds of timeline event, and one table of what each kind does (pure).

Every event on an incident's timeline has a kind. :func:`receiver.store.events.record`
refuses a kind that is not an :class:`EventKind`, and reads :data:`TABLE` for what else the
event causes, in the same transaction:

- ``audited``: an entry in the hash-chained audit log (state changes and decisions);
- ``notify``: a row in the notifications outbox, sent to the channels that listen for the
  kind, with this apprise notify type (``info``, ``success``, ``warning``, ``failure``);
  None: nobody is told (``state_changed`` is in the outbox but reaches only channels that
  ask for it, see :data:`BY_DEFAULT_SILENT`);
- ``diagnose``: a pending diagnostics request for the incident;
- ``label``: how people read the kind (notification titles).

The values are the strings stored in ``incident_events.kind`` and ``outbox.kind`` and
listed in ``notifications.channels.<name>.events``; :class:`EventKind` is a ``StrEnum``, so a
member equals its string. A new kind is one member and one row of the table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

NotifyType = Literal["info", "success", "warning", "failure"]


class EventKind(enum.StrEnum):
    # the incident
    OPENED = "opened"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    SEVERITY_CHANGED = "severity_changed"
    STATE_CHANGED = "state_changed"
    ALERTS_FIRING = "alerts_firing"
    ALERTS_RESOLVED = "alerts_resolved"
    # people
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    NOTE = "note"
    POSTMORTEM_SAVED = "postmortem_saved"
    # timers
    SLA_BREACHED = "sla_breached"
    ESCALATED = "escalated"
    REMINDER = "reminder"
    # diagnostics
    DIAGNOSTICS_REQUESTED = "diagnostics_requested"
    DIAGNOSTICS = "diagnostics"
    # remediation jobs
    JOB_ENQUEUED = "job_enqueued"
    JOB_CLAIMED = "job_claimed"
    JOB_WAITING = "job_waiting"
    JOB_BLOCKED = "job_blocked"
    JOB_REFUSED = "job_refused"
    JOB_DRY_RUN = "job_dry_run"
    JOB_AWAITING_APPROVAL = "job_awaiting_approval"
    JOB_APPROVED = "job_approved"
    JOB_DENIED = "job_denied"
    JOB_EXPIRED = "job_expired"
    JOB_STARTED = "job_started"
    JOB_SUCCEEDED = "job_succeeded"
    JOB_FAILED = "job_failed"
    JOB_RETRY_SCHEDULED = "job_retry_scheduled"
    JOB_INTERRUPTED = "job_interrupted"
    JOB_REQUEUED = "job_requeued"
    JOB_ESCALATED = "job_escalated"
    VERIFICATION_PASSED = "verification_passed"
    VERIFICATION_FAILED = "verification_failed"
    CIRCUIT_OPENED = "circuit_opened"
    # earned autonomy (approval: {mode: earned}), see receiver.remediation.autonomy
    AUTONOMY_PROMOTED = "autonomy_promoted"
    AUTONOMY_DEMOTED = "autonomy_demoted"
    AUTONOMY_SET_BACK = "autonomy_set_back"
    UNDO_REQUESTED = "undo_requested"
    UNDO_REFUSED = "undo_refused"
    # Alertmanager silences while a job acts
    SILENCE_CREATED = "silence_created"
    SILENCE_EXPIRED = "silence_expired"
    SILENCE_FAILED = "silence_failed"

    @classmethod
    def parse(cls, value: str) -> EventKind:
        """The kind named ``value``; ValueError for a string that names no kind."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown event kind {value!r}") from None

    @property
    def spec(self) -> KindSpec:
        return TABLE[self]

    @property
    def label(self) -> str:
        return TABLE[self].label


@dataclass(frozen=True)
class KindSpec:
    audited: bool
    notify: NotifyType | None
    diagnose: bool
    label: str

    @property
    def notified(self) -> bool:
        return self.notify is not None


K = EventKind
_ROWS: tuple[tuple[EventKind, bool, NotifyType | None, bool, str], ...] = (
    # kind                     audited  notify     diagnose  label
    (K.OPENED,                 True,    "warning", True,     "opened"),
    (K.REOPENED,               True,    "warning", True,     "reopened"),
    (K.RESOLVED,               True,    "success", False,    "resolved"),
    (K.SEVERITY_CHANGED,       True,    "warning", False,    "severity changed"),
    (K.STATE_CHANGED,          True,    "info",    False,    "state changed"),
    (K.ALERTS_FIRING,          False,   None,      False,    "alerts firing"),
    (K.ALERTS_RESOLVED,        False,   None,      False,    "alerts resolved"),
    (K.ACKNOWLEDGED,           True,    None,      False,    "acknowledged"),
    (K.ASSIGNED,               True,    None,      False,    "assigned"),
    (K.NOTE,                   True,    None,      False,    "note"),
    (K.POSTMORTEM_SAVED,       True,    None,      False,    "postmortem saved"),
    (K.SLA_BREACHED,           True,    "failure", False,    "sla breached"),
    (K.ESCALATED,              True,    "failure", False,    "escalated"),
    (K.REMINDER,               True,    "warning", False,    "reminder"),
    (K.DIAGNOSTICS_REQUESTED,  True,    None,      False,    "diagnostics requested"),
    (K.DIAGNOSTICS,            False,   None,      False,    "diagnostics"),
    (K.JOB_ENQUEUED,           True,    None,      False,    "job enqueued"),
    (K.JOB_CLAIMED,            True,    None,      False,    "job claimed"),
    (K.JOB_WAITING,            True,    None,      False,    "job waiting"),
    (K.JOB_BLOCKED,            True,    None,      False,    "job blocked"),
    (K.JOB_REFUSED,            True,    None,      False,    "job refused"),
    (K.JOB_DRY_RUN,            True,    None,      False,    "job dry run"),
    (K.JOB_AWAITING_APPROVAL,  True,    "warning", False,    "job awaiting approval"),
    (K.JOB_APPROVED,           True,    None,      False,    "job approved"),
    (K.JOB_DENIED,             True,    None,      False,    "job denied"),
    (K.JOB_EXPIRED,            True,    None,      False,    "job expired"),
    (K.JOB_STARTED,            True,    "info",    False,    "job started"),
    (K.JOB_SUCCEEDED,          True,    "success", False,    "job succeeded"),
    (K.JOB_FAILED,             True,    "failure", False,    "job failed"),
    (K.JOB_RETRY_SCHEDULED,    True,    None,      False,    "job retry scheduled"),
    (K.JOB_INTERRUPTED,        True,    None,      False,    "job interrupted"),
    (K.JOB_REQUEUED,           True,    None,      False,    "job requeued"),
    (K.JOB_ESCALATED,          True,    None,      False,    "job escalated"),
    (K.VERIFICATION_PASSED,    True,    None,      False,    "verification passed"),
    (K.VERIFICATION_FAILED,    True,    "failure", False,    "verification failed"),
    (K.CIRCUIT_OPENED,         True,    None,      False,    "circuit opened"),
    (K.AUTONOMY_PROMOTED,      True,    None,      False,    "autonomy promoted"),
    (K.AUTONOMY_DEMOTED,       True,    None,      False,    "autonomy demoted"),
    (K.AUTONOMY_SET_BACK,      True,    None,      False,    "autonomy set back"),
    (K.UNDO_REQUESTED,         True,    "info",    False,    "undo requested"),
    (K.UNDO_REFUSED,           True,    None,      False,    "undo refused"),
    (K.SILENCE_CREATED,        True,    None,      False,    "silence created"),
    (K.SILENCE_EXPIRED,        True,    None,      False,    "silence expired"),
    (K.SILENCE_FAILED,         True,    None,      False,    "silence failed"),
)
del K

TABLE: Mapping[EventKind, KindSpec] = MappingProxyType(
    {kind: KindSpec(audited, notify, diagnose, label)
     for kind, audited, notify, diagnose, label in _ROWS}
)
"""Every kind's properties; ``tests/test_event_kinds.py`` checks it covers every kind."""

AUDITED: frozenset[EventKind] = frozenset(k for k, s in TABLE.items() if s.audited)
"""Kinds that are state changes or decisions, and so also go to the audit log."""
NOTIFIED: frozenset[EventKind] = frozenset(k for k, s in TABLE.items() if s.notified)
"""Kinds worth telling people about: each also lands in the notifications outbox."""
DIAGNOSED: frozenset[EventKind] = frozenset(k for k, s in TABLE.items() if s.diagnose)
"""Kinds that start automatic diagnostics for the incident."""


def _spec_of(kind: str) -> KindSpec | None:
    try:
        return TABLE[EventKind(kind)]
    except ValueError:
        return None


def notify_type(kind: str) -> NotifyType:
    """The apprise notify type of a kind (``info`` for one that is not notified, or a kind
    stored by an older version and no longer known)."""
    spec = _spec_of(kind)
    return spec.notify if spec is not None and spec.notify is not None else "info"


def label_of(kind: str) -> str:
    """How people read a kind; a stored kind this version does not know reads as itself."""
    spec = _spec_of(kind)
    return spec.label if spec is not None else kind.replace("_", " ")


def notified_kinds() -> list[str]:
    """The kinds a notification channel may listen for, sorted."""
    return sorted(k.value for k in NOTIFIED)


BY_DEFAULT_SILENT: frozenset[EventKind] = frozenset({EventKind.STATE_CHANGED})
"""Notified kinds a channel hears only when it names them (or its audience does): every
state change lands in the outbox, so that an audience can listen for ``mitigated``."""


def default_channel_kinds() -> list[str]:
    """The kinds a channel listens for when it names none, sorted."""
    return sorted(k.value for k in NOTIFIED - BY_DEFAULT_SILENT)


DERIVED_STATES: Mapping[str, str] = MappingProxyType(
    {"mitigated": "mitigated", "resolved": "resolved"})
"""A ``state_changed`` event to one of these states also reads as the event named here, for
channels with an audience (``mitigated`` is no kind of its own; a person resolving an
incident is a ``state_changed``, while the last alert resolving it is ``resolved``)."""


def audience_event_names() -> list[str]:
    """What an audience (or a channel) may list in ``events``, sorted."""
    return sorted(set(notified_kinds()) | set(DERIVED_STATES.values()))


def event_names(kind: str, detail: Mapping[str, object] | None,
                *, derived: bool) -> frozenset[str]:
    """The event names an outbox row of ``kind`` answers to: its kind, and with ``derived``
    the name its state change reads as (see :data:`DERIVED_STATES`)."""
    names = {kind}
    if derived and kind == EventKind.STATE_CHANGED.value:
        alias = DERIVED_STATES.get(str((detail or {}).get("to")))
        if alias is not None:
            names.add(alias)
    return frozenset(names)


__all__ = ["AUDITED", "BY_DEFAULT_SILENT", "DERIVED_STATES", "DIAGNOSED", "NOTIFIED", "TABLE",
           "EventKind", "KindSpec", "NotifyType", "audience_event_names",
           "default_channel_kinds", "event_names", "label_of", "notified_kinds",
           "notify_type"]
