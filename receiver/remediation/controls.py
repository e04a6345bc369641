"""Runtime controls: the kill switch (global and per rule), shadow mode, circuit breakers.

Each change is written together with its audit entry in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.remediation import guards
from receiver.store import Store
from receiver.store.controls import Control


def set_control(
    store: Store,
    name: str,
    value: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    origin: dict[str, Any] | None = None,
) -> None:
    with store.unit() as uow:
        before = uow.controls.get(name)
        uow.controls.set(name, value, reason=reason, actor=actor, now=now)
        uow.audit.append(
            at=now,
            actor=actor,
            action="control.set",
            subject=f"control:{name}",
            details={"name": name, "value": value, "reason": reason,
                     "previous": before.value if before else None},
            origin=origin,
        )


def pause(store: Store, *, actor: str, reason: str, now: datetime, rule: str | None = None,
          origin: dict[str, Any] | None = None) -> None:
    name = guards.rule_paused(rule) if rule else guards.PAUSED
    set_control(store, name, "true", actor=actor, reason=reason, now=now, origin=origin)


def resume(store: Store, *, actor: str, reason: str, now: datetime, rule: str | None = None,
           origin: dict[str, Any] | None = None) -> None:
    name = guards.rule_paused(rule) if rule else guards.PAUSED
    set_control(store, name, "false", actor=actor, reason=reason, now=now, origin=origin)


def reset_breaker(store: Store, rule: str, *, actor: str, reason: str, now: datetime) -> None:
    set_control(store, guards.breaker(rule), "closed", actor=actor, reason=reason, now=now)


def state(store: Store) -> dict[str, Control]:
    """Every control set so far, by name."""
    with store.unit(write=False) as uow:
        return uow.controls.all()


def record_config_loaded(store: Store, path: str, *, process: str, now: datetime) -> str:
    """Audit which configuration a process started with (its path and sha256), so that a
    change of rules or allowlist between two incidents shows in the audit log."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with store.unit() as uow:
        uow.audit.append(at=now, actor="system", action="config.loaded",
                         subject=f"config:{Path(path).name}",
                         details={"path": str(Path(path).resolve()), "sha256": digest,
                                  "process": process})
    return digest
