"""``remediator replay``: the stored notifications judged by two configs, and what differs.

Each notification of the inbox is parsed again and judged by the intake's own code
(:meth:`~receiver.intake.engine.Intake.classify`, ``incident_key``, ``match_rules``) and the
worker's read-only checks (:func:`receiver.remediation.preview.assess_call`, with no
adapter: nothing live is connected to) under the current config and under the new one.
Guards that depend on history (cooldown, rate budgets, breakers) are not replayed: they
depend on what the new config would itself have done before, which replaying one
notification at a time cannot know.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from receiver.config import Config
from receiver.configtest.offline import OfflineAdapters
from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.remediation.preview import assess_call
from receiver.store.inbox import StoredNotification


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    playbook: str
    params: str
    allowed: bool
    approval: bool

    def label(self) -> str:
        gate = "needs approval" if self.approval else "automatic"
        verdict = gate if self.allowed else "refused"
        return f"{self.rule} -> {self.playbook} {self.params} ({verdict})"


@dataclass(frozen=True)
class Judgement:
    severity: str
    incident_key: str
    jobs: tuple[PlannedJob, ...]


def judge(config: Config, n: Notification) -> Judgement:
    intake = Intake(config, None)
    _, severity, _ = intake.classify(n)
    jobs = []
    for m in intake.match_rules(n, severity):
        rule = config.rule(m.rule)
        if m.params is None:
            jobs.append(PlannedJob(m.rule, m.playbook, f"error: {m.error}", False, False))
            continue
        verdict = assess_call(config, m.playbook, m.params,
                              dict(rule.params) if rule else {}, approval=m.approval,
                              adapters=OfflineAdapters())
        jobs.append(PlannedJob(m.rule, m.playbook, json.dumps(m.params, sort_keys=True),
                               verdict.allowed, verdict.approval_needed))
    return Judgement(severity.value, intake.incident_key(n), tuple(jobs))


@dataclass
class Change:
    notification_id: int
    received_at: str
    lines: list[str]


@dataclass
class ReplayReport:
    notifications: int = 0
    unreadable: int = 0
    changes: list[Change] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    incidents_before: set[str] = field(default_factory=set)
    incidents_after: set[str] = field(default_factory=set)


def _differences(old: Judgement, new: Judgement, counts: Counter[str]) -> list[str]:
    lines = []
    if old.severity != new.severity:
        counts["severity"] += 1
        lines.append(f"severity {old.severity} -> {new.severity}")
    if old.incident_key != new.incident_key:
        counts["incident"] += 1
        lines.append(f"incident {old.incident_key} -> {new.incident_key}")
    before = {(j.rule, j.params): j for j in old.jobs}
    after = {(j.rule, j.params): j for j in new.jobs}
    for key in sorted(after.keys() - before.keys()):
        counts["job_added"] += 1
        lines.append(f"+ job {after[key].label()}")
    for key in sorted(before.keys() - after.keys()):
        counts["job_removed"] += 1
        lines.append(f"- job {before[key].label()}")
    for key in sorted(before.keys() & after.keys()):
        b, a = before[key], after[key]
        if b.approval != a.approval or b.allowed != a.allowed:
            counts["approval"] += 1
            lines.append(f"~ job {b.label()} -> {a.label()}")
    return lines


def replay(stored: Iterable[StoredNotification], current: Config, new: Config,
           step: Callable[[], None] = lambda: None) -> ReplayReport:
    report = ReplayReport()
    for s in stored:
        report.notifications += 1
        step()
        try:
            n = Notification.model_validate_json(s.body)
        except ValidationError:
            report.unreadable += 1  # a body stored cut (over the stored-value limit)
            continue
        old, fresh = judge(current, n), judge(new, n)
        report.incidents_before.add(old.incident_key)
        report.incidents_after.add(fresh.incident_key)
        lines = _differences(old, fresh, report.counts)
        if lines:
            report.changes.append(Change(s.id, s.first_received_at.isoformat(), lines))
    return report
