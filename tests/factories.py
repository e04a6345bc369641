"""Small builders for webhook payloads: ``make_alert(**over)``, ``make_notification(...)``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"
_seq = itertools.count(1)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def make_alert(
    *,
    alertname: str = "AppDown",
    status: str = "firing",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: datetime | str | None = None,
    ends_at: datetime | str | None = None,
    fingerprint: str = "",
    **extra: Any,
) -> dict[str, Any]:
    lbl = {"alertname": alertname, "severity": "critical", "instance": "web1:9100"}
    lbl.update(labels or {})
    start = starts_at or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    if isinstance(start, datetime):
        start = rfc3339(start)
    if ends_at is None:
        end: str = ZERO_TIME if status == "firing" else rfc3339(datetime.now(UTC))
    else:
        end = rfc3339(ends_at) if isinstance(ends_at, datetime) else ends_at
    alert = {
        "status": status,
        "labels": lbl,
        "annotations": {"summary": f"{alertname} on {lbl.get('instance', '?')}"}
        | (annotations or {}),
        "startsAt": start,
        "endsAt": end,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }
    alert.update(extra)
    return alert


def make_notification(
    alerts: list[dict[str, Any]] | None = None,
    *,
    group_key: str | None = None,
    receiver: str = "remediator",
    external_url: str = "http://alertmanager-0:9093",
    status: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    alerts = alerts if alerts is not None else [make_alert()]
    firing = any(a["status"] == "firing" for a in alerts)
    names = {a["labels"].get("alertname") for a in alerts}
    common = {}
    if alerts:
        common = {
            k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)
        }
    body = {
        "version": "4",
        "groupKey": group_key or f'{{}}:{{alertname="{sorted(n or "" for n in names)[0] if names else ""}"}}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": receiver,
        "groupLabels": {"alertname": common.get("alertname", "")} if "alertname" in common else {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": alerts,
    }
    body.update(extra)
    return body


def unique_group() -> str:
    return f'{{}}:{{alertname="Test{next(_seq)}"}}'


def later(minutes: int) -> datetime:
    return datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes)
