"""One job's session: what the worker's steps share while they handle one job.

A :class:`JobSession` is built once per job (:func:`open_session`): the rule and playbook,
the params parsed by the playbook's model, the allowlist checked once (``check_allowed``),
the targets, risk and approval policy, and one :class:`SessionAdapters` that builds each
adapter (Docker, Redis, PostgreSQL...) once, for plan, run and verify alike, and closes them
when the job's session ends. What the alert said is read from the store once, when a step
first needs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import structlog
from pydantic import ValidationError

from playbooks.base import Playbook, PlaybookContext, Risk
from receiver.adapters import AdapterFactory
from receiver.config import Config
from receiver.errors import TargetNotAllowed
from receiver.remediation.rules import RemediationRule, params_from_alert
from receiver.store import Store, UnitOfWork
from receiver.store.jobs import Job

log = structlog.get_logger("receiver.remediation.worker")


def short(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line for a job's reason and timeline."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


def event(uow: UnitOfWork, job: Job, kind: str, message: str, detail: dict[str, Any], *,
          at: datetime, as_job: bool = True) -> None:
    """A timeline event of the job's incident, by the system (with what its kind causes)."""
    uow.events.record(incident_id=job.incident_id, at=at, kind=kind, actor="system",
                      message=message, detail=detail, job_id=job.id if as_job else None)


class _Kept:
    """An adapter shared by one job's steps: ``with`` enters it but does not close it."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter
        self.entered = False

    def __enter__(self) -> Any:
        self.entered = True
        return self._adapter.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def close(self) -> None:
        """Closes it for good: the session calls this when the job's session ends."""
        closer = getattr(self._adapter, "close", None)
        if closer is not None:
            closer()


def _key(value: Any) -> Hashable:
    return value if isinstance(value, str | int | float | bool | None) else ("id", id(value))


class SessionAdapters(AdapterFactory):
    """The worker's factory, for one job: each adapter that holds a client (every method of
    the factory, called with the same arguments) is built once and shared by plan, run and
    verify; :meth:`close` closes them all."""

    def __init__(self, base: AdapterFactory) -> None:
        self._base = base
        self._kept: dict[Hashable, _Kept] = {}
        self._guard = threading.Lock()
        self._pinned: list[Any] = []  # keeps the arguments alive, so that their ids stay theirs
        for name in dir(base):
            if not name.startswith("_") and callable(getattr(base, name)) and name != "close":
                setattr(self, name, self._sharing(name, getattr(base, name)))

    def _sharing(self, name: str, build: Callable[..., Any]) -> Callable[..., Any]:
        def shared(*args: Any, **kwargs: Any) -> Any:
            key = (name, tuple(_key(a) for a in args),
                   tuple(sorted((k, _key(v)) for k, v in kwargs.items())))
            with self._guard:
                kept = self._kept.get(key)
                if kept is None:
                    adapter = build(*args, **kwargs)
                    if not hasattr(adapter, "close"):
                        return adapter  # holds no client: nothing to share
                    kept = self._kept[key] = _Kept(adapter)
                    self._pinned.append((args, kwargs))
                return kept

        return shared

    def close(self) -> None:
        with self._guard:
            kept, self._kept = list(self._kept.values()), {}
            self._pinned.clear()
        for k in kept:
            try:
                k.close()
            except Exception:  # noqa: BLE001 - a client that fails to close ends nothing
                log.warning("adapter_close_failed", exc_info=True)


class Refused(Exception):  # noqa: N818 - an outcome, not an error of the worker
    """The job cannot run as configured (rule or playbook gone, bad params, target not
    allowed): it ends ``refused`` with this reason."""


@dataclass
class JobSession:
    """What the steps of one job share; see :func:`open_session`."""

    job: Job
    rule: RemediationRule
    playbook: Playbook[Any]
    params: Any
    ctx: PlaybookContext
    targets: list[str]
    risk: Risk
    always_approve: str | None
    store: Store
    adapters: SessionAdapters
    _alert: tuple[dict[str, str], dict[str, str]] | None = field(default=None, repr=False)

    def alert_text(self) -> tuple[dict[str, str], dict[str, str]]:
        """The labels and annotations of the job's alert (empty for an incident's job), read
        once."""
        if self._alert is None:
            found = None
            if self.job.alert_id is not None:
                with self.store.unit(write=False) as uow:
                    found = uow.incidents.alert_text(self.job.alert_id)
            self._alert = (dict(found.labels), dict(found.annotations)) if found else ({}, {})
        return self._alert

    def resolved(self) -> bool:
        """Whether the job's alert has resolved (or, for an incident's job, every alert)."""
        with self.store.unit(write=False) as uow:
            return uow.incidents.alerts_resolved(self.job.incident_id,
                                                 alert_id=self.job.alert_id)

    def close(self) -> None:
        self.adapters.close()


def open_session(job: Job, *, config: Config, registry: dict[str, Playbook[Any]],
                 store: Store, adapters: AdapterFactory,
                 clock: Callable[[], datetime]) -> JobSession:
    """The job's session: its rule and playbook, params parsed, allowlist checked (once per
    job), targets, risk and approval policy. Raises :class:`Refused` when the job cannot
    run as configured. No store access: safe inside the claim's transaction."""
    rule = config.rule(job.rule)
    playbook = registry.get(job.playbook)
    if rule is None or playbook is None:
        missing = "rule" if rule is None else "playbook"
        raise Refused(f"{missing} {job.rule!r} is no longer configured")
    shared = SessionAdapters(adapters)
    ctx = PlaybookContext(targets=config.targets, clock=clock, log=log.bind(job_id=job.id),
                          adapters=shared, from_alert=params_from_alert(rule.params, job.params))
    try:
        try:
            params = playbook.parse_params(job.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            raise Refused(f"invalid params: {problems}") from exc
        try:
            ctx.ensure_allowed(playbook, params)
        except TargetNotAllowed as exc:
            raise Refused(f"target not allowed: {exc}") from exc
        return JobSession(job=job, rule=rule, playbook=playbook, params=params, ctx=ctx,
                          targets=playbook.targets(params), risk=playbook.risk_for(params, ctx),
                          always_approve=playbook.approval_required(params, ctx), store=store,
                          adapters=shared)
    except BaseException:
        shared.close()  # an allowlist check may have looked a target up
        raise
