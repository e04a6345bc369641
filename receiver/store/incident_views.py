"""The incidents as people read them: the list, and one incident with everything attached.

:func:`detail` returns an :class:`IncidentDetail` record (the post-mortem draft is made from
it); :meth:`IncidentDetail.as_json` is the API's ``GET /api/v1/incidents/<id>`` body, whose
keys are the record's field names. :func:`list_incidents` is the read model of the list
(``GET /api/v1/incidents`` and the incidents page): rows of the incident columns with
``alerts_firing`` and ``alerts_total``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.records import IncidentFilter
from receiver.store.repository import record, records

INCIDENT_COLUMNS = (
    "id, key, state, severity, severity_reason, title, receiver, group_key, group_labels,"
    " opened_at, ack_due_at, acknowledged_at, mitigated_at, resolved_at, closed_at,"
    " last_seen_at, updated_at, reopened_count"
)


def list_incidents(tx: Tx, f: IncidentFilter) -> list[Row]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.state:
        marks = ", ".join(f":st{i}" for i in range(len(f.state)))
        where.append(f"state IN ({marks})")
        params.update({f"st{i}": s for i, s in enumerate(f.state)})
    if f.severity:
        marks = ", ".join(f":sv{i}" for i in range(len(f.severity)))
        where.append(f"severity IN ({marks})")
        params.update({f"sv{i}": s for i, s in enumerate(f.severity)})
    if f.since is not None:
        where.append("opened_at >= :since")
        params["since"] = f.since
    if f.before_id is not None:
        where.append("id < :before")
        params["before"] = f.before_id
    params["limit"] = f.limit
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {INCIDENT_COLUMNS} FROM incidents {clause} ORDER BY id DESC LIMIT :limit"  # noqa: S608 - fixed fragments and placeholders only
    rows = tx.fetchall(sql, params)
    counts = _alert_counts(tx, [r["id"] for r in rows])
    for r in rows:
        r["alerts_firing"], r["alerts_total"] = counts.get(r["id"], (0, 0))
    return rows


def _alert_counts(tx: Tx, ids: list[int]) -> dict[int, tuple[int, int]]:
    if not ids:
        return {}
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    firing = "SUM(CASE WHEN status = 'firing' THEN 1 ELSE 0 END) AS firing"
    sql = f"SELECT incident_id, {firing}, COUNT(*) AS total FROM alerts WHERE incident_id IN ({marks}) GROUP BY incident_id"  # noqa: S608, E501 - placeholders only
    rows = tx.fetchall(
        sql,
        {f"i{n}": v for n, v in enumerate(ids)},
    )
    return {r["incident_id"]: (int(r["firing"]), int(r["total"])) for r in rows}


@dataclass(frozen=True)
class IncidentColumns:
    """The incident's own columns that every read model of it starts with, in this order
    (the API's JSON keeps it)."""

    id: int
    key: str
    state: str
    severity: str
    severity_reason: str
    title: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    opened_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    last_seen_at: datetime
    updated_at: datetime
    reopened_count: int


@dataclass(frozen=True)
class IncidentSummary(IncidentColumns):
    """One incident of the list: its columns and how many of its alerts fire."""

    alerts_firing: int
    alerts_total: int


# -- one incident -------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertEntry:
    id: int
    fingerprint: str
    status: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    starts_at: datetime
    ends_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    deliveries: int


@dataclass(frozen=True)
class TimelineEntry:
    id: int
    at: datetime
    kind: str
    actor: str
    message: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class JobEntry:
    id: int
    rule: str
    playbook: str
    state: str
    params: dict[str, Any]
    plan: dict[str, Any] | None
    result: dict[str, Any] | None
    reason: str | None
    targets: list[str] | None
    risk: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    undoes_job_id: int | None = None
    """The job this one undoes (see :mod:`receiver.remediation.undo`)."""


@dataclass(frozen=True)
class VoteEntry:
    approver: str
    decision: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class ApprovalEntry:
    id: int
    job_id: int
    state: str
    required: int
    groups: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    votes: tuple[VoteEntry, ...]


@dataclass(frozen=True)
class EvidenceEntry:
    id: int
    check_name: str
    kind: str
    ok: bool
    summary: str
    detail: dict[str, Any]
    started_at: datetime
    duration_ms: int | None


@dataclass(frozen=True)
class IncidentDetail(IncidentColumns):
    alerts: tuple[AlertEntry, ...]
    timeline: tuple[TimelineEntry, ...]
    jobs: tuple[JobEntry, ...]
    approvals: tuple[ApprovalEntry, ...]
    evidence: tuple[EvidenceEntry, ...]
    assignee: str | None
    postmortem: str | None
    false_alarm_at: datetime | None
    sla_breached_at: datetime | None
    escalation_level: int
    resolved_by: str | None

    def as_json(self) -> dict[str, Any]:
        """The API's body: every field by name, the attached records as lists of objects."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "approvals":
                value = [{**{g.name: getattr(a, g.name) for g in fields(a) if g.name != "votes"},
                          "votes": [asdict(v) for v in a.votes]} for a in value]
            elif isinstance(value, tuple):
                value = [asdict(item) for item in value]
            out[f.name] = value
        return out


_EXTRA = "assignee, postmortem, false_alarm_at, sla_breached_at, escalation_level, resolved_by"


def detail(tx: Tx, incident_id: int) -> IncidentDetail | None:
    row = tx.fetchone(
        f"SELECT {INCIDENT_COLUMNS}, {_EXTRA} FROM incidents WHERE id = :id",  # noqa: S608 - constant columns
        {"id": incident_id},
    )
    if row is None:
        return None
    row["alerts"] = tuple(records(AlertEntry, tx.fetchall(
        "SELECT id, fingerprint, status, alertname, severity, labels, annotations,"
        " generator_url, starts_at, ends_at, first_seen_at, last_seen_at, resolved_at,"
        " deliveries FROM alerts WHERE incident_id = :id ORDER BY starts_at, id",
        {"id": incident_id},
    )))
    row["timeline"] = tuple(records(TimelineEntry, tx.fetchall(
        "SELECT id, at, kind, actor, message, detail FROM incident_events"
        " WHERE incident_id = :id ORDER BY at, id",
        {"id": incident_id},
    )))
    row["jobs"] = tuple(records(JobEntry, tx.fetchall(
        "SELECT id, rule, playbook, state, params, plan, result, reason, targets, risk,"
        " attempts, created_at, updated_at, started_at, finished_at, undoes_job_id FROM jobs"
        " WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )))
    approvals = tx.fetchall(
        "SELECT id, job_id, state, required, groups, created_at, expires_at, decided_at,"
        " decided_by FROM approvals WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )
    for a in approvals:
        a["votes"] = tuple(records(VoteEntry, tx.fetchall(
            "SELECT approver, decision, reason, at FROM approval_votes WHERE approval_id = :a"
            " ORDER BY at, approver",
            {"a": a["id"]},
        )))
    row["approvals"] = tuple(records(ApprovalEntry, approvals))
    row["evidence"] = tuple(records(EvidenceEntry, tx.fetchall(
        "SELECT id, check_name, kind, ok, summary, detail, started_at, duration_ms"
        " FROM evidence WHERE incident_id = :id ORDER BY id",
        {"id": incident_id},
    )))
    return record(IncidentDetail, row)


@dataclass(frozen=True)
class SentNotice:
    """A notification of the incident delivered to one channel."""

    kind: str
    message: str
    channel: str
    delivered_at: datetime


def sent_notices(tx: Tx, incident_id: int) -> list[SentNotice]:
    """The incident's notifications delivered, oldest delivery first."""
    return records(SentNotice, tx.fetchall(
        "SELECT o.kind, o.message, d.channel, d.delivered_at FROM outbox o"
        " JOIN outbox_deliveries d ON d.outbox_id = o.id"
        " WHERE o.incident_id = :id AND d.state = 'delivered' ORDER BY d.delivered_at",
        {"id": incident_id},
    ))


def get_incident(tx: Tx, incident_id: int) -> dict[str, Any] | None:
    """The API's JSON body of one incident (see :meth:`IncidentDetail.as_json`)."""
    found = detail(tx, incident_id)
    return None if found is None else found.as_json()
