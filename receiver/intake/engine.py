"""Intake: turn a validated Alertmanager notification into one store transaction.

Everything here up to :meth:`Intake.prepare` is pure (severity, incident key, deadlines,
which rules select jobs); :meth:`Intake.accept` commits it in one transaction. No playbook
ever runs here: jobs are only enqueued, and the worker runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.config import Config
from receiver.intake.alertmanager import Alert, Notification, content_digest
from receiver.intake.severity import Severity, SeverityMapper, most_severe
from receiver.intake.sla import add_business_time, business_day_length
from receiver.remediation.rules import RuleSet, TemplateError, render_rule_params
from receiver.store import IngestBatch, IngestResult, Store
from receiver.store.records import AlertRecord, IncidentDraft, JobDraft


def utcnow() -> datetime:
    return datetime.now(UTC)


class SlaClock:
    """Acknowledge-by deadlines per severity, including 'one business day'."""

    def __init__(self, config: Config) -> None:
        self.sla = config.sla

    def ack_due(self, severity: Severity, opened_at: datetime) -> datetime:
        value = self.sla.for_severity(severity)
        if isinstance(value, timedelta):
            return opened_at + value
        hours = self.sla.business_hours
        return add_business_time(
            opened_at,
            business_day_length(hours.opens, hours.closes),
            tz=hours.tz,
            days=hours.weekdays,
            opens=hours.opens,
            closes=hours.closes,
        )


@dataclass(frozen=True)
class RuleMatch:
    rule: str
    playbook: str
    alert_fingerprint: str
    params: dict[str, Any] | None
    error: str | None
    approval: str


class Intake:
    def __init__(
        self, config: Config, store: Store | None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.severity = SeverityMapper(config.severity)
        self.rules = RuleSet(config.rules)
        self.sla = SlaClock(config)

    def incident_key(self, n: Notification) -> str:
        key = self.config.incidents.key
        if key.by == "group_key":
            return f"{n.receiver}|{n.group_key}"
        parts = [f"{name}={n.common_labels.get(name, '')}" for name in key.labels]
        return f"{n.receiver}|" + ",".join(parts)

    def classify(self, n: Notification) -> tuple[list[AlertRecord], Severity, str]:
        records = []
        for a in _distinct(n.alerts):
            c = self.severity.classify(a.labels)
            records.append(_record(a, c.severity, c.reason))
        firing = [r for r in records if r.status == "firing"] or records
        top = most_severe(r.severity for r in firing)
        reason = next(r.severity_reason for r in firing if r.severity is top)
        if self.severity.breadth_bump(top, (r.labels for r in firing if r.status == "firing")):
            bumped = top.raised()
            breadth = self.config.severity.breadth
            reason = f"{reason}; raised {top.value}->{bumped.value}: >= " + (
                f"{breadth.min_instances} distinct {breadth.label} firing" if breadth else ""
            )
            top = bumped
        return records, top, reason

    def match_rules(self, n: Notification, severity: Severity) -> list[RuleMatch]:
        out = []
        seen_incident_rules: set[str] = set()
        for a in n.alerts:
            if a.status != "firing":
                continue
            for hit in self.rules.matching(a.labels):
                rule = hit.rule
                if rule.scope == "incident":
                    if rule.name in seen_incident_rules:
                        continue
                    seen_incident_rules.add(rule.name)
                try:
                    params = render_rule_params(rule, a.labels, a.annotations)
                    error = None
                except TemplateError as exc:
                    params, error = None, str(exc)
                out.append(
                    RuleMatch(
                        rule.name,
                        rule.playbook,
                        a.fingerprint,
                        params,
                        error,
                        rule.approval.mode_for(severity),
                    )
                )
        return out

    def prepare(self, n: Notification, body: str) -> IngestBatch:
        records, severity, reason = self.classify(n)
        now = self.clock()
        jobs = []
        by_fp = {a.fingerprint: a for a in n.alerts}
        for m in self.match_rules(n, severity):
            if m.params is None:
                continue  # the worker's refusal path records template errors (see simulate)
            alert = by_fp[m.alert_fingerprint]
            scoped = next(r for r in self.config.rules if r.name == m.rule).scope == "alert"
            jobs.append(
                JobDraft(
                    rule=m.rule,
                    playbook=m.playbook,
                    params=m.params,
                    fingerprint=alert.fingerprint if scoped else None,
                    starts_at=alert.starts_at if scoped else None,
                )
            )
        return IngestBatch(
            digest=content_digest(n),
            receiver=n.receiver,
            group_key=n.group_key,
            status=n.status,
            external_url=n.external_url,
            body=body,
            alerts=records,
            incident=IncidentDraft(
                key=self.incident_key(n),
                title=_title(n),
                receiver=n.receiver,
                group_key=n.group_key,
                group_labels=dict(n.group_labels),
                severity=severity,
                severity_reason=reason,
            ),
            received_at=now,
            flap_window=self.config.incidents.flap_window,
            ack_due=self.sla.ack_due,
            jobs=jobs,
        )

    def accept(self, n: Notification, body: str) -> IngestResult:
        if self.store is None:
            raise RuntimeError("Intake.accept needs a store")
        return self.store.ingest(self.prepare(n, body))


def _distinct(alerts: list[Alert]) -> list[Alert]:
    """One alert per episode: a payload listing the same (fingerprint, startsAt) twice keeps
    the last copy (one upsert may not touch a row twice)."""
    by_identity = {(a.fingerprint, a.starts_at): a for a in alerts}
    return list(by_identity.values())


def _record(a: Alert, severity: Severity, reason: str) -> AlertRecord:
    return AlertRecord(
        fingerprint=a.fingerprint,
        starts_at=a.starts_at,
        ends_at=a.ends_at,
        status=a.status,
        alertname=a.alertname,
        labels=dict(a.labels),
        annotations=dict(a.annotations),
        generator_url=a.generator_url,
        severity=severity,
        severity_reason=reason,
    )


def _title(n: Notification) -> str:
    name = n.common_labels.get("alertname") or n.group_labels.get("alertname")
    if not name:
        names = sorted({a.alertname for a in n.alerts if a.alertname})
        name = ", ".join(names[:3]) or "alert group"
    summary = n.common_annotations.get("summary", "")
    title = f"{name}: {summary}" if summary else name
    return title[:300]
