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
A silence that could not be expired ends by itself at its ``endsAt``. A dry-run or parked
job never starts, so it never silences anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from receiver.config import Config
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation.rules import SilenceSpec
from receiver.remediation.session import JobSession, event, short

log = structlog.get_logger(__name__)

CREATED_BY = "remediator"
TIMEOUT_S = 5.0
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
    failed: list[tuple[str, str, str]] = []
    for silence in held:
        try:
            am = s.adapters.alertmanager_silences(silence.alertmanager, timeout_s=TIMEOUT_S,
                                                  hosts=config.targets.http)
            done.append((silence.id, am.expire_silence(silence.silence_id)))
        except _FAILURES as exc:
            failed.append((silence.alertmanager, silence.silence_id, short(exc)))
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
        for url, silence_id, error in failed:
            event(uow, job, "silence_failed",
                  f"job #{job.id} could not expire silence {silence_id} in {url}: {error}; "
                  "it ends by itself at its end time",
                  {"alertmanager": url, "silence_id": silence_id, "action": "expire",
                   "error": error}, at=now)
