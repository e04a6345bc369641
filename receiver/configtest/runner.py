"""Run the cases of a ``remediator test`` file through the receiver's own code.

Each case is evaluated on a throwaway SQLite store in a temporary directory, so nothing
the config points at is touched: the notification goes through the webhook's parsing
(:class:`~receiver.intake.alertmanager.Notification`) and the intake
(:class:`~receiver.intake.engine.Intake`, at the file's ``now``) into that store; the jobs
it enqueued are read back; each is assessed by the worker's read-only checks, with no
adapter (:class:`~receiver.configtest.offline.OfflineAdapters`: an allowlist check that
needs the live system says so instead of connecting)
(:func:`receiver.remediation.preview.assess_call`,
:func:`~receiver.people.approvals.required_approvers`) and its guards are evaluated
against the case's ``state`` (pauses and past runs written to the throwaway store first)
by :func:`receiver.remediation.preview.guard_verdict`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from receiver.config import Config
from receiver.configtest.cases import Case, ExpectedJob, InputAlert
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake


@dataclass
class Outcome:
    """What the receiver and the worker would do with one case's input."""

    severity: str
    incident_key: str
    ack_due: datetime
    jobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CaseResult:
    name: str
    problems: list[str]
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _fingerprint(labels: dict[str, str]) -> str:
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alert_body(a: InputAlert, now: datetime) -> dict[str, Any]:
    starts = a.starts_at if isinstance(a.starts_at, datetime) else now - a.starts_at
    ends = a.ends_at or (now if a.status == "resolved" else None)
    return {"status": a.status, "labels": a.labels, "annotations": a.annotations,
            "startsAt": _rfc3339(starts),
            "endsAt": _rfc3339(ends) if ends else "0001-01-01T00:00:00Z",
            "generatorURL": a.generator_url, "fingerprint": _fingerprint(a.labels)}


def notification_body(case: Case, now: datetime) -> dict[str, Any]:
    """The webhook body of a case: its ``notification`` as given, or one Alertmanager
    would send for its ``alerts`` (grouped by alertname)."""
    if case.notification is not None:
        return case.notification
    alerts = [_alert_body(a, now) for a in case.alerts or []]
    label_sets = [a.labels for a in case.alerts or []]
    common = {k: v for k, v in label_sets[0].items()
              if all(s.get(k) == v for s in label_sets)} if label_sets else {}
    name = common.get("alertname", "")
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": case.receiver, "groupLabels": {"alertname": name} if name else {},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "",
        "alerts": alerts,
    }


def evaluate(config: Config, case: Case, now: datetime) -> Outcome:
    """The outcome of one case (raises ValidationError for a body Alertmanager would not
    send)."""
    from receiver.configtest.offline import OfflineAdapters
    from receiver.people.approvals import required_approvers
    from receiver.remediation.preview import assess_call, guard_verdict, seed_state
    from receiver.store import open_store

    body = json.dumps(notification_body(case, now))
    n = Notification.model_validate_json(body)
    with tempfile.TemporaryDirectory(prefix="remediator-test-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'test.db'}", pool_min=0, pool_max=1)
        try:
            store.migrate()
            seed_state(store, config, case.state, now)
            intake = Intake(config, store, clock=lambda: now)
            result = intake.accept(n, body)
            _, severity, _ = intake.classify(n)
            jobs = []
            with store.unit(write=False) as uow:
                made = (uow.jobs.for_incident(result.incident_id)
                        if result.incident_id is not None else [])
            for job in made:
                rule = config.rule(job.rule)
                verdict = assess_call(config, job.playbook, dict(job.params),
                                      dict(rule.params) if rule else {},
                                      approval=rule.approval.mode_for(severity)
                                      if rule else "risk", adapters=OfflineAdapters())
                approvers, groups = required_approvers(config, job.rule, job.playbook)
                guard = guard_verdict(store, config, job, verdict, now)
                stops = guard is not None and guard.outcome in ("block", "dry_run")
                diverts = guard is not None and guard.outcome == "approval"
                needed = verdict.approval_needed or diverts
                jobs.append({
                    "rule": job.rule, "playbook": job.playbook, "params": dict(job.params),
                    "allowed": verdict.allowed,
                    "refusal": verdict.refusal or verdict.live_check,
                    "approval": ({"needed": True, "groups": groups, "approvers": approvers,
                                  "reason": guard.reason if diverts and guard
                                  else verdict.approval_reason}
                                 if needed else {"needed": False}),
                    "blocked_by": guard.guard if stops and guard else "none",
                    "blocked_because": guard.reason if stops and guard else None,
                })
        finally:
            store.close()
    return Outcome(severity=severity.value, incident_key=intake.incident_key(n),
                   ack_due=intake.sla.ack_due(severity, now), jobs=jobs)


def _job_problems(i: int, want: ExpectedJob, got: dict[str, Any]) -> list[str]:
    out = []
    where = f"jobs[{i}] ({want.rule})"
    checks: list[tuple[str, Any, Any]] = [
        ("rule", want.rule, got["rule"]),
        ("playbook", want.playbook, got["playbook"]),
        ("params", want.params, got["params"]),
        ("allowed", want.allowed, got["allowed"]),
        ("blocked_by", want.blocked_by, got["blocked_by"]),
    ]
    if want.approval is not None:
        checks.append(("approval.needed", want.approval.needed, got["approval"]["needed"]))
        if want.approval.groups is not None:
            checks.append(("approval.groups", want.approval.groups,
                           got["approval"].get("groups")))
        if want.approval.approvers is not None:
            checks.append(("approval.approvers", want.approval.approvers,
                           got["approval"].get("approvers")))
    for name, expected, actual in checks:
        if expected is not None and expected != actual:
            out.append(f"{where}.{name}: expected {expected!r}, got {actual!r}")
    return out


def compare(case: Case, got: Outcome) -> list[str]:
    """Each difference between what the case expects and what happened, one per line."""
    want, problems = case.expect, []
    if want.severity is not None and want.severity.value != got.severity:
        problems.append(f"severity: expected {want.severity.value}, got {got.severity}")
    if want.incident_key is not None and want.incident_key != got.incident_key:
        problems.append(f"incident_key: expected {want.incident_key!r}, "
                        f"got {got.incident_key!r}")
    if want.ack_due is not None and want.ack_due != got.ack_due:
        problems.append(f"ack_due: expected {_rfc3339(want.ack_due)}, "
                        f"got {_rfc3339(got.ack_due)}")
    if want.jobs is not None:
        rules_want = [j.rule for j in want.jobs]
        rules_got = [j["rule"] for j in got.jobs]
        if rules_want != rules_got:
            problems.append(f"jobs: expected rules {rules_want}, got {rules_got}")
        else:
            for i, (w, g) in enumerate(zip(want.jobs, got.jobs, strict=True)):
                problems += _job_problems(i, w, g)
    return problems


def run_case(config: Config, case: Case, now: datetime) -> CaseResult:
    try:
        got = evaluate(config, case, now)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        return CaseResult(case.name, [f"the notification is not one Alertmanager sends: "
                                      f"{where}: {first['msg']}"])
    return CaseResult(case.name, compare(case, got), got)

