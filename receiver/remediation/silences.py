"""Alertmanager silences while a job acts (a rule's ``silence``).

When a job of a rule with ``silence`` starts (its guards passed, its targets locked, before
the playbook acts), :func:`begin` creates a silence of the job's alert in each configured
Alertmanager: one literal equality matcher per label of the alert (never a regex: label
values are attacker input), ``createdBy: remediator``, ending ``for`` later, with a comment
linking the incident. Each silence is recorded (``job_silences``) with a ``silence_created``
event. :func:`end` expires them (``silence_expired``) when verification finishes, passed or
failed, and when the job fails, so that nobody is paged for what is being fixed and
everybody is paged if it did not work.

Neither ever blocks the job or raises to the worker: an Alertmanager that is down, refuses,
or is outside ``targets.http.hosts`` gives a ``silence_failed`` event and the job goes on.
A silence that could not be expired is tried again by the workers' chores
(:func:`expire_orphans`, every :data:`RETRY`, as is one left by a worker that died) and ends
by itself at its ``endsAt`` at the latest. A dry-run or parked job never starts, so it never
silences anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from receiver.adapters import AdapterFactory
from receiver.config import Config
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation.rules import SilenceSpec
from receiver.remediation.session import JobSession, event, short
from receiver.store import Store
from receiver.store.silences import OrphanSilence

log = structlog.get_logger(__name__)

CREATED_BY = "remediator"
TIMEOUT_S = 5.0
RETRY = timedelta(minutes=1)
"""How long before the workers' chores try again to expire a silence whose expiry failed."""
_FAILURES = (PlaybookError, TargetNotAllowed, OSError, ValueError)


def _comment(s: JobSession, config: Config) -> str:
    job, spec = s.job, s.rule.silence
    link = f"{config.server.public_url.rstrip('/')}/incidents/{job.incident_id}"
    text = (f"remediator job #{job.id} (rule {s.rule.name}, {s.playbook.name}) is fixing "
            f"incident #{job.incident_id}: {link}")
    if spec is not None and spec.comment:
        text += f" - {spec.comment}"
    return text


def begin(s: JobSession, *, config: Config, clock: Callable[[], datetime]) -> None:
    """Silence the job's alert in every Alertmanager of the rule's ``silence`` (nothing
    when the rule has none). Never raises."""
    spec = s.rule.silence
    if spec is None:
        return
    try:
        _begin(s, spec, config, clock)
    except Exception:  # noqa: BLE001 - a silence never stops a remediation
        log.exception("silence_begin_failed", job_id=s.job.id)


def _begin(s: JobSession, spec: SilenceSpec, config: Config,
           clock: Callable[[], datetime]) -> None:
    job = s.job
    labels, _ = s.alert_text()
    now = clock()
    ends = now + spec.for_
    made: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    if not labels:
        failed = [(url, "the job's alert has no labels to match") for url in spec.alertmanager]
    else:
        comment = _comment(s, config)
        for url in spec.alertmanager:
            try:
                am = s.adapters.alertmanager_silences(url, timeout_s=TIMEOUT_S,
                                                      hosts=config.targets.http)
                made.append((url, am.create_silence(labels, starts_at=now, ends_at=ends,
                                                    created_by=CREATED_BY, comment=comment)))
            except _FAILURES as exc:
                failed.append((url, short(exc)))
    at = clock()
    with s.store.unit() as uow:
        for url, silence_id in made:
            uow.silences.add(job_id=job.id, alertmanager=url, silence_id=silence_id,
                             created_at=now, ends_at=ends)
            event(uow, job, "silence_created",
                  f"job #{job.id} silenced its alert in {url} until "
                  f"{ends.isoformat(timespec='seconds')} (silence {silence_id}, "
                  f"{len(labels)} matchers)",
                  {"alertmanager": url, "silence_id": silence_id, "ends_at": ends.isoformat(),
                   "matchers": len(labels)}, at=at)
        for url, why in failed:
            event(uow, job, "silence_failed",
                  f"job #{job.id} could not silence its alert in {url}: {why}; the job goes "
                  "on and the alert may page", {"alertmanager": url, "action": "create",
                                                 "error": why}, at=at)


def end(s: JobSession, *, why: str, config: Config, clock: Callable[[], datetime]) -> None:
    """Expire every silence the job made that is not expired yet (``why``: what ended
    it). Never raises."""
    if s.rule.silence is None:
        return
    try:
        _end(s, why, config, clock)
    except Exception:  # noqa: BLE001 - a silence never stops a remediation
        log.exception("silence_end_failed", job_id=s.job.id)


def _end(s: JobSession, why: str, config: Config, clock: Callable[[], datetime]) -> None:
    job = s.job
    with s.store.unit(write=False) as uow:
        held = uow.silences.of_job(job.id, open_only=True)
    if not held:
        return
    done: list[tuple[int, bool]] = []
    failed: list[tuple[int, str, str, str]] = []
    for silence in held:
        try:
            am = s.adapters.alertmanager_silences(silence.alertmanager, timeout_s=TIMEOUT_S,
                                                  hosts=config.targets.http)
            done.append((silence.id, am.expire_silence(silence.silence_id)))
        except _FAILURES as exc:
            failed.append((silence.id, silence.alertmanager, silence.silence_id, short(exc)))
    now = clock()
    with s.store.unit() as uow:
        for row, expired in done:
            gone = uow.silences.mark_expired(row, now=now)
            if gone is None:
                continue  # another worker said so
            how = "expired" if expired else "was already gone from"
            event(uow, job, "silence_expired",
                  f"job #{job.id}: silence {gone.silence_id} {how} {gone.alertmanager} "
                  f"({why})", {"alertmanager": gone.alertmanager,
                               "silence_id": gone.silence_id, "found": expired, "why": why},
                  at=now)
        for row, url, silence_id, error in failed:
            uow.silences.retry_later(row, at=now + RETRY)
            event(uow, job, "silence_failed",
                  f"job #{job.id} could not expire silence {silence_id} in {url}: {error}; "
                  "tried again later, it ends by itself at its end time at the latest",
                  {"alertmanager": url, "silence_id": silence_id, "action": "expire",
                   "error": error}, at=now)


def expire_orphans(store: Store, config: Config, *, adapters: AdapterFactory,
                   clock: Callable[[], datetime]) -> int:
    """A chore: expire the open silences of jobs that are no longer running (an expiry
    that failed, a worker that died mid-job). How many were concluded; never raises."""
    try:
        return _expire_orphans(store, config, adapters, clock)
    except Exception:  # noqa: BLE001 - a chore that fails is tried again at the next round
        log.exception("silence_orphans_failed")
        return 0


def _expire_orphans(store: Store, config: Config, adapters: AdapterFactory,
                    clock: Callable[[], datetime]) -> int:
    with store.unit(write=False) as uow:
        due = uow.silences.orphans(now=clock())
    outcome: list[tuple[OrphanSilence, str | None]] = []
    for orphan in due:
        if orphan.ends_at <= clock():
            outcome.append((orphan, "it reached its end time"))
            continue
        try:
            am = adapters.alertmanager_silences(orphan.alertmanager, timeout_s=TIMEOUT_S,
                                                hosts=config.targets.http)
            found = am.expire_silence(orphan.silence_id)
            outcome.append((orphan, None if found else "already gone"))
        except _FAILURES as exc:
            log.warning("silence_expiry_failed", job_id=orphan.job_id,
                        alertmanager=orphan.alertmanager, error=short(exc))
            outcome.append((orphan, ""))
    done = 0
    now = clock()
    with store.unit() as uow:
        for orphan, note in outcome:
            if note == "":
                uow.silences.retry_later(orphan.id, at=now + RETRY)
                continue
            if uow.silences.mark_expired(orphan.id, now=now) is None:
                continue
            done += 1
            how = "expired in" if note is None else f"ended ({note}) in"
            uow.events.record(
                incident_id=orphan.incident_id, at=now, kind="silence_expired", actor="system",
                message=f"job #{orphan.job_id}: silence {orphan.silence_id} {how} "
                        f"{orphan.alertmanager} (the job had ended)",
                detail={"alertmanager": orphan.alertmanager, "silence_id": orphan.silence_id,
                        "found": note is None, "why": "the job had ended"},
                job_id=orphan.job_id)
    return done
