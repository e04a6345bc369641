"""Who is on duty: the configured roles (``oncall``), their rotations, and overrides.

A rotation hands over weekly at a wall-clock time in its own time zone (``monday 09:00
Europe/Berlin``), so a hand-off stays at 09:00 local across a daylight-saving change: that
week is then 167 or 169 hours long. The turn is counted in local calendar weeks from the
first hand-off (the first hand-off day on or after ``rotation.starts``). A hand-off time that
a spring-forward skips happens at the same wall-clock time shifted by the gap (zoneinfo's
rule for a non-existent local time).

An override (``remediator oncall override``) puts a person in a role's primary seat from
its start to its end; the newest override covering a moment wins. The backup is the role's
configured one. When the primary has not acknowledged an incident within
``oncall.backup_after``, the backup is called too (:func:`called`).

Everything here is a pure function of the config, the overrides and a moment, so the
roster is tested at any moment (a movable clock), including across hand-offs and DST.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from receiver.config import oncall as config_oncall
from receiver.config.oncall import OncallConfig, Role, Rotation
from receiver.store.oncall import Override

if TYPE_CHECKING:
    from receiver.config import Config

ROLE_GROUP_PREFIX = config_oncall.ROLE_GROUP_PREFIX
"""An approval group or chat invitation group named ``oncall:<role>`` means whoever is on
duty."""


@dataclass(frozen=True)
class Duty:
    role: str
    primary: str
    backup: str | None
    source: Literal["fixed", "rotation", "override"]
    since: datetime | None
    """When this turn began (a hand-off or an override's start); None for a fixed primary."""
    until: datetime | None
    """When it ends (the next hand-off, or the override's end); None for a fixed primary."""
    override_id: int | None = None


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _first_handoff_day(rotation: Rotation) -> date:
    ahead = (rotation.handoff.weekday - rotation.starts.weekday()) % 7
    return rotation.starts + timedelta(days=ahead)


def rotation_turn(rotation: Rotation, at: datetime) -> tuple[str, datetime, datetime]:
    """The person whose turn ``at`` falls in, and the turn's start and end (UTC)."""
    zone, handoff = rotation.handoff.zone, rotation.handoff
    local = at.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - handoff.weekday) % 7)
    start = _local(day, handoff.time, zone)
    if start > at:  # hand-off day, before the hand-off time: the previous week's turn
        day -= timedelta(days=7)
        start = _local(day, handoff.time, zone)
    weeks = (day - _first_handoff_day(rotation)).days // 7
    person = rotation.people[weeks % len(rotation.people)]
    return person, start, _local(day + timedelta(days=7), handoff.time, zone)


def _configured(name: str, role: Role, at: datetime) -> Duty:
    if role.rotation is not None:
        person, start, end = rotation_turn(role.rotation, at)
        return Duty(name, person, role.backup, "rotation", start, end)
    return Duty(name, str(role.primary), role.backup, "fixed", None, None)


def on_duty(config: OncallConfig, role_name: str, at: datetime,
            overrides: Iterable[Override] = ()) -> Duty:
    """Who holds ``role_name`` at ``at``; KeyError for a role the config does not name."""
    role = config.roles[role_name]
    covering = [o for o in overrides if o.role == role_name and o.covers(at)]
    if covering:
        o = max(covering, key=lambda o: (o.created_at, o.id))
        return Duty(role_name, o.user_name, role.backup, "override", o.starts_at, o.ends_at,
                    override_id=o.id)
    return _configured(role_name, role, at)


def next_duty(config: OncallConfig, role_name: str, at: datetime,
              overrides: Iterable[Override] = ()) -> Duty | None:
    """Who holds the role after the current turn ends; None when it never changes."""
    overrides = list(overrides)
    now = on_duty(config, role_name, at, overrides)
    if now.until is None:
        # a fixed primary changes only when an override starts
        starts = sorted(o.starts_at for o in overrides
                        if o.role == role_name and o.revoked_at is None and o.starts_at > at)
        return on_duty(config, role_name, starts[0], overrides) if starts else None
    ends = now.until
    later = [o.starts_at for o in overrides
             if o.role == role_name and o.revoked_at is None and at < o.starts_at < ends]
    return on_duty(config, role_name, min([ends, *later]), overrides)


def roster(config: OncallConfig, at: datetime,
           overrides: Iterable[Override] = ()) -> list[tuple[Duty, Duty | None]]:
    """Every role, who is on duty at ``at`` and who is next, in config order."""
    overrides = list(overrides)
    return [(on_duty(config, name, at, overrides), next_duty(config, name, at, overrides))
            for name in config.roles]


def called(duty: Duty, *, opened_at: datetime, acknowledged_at: datetime | None,
           now: datetime, backup_after: timedelta) -> list[str]:
    """Who is called for an incident opened at ``opened_at``: the primary, and the backup
    once ``backup_after`` has passed without an acknowledgement."""
    people = [duty.primary]
    deadline = opened_at + backup_after
    missed = acknowledged_at is None or acknowledged_at > deadline
    if duty.backup and duty.backup != duty.primary and now >= deadline and missed:
        people.append(duty.backup)
    return people


def role_groups(config: OncallConfig, user: str, at: datetime,
                overrides: Iterable[Override] = ()) -> set[str]:
    """The ``oncall:<role>`` groups ``user`` is in at ``at``: the roles they hold as primary
    (approval policies may name such a group)."""
    overrides = list(overrides)
    return {f"{ROLE_GROUP_PREFIX}{name}" for name in config.roles
            if on_duty(config, name, at, overrides).primary == user}


def members(config: Config, group: str, at: datetime, overrides: Iterable[Override] = (), *,
            opened_at: datetime | None = None,
            acknowledged_at: datetime | None = None) -> set[str]:
    """The people of ``group`` at ``at``: for ``oncall:<role>``, whoever holds the role
    then (and its backup once :func:`called` says so for an incident opened at
    ``opened_at``); for any other name, the ``people.users`` entries in that group."""
    if not group.startswith(ROLE_GROUP_PREFIX):
        return {name for name, p in config.people.users.items() if group in p.groups}
    role = group[len(ROLE_GROUP_PREFIX):]
    if role not in config.oncall.roles:
        return set()
    duty = on_duty(config.oncall, role, at, overrides)
    if opened_at is None:
        return {duty.primary}
    return set(called(duty, opened_at=opened_at, acknowledged_at=acknowledged_at, now=at,
                      backup_after=config.oncall.backup_after))


def in_any(config: Config, user: str, groups: Iterable[str], at: datetime,
           overrides: Iterable[Override] = (), *, opened_at: datetime | None = None,
           acknowledged_at: datetime | None = None) -> bool:
    """Whether ``user`` is in one of ``groups`` at ``at`` (roles resolved as in
    :func:`members`)."""
    overrides = list(overrides)
    return any(user in members(config, g, at, overrides, opened_at=opened_at,
                               acknowledged_at=acknowledged_at) for g in groups)


def on_duty_at(config: Config, at: datetime, overrides: Iterable[Override] = ()) -> list[Duty]:
    """Every configured role's holder at ``at`` (for the incident page and the post-mortem:
    who was on duty when an incident opened)."""
    overrides = list(overrides)
    return [on_duty(config.oncall, name, at, overrides) for name in config.oncall.roles]
