"""Post-incident metrics (the checklist's "Post-Incident Metrics"), computed from the store.

Per incident: time to detect (first alert ``startsAt`` -> received), to acknowledge, to
mitigate, to resolve (each from when remediator received it). Per severity over a window:
MTTA, MTTM, MTTR (means over incidents that reached the milestone), SLA breaches (the
acknowledge-by deadline passed before the first human response: ack, resolution, close or
false-alarm marking), the false-alarm rate (marked by a person) and, separately, noise:
incidents that resolved within ``sla.noise_window`` with no human and no remediation action.
Remediation success rate per playbook: succeeded / (succeeded + failed + escalated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

from receiver.intake.severity import Severity
from receiver.store.reports import IncidentFacts, JobFacts

SEVERITIES = [s.value for s in Severity]


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def durations(r: IncidentFacts) -> dict[str, float | None]:
    return {
        "detect": seconds(r.first_alert_at, r.opened_at),
        "acknowledge": seconds(r.opened_at, r.acknowledged_at),
        "mitigate": seconds(r.opened_at, r.mitigated_at),
        "resolve": seconds(r.opened_at, r.resolved_at),
    }


def breached(r: IncidentFacts, now: datetime) -> bool:
    responses = [t for t in (r.acknowledged_at, r.resolved_at, r.closed_at,
                             r.false_alarm_at) if t is not None]
    first = min(responses) if responses else None
    return (first or now) > r.ack_due_at


def is_noise(r: IncidentFacts, window: timedelta) -> bool:
    return (r.resolved_at is not None and r.human_events == 0 and r.jobs_started == 0
            and r.resolved_at - r.opened_at <= window)


@dataclass
class SeverityStats:
    incidents: int = 0
    mtta: float | None = None
    mttm: float | None = None
    mttr: float | None = None
    mttd: float | None = None
    sla_breaches: int = 0
    false_alarms: int = 0
    noise: int = 0

    @property
    def false_alarm_rate(self) -> float | None:
        return self.false_alarms / self.incidents if self.incidents else None

    @property
    def noise_rate(self) -> float | None:
        return self.noise / self.incidents if self.incidents else None

    def as_dict(self) -> dict[str, Any]:
        return {"incidents": self.incidents, "mttd_s": self.mttd, "mtta_s": self.mtta,
                "mttm_s": self.mttm, "mttr_s": self.mttr, "sla_breaches": self.sla_breaches,
                "false_alarms": self.false_alarms, "false_alarm_rate": self.false_alarm_rate,
                "noise": self.noise, "noise_rate": self.noise_rate}


@dataclass
class Report:
    since: datetime | None
    now: datetime
    by_severity: dict[str, SeverityStats] = field(default_factory=dict)
    playbooks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None,
                "now": self.now.isoformat(),
                "by_severity": {k: v.as_dict() for k, v in self.by_severity.items()},
                "playbooks": self.playbooks}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def build(incidents: list[IncidentFacts], jobs: list[JobFacts], *, since: datetime | None,
          now: datetime, noise_window: timedelta) -> Report:
    report = Report(since, now)
    for sev in SEVERITIES:
        rows = [r for r in incidents if r.severity == sev]
        d = [durations(r) for r in rows]
        report.by_severity[sev] = SeverityStats(
            incidents=len(rows),
            mttd=_mean([x["detect"] for x in d]),
            mtta=_mean([x["acknowledge"] for x in d]),
            mttm=_mean([x["mitigate"] for x in d]),
            mttr=_mean([x["resolve"] for x in d]),
            sla_breaches=sum(1 for r in rows if breached(r, now)),
            false_alarms=sum(1 for r in rows if r.false_alarm_at is not None),
            noise=sum(1 for r in rows if is_noise(r, noise_window)),
        )
    for j in jobs:
        p = report.playbooks.setdefault(j.playbook, {"succeeded": 0, "failed": 0,
                                                      "escalated": 0, "other": 0})
        key = j.state if j.state in ("succeeded", "failed", "escalated") else "other"
        p[key] += 1
    for p in report.playbooks.values():
        concluded = p["succeeded"] + p["failed"] + p["escalated"]
        p["success_rate"] = p["succeeded"] / concluded if concluded else None
    return report


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def as_table(report: Report) -> str:
    lines = [
        f"incidents since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else "all incidents",
        "",
        f"{'sev':<4} {'count':>5} {'MTTD':>7} {'MTTA':>7} {'MTTM':>7} {'MTTR':>7} "
        f"{'SLA miss':>8} {'false':>6} {'noise':>6}",
    ]
    for sev, s in report.by_severity.items():
        lines.append(f"{sev:<4} {s.incidents:>5} {_fmt(s.mttd):>7} {_fmt(s.mtta):>7} "
                     f"{_fmt(s.mttm):>7} {_fmt(s.mttr):>7} {s.sla_breaches:>8} "
                     f"{_pct(s.false_alarm_rate):>6} {_pct(s.noise_rate):>6}")
    lines += ["", f"{'playbook':<20} {'ok':>4} {'failed':>6} {'escal.':>6} {'success':>8}"]
    for name, p in sorted(report.playbooks.items()):
        lines.append(f"{name:<20} {p['succeeded']:>4} {p['failed']:>6} {p['escalated']:>6} "
                     f"{_pct(p['success_rate']):>8}")
    return "\n".join(lines)
