"""Starting and ending a game day.

``start`` records the game day first (so that the webhook which Alertmanager sends back
finds it), then posts the scenario's alerts, each with ``gameday="<id>"`` added, to every
Alertmanager given; the whole path is then the real one (routing, grouping, the webhook,
the incident, notifications, chat). ``end`` ends it and posts the same alerts again with
``endsAt`` now, so that Alertmanager resolves them. Both are audited (in the store).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from receiver.adapters.alertmanager import AlertmanagerAdapter, PostableAlert, alerts_url
from receiver.config import Config
from receiver.errors import AdapterError, TargetNotAllowed
from receiver.gameday.scenario import Scenario
from receiver.store import Store
from receiver.store.gamedays import LABEL, GameDay


@dataclass(frozen=True)
class Posted:
    gameday: GameDay
    delivered: list[str]
    failed: dict[str, str] = field(default_factory=dict)


def new_id(now: datetime) -> str:
    """A game day's id: its start time and a random part (a label value nobody can guess
    before the game day starts)."""
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def alertmanagers_for(config: Config, given: tuple[str, ...]) -> list[str]:
    """The Alertmanagers to post to (``--alertmanager``, else ``gameday.alertmanagers``),
    each checked against ``targets.http.hosts``; TargetNotAllowed or ValueError."""
    urls = list(given) or list(config.gameday.alertmanagers)
    if not urls:
        raise ValueError("no Alertmanager: give --alertmanager URL or set gameday.alertmanagers")
    for url in urls:
        alerts_url(url, config.targets.http)
    return urls


def postable(scenario: Scenario, gameday_id: str, *, started_at: datetime,
             deadline: datetime, resolved_at: datetime | None = None) -> list[PostableAlert]:
    """The scenario's alerts as Alertmanager takes them, with the game day's label; each
    ends at its ``resolve_after``, else at the deadline (or at ``resolved_at``)."""
    out = []
    for alert in scenario.alerts:
        ends = deadline if alert.resolve_after is None else started_at + alert.resolve_after
        if resolved_at is not None:
            ends = min(ends, resolved_at)
        out.append(PostableAlert(labels={**alert.labels, LABEL: gameday_id},
                                 annotations=dict(alert.annotations), starts_at=started_at,
                                 ends_at=ends))
    return out


def start(config: Config, store: Store, scenario: Scenario, *, alertmanagers: list[str],
          actor: str, origin: dict[str, Any], now: datetime,
          adapter: AlertmanagerAdapter | None = None) -> Posted:
    """Record the game day, then post its alerts. A game day that no Alertmanager took is
    ended at once (nothing would ever come of it)."""
    adapter = adapter or AlertmanagerAdapter(config.targets.http)
    gid = new_id(now)
    deadline = now + scenario.time_limit
    details: dict[str, Any] = {"alertmanagers": alertmanagers, "alerts": len(scenario.alerts)}
    with store.unit() as uow:
        made = uow.gamedays.start(id=gid, name=scenario.name,
                                  scenario=scenario.model_dump_json(),
                                  targets=scenario.live_targets, details=details, actor=actor,
                                  now=now, deadline=deadline, origin=origin)
    alerts = postable(scenario, gid, started_at=now, deadline=deadline)
    delivered, failed = _post_all(adapter, alertmanagers, alerts)
    with store.unit() as uow:
        uow.gamedays.note(gid, {**details, "delivered": delivered, "failed": failed})
        if not delivered:
            uow.gamedays.end(gid, actor=actor, now=now, origin=origin)
    return Posted(made, delivered, failed)


def end(config: Config, store: Store, gameday_id: str, *, actor: str, origin: dict[str, Any],
        now: datetime, adapter: AlertmanagerAdapter | None = None) -> Posted | None:
    """End a running game day and resolve its alerts in Alertmanager; None when there is no
    such game day or it has already ended."""
    with store.unit() as uow:
        gone = uow.gamedays.end(gameday_id, actor=actor, now=now, origin=origin)
    if gone is None:
        return None
    scenario = Scenario.model_validate_json(gone.scenario)
    urls = [str(u) for u in gone.details.get("delivered") or gone.details.get("alertmanagers")
            or []]
    alerts = postable(scenario, gone.id, started_at=gone.started_at,
                      deadline=gone.deadline_at, resolved_at=now)
    if now >= gone.deadline_at:
        return Posted(gone, [], {})  # every alert has already ended in Alertmanager
    adapter = adapter or AlertmanagerAdapter(config.targets.http)
    delivered, failed = _post_all(adapter, urls, alerts)
    return Posted(gone, delivered, failed)


def _post_all(adapter: AlertmanagerAdapter, urls: list[str],
              alerts: list[PostableAlert]) -> tuple[list[str], dict[str, str]]:
    delivered: list[str] = []
    failed: dict[str, str] = {}
    for url in urls:
        try:
            adapter.post(url, alerts)
        except (AdapterError, TargetNotAllowed) as exc:
            failed[url] = str(exc)[:500]
        else:
            delivered.append(url)
    return delivered, failed


def running_for(gameday: GameDay, now: datetime) -> timedelta:
    end_at = min(gameday.ended_at or gameday.deadline_at, gameday.deadline_at, now)
    return end_at - gameday.started_at
