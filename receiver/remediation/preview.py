"""What one playbook call would be allowed to do, without doing anything.

The worker's own checks, run read-only: the playbook's params model, its allowlist check
(``check_allowed`` against ``targets``, knowing which params alert data filled), its risk,
and whether it needs approval (the playbook's own policy first, then the rule's mode).
``remediator simulate``, ``check-config`` and ``remediator test`` all answer from here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from receiver.config import Config
from receiver.errors import StoreError

if TYPE_CHECKING:
    from receiver.adapters import AdapterFactory
    from receiver.configtest.cases import State
    from receiver.remediation.guards import Decision
    from receiver.store import Store
    from receiver.store.jobs import Job


@dataclass(frozen=True)
class CallVerdict:
    allowed: bool
    refusal: str | None = None
    """Why the call is refused (params, allowlist), or None."""
    live_check: str | None = None
    """The allowlist check needs the live system (an adapter error): not decided here."""
    targets: tuple[str, ...] = ()
    risk: str | None = None
    risk_note: str | None = None
    approval_needed: bool = False
    approval_reason: str | None = None
    high_risk_unattended: bool = False

    def text(self) -> str:
        """One line, as ``simulate`` and ``check-config`` print it."""
        if self.refusal is not None:
            return f"refused: {self.refusal}"
        if self.live_check is not None:
            return self.live_check
        text = f"allowed; targets {', '.join(self.targets)}; risk {self.risk}"
        if self.approval_needed:
            text += f"; needs approval ({self.approval_reason})"
        elif self.high_risk_unattended:
            text += ("; high risk" + (f" ({self.risk_note})" if self.risk_note else "")
                     + ", runs without approval (approval: auto)")
        return text


def assess_call(config: Config, playbook_name: str, params_raw: dict[str, Any],
                rule_params: dict[str, Any], *, approval: str = "risk",
                adapters: AdapterFactory | None = None) -> CallVerdict:
    """The verdict on one call of ``playbook_name`` with rendered ``params_raw``; the rule's
    literal ``rule_params`` tell which params alert data filled. No side effects; the
    allowlist check may read the live system through ``adapters`` (default: the real ones)."""
    from playbooks import load_registry
    from playbooks.base import PlaybookContext, Risk
    from receiver.errors import AdapterError, PlaybookError, TargetNotAllowed
    from receiver.remediation.rules import params_from_alert

    playbook = load_registry().get(playbook_name)
    if playbook is None:
        return CallVerdict(False, refusal=f"unknown playbook {playbook_name}")
    try:
        params = playbook.parse_params(params_raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return CallVerdict(False, refusal=f"invalid params: {where}: {first['msg']}")
    ctx = PlaybookContext(targets=config.targets,
                          from_alert=params_from_alert(rule_params, params_raw))
    if adapters is not None:
        ctx = dataclasses.replace(ctx, adapters=adapters)
    try:
        playbook.check_allowed(params, ctx)
    except TargetNotAllowed as exc:
        return CallVerdict(False, refusal=f"target not allowed: {exc}")
    except AdapterError as exc:
        return CallVerdict(True, live_check=f"allowlist check needs the live system: {exc}")
    except PlaybookError as exc:
        return CallVerdict(True, live_check=f"allowlist check failed on the live system: {exc}")
    risk = playbook.risk_for(params, ctx)
    note = playbook.risk_note(params, ctx)
    forced = playbook.approval_required(params, ctx)
    reason: str | None = None
    if forced:
        reason = forced
    elif approval == "required":
        reason = "the rule requires it"
    elif risk is Risk.HIGH and approval == "risk":
        reason = note or "high risk"
    return CallVerdict(
        True, targets=tuple(playbook.targets(params)), risk=risk.value, risk_note=note,
        approval_needed=reason is not None, approval_reason=reason,
        high_risk_unattended=reason is None and risk is Risk.HIGH,
    )


HISTORY_WORKER = "remediator-test"


def seed_state(store: Store, config: Config, state: State, now: datetime) -> None:
    """Write a ``remediator test`` case's state into its throwaway store, through the same
    repositories the worker uses: pauses and open breakers as controls, past runs as jobs
    that were claimed, acted on their targets and ended, at their moment."""
    from receiver.remediation.guards import PAUSED, breaker, rule_paused

    with store.unit() as uow:
        names = ([PAUSED] if state.paused is True
                 else [rule_paused(r) for r in state.paused] if state.paused else [])
        for name in names:
            uow.controls.set(name, "true", reason="test state", actor=HISTORY_WORKER, now=now)
        for rule in state.breaker_open:
            uow.controls.set(breaker(rule), "open", reason="test state", actor=HISTORY_WORKER,
                             now=now)
    if not state.runs:
        return
    incident_id = _history_incident(store, config, now)
    for i, run in enumerate(sorted(state.runs, key=lambda r: -r.ago.total_seconds())):
        at = now - run.ago
        configured = config.rule(run.rule)
        with store.unit() as uow:
            job = uow.jobs.insert(incident_id=incident_id, alert_id=None, rule=run.rule,
                                  playbook=configured.playbook if configured else "unknown",
                                  dedupe_key=f"history-{i}", params={}, severity="P3", now=at)
            claimed = uow.jobs.claim(worker=HISTORY_WORKER, now=at,
                                     lease=timedelta(minutes=1))
            if job is None or claimed is None or claimed.id != job.id:
                raise StoreError("the test state's past run could not be written")
            uow.targets.record_acted(job.id, run.rule, list(run.targets), at)
            uow.jobs.move(job.id, run.outcome, now=at, owner=HISTORY_WORKER)


def _history_incident(store: Store, config: Config, now: datetime) -> int:
    """An incident for the past runs to belong to (its own key, no rules matched)."""
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake

    labels = {"alertname": "RemediatorTestHistory"}
    body = json.dumps({
        "version": "4", "groupKey": "remediator-test-history", "status": "firing",
        "receiver": "remediator-test-history", "groupLabels": {}, "commonLabels": labels,
        "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": labels, "annotations": {},
                    "startsAt": "2000-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "0000000000000000"}],
    })
    intake = Intake(config, store, clock=lambda: now)
    batch = dataclasses.replace(intake.prepare(Notification.model_validate_json(body), body),
                                jobs=[])
    with store.unit() as uow:
        incident_id = uow.notifications.ingest(batch).incident_id
    if incident_id is None:
        raise StoreError("the test state's incident could not be written")
    return incident_id


def guard_verdict(store: Store, config: Config, job: Job, verdict: CallVerdict,
                  now: datetime) -> Decision | None:
    """The worker's guards on ``job`` at ``now`` (read-only): the decision that stops,
    dry-runs or diverts it to approval, or None when every guard passes."""
    from receiver.remediation.guards import evaluate

    rule = config.rule(job.rule)
    if rule is None or not verdict.allowed:
        return None
    with store.unit(write=False) as uow:
        decision = evaluate(uow, job=job, rule=rule, config=config,
                            targets=list(verdict.targets), high_risk=verdict.risk == "high",
                            always_approve=None, now=now, record=False)
    return None if decision.outcome == "pass" else decision
