"""Pydantic models of the Alertmanager webhook payload (version 4, Alertmanager 0.25-0.34).

The webhook body is parsed once, here, at the edge. Unknown extra fields are accepted and
ignored so that a newer Alertmanager does not break intake. Everything Alertmanager may
send is accepted: label names are any non-empty string (UTF-8 names since Alertmanager
0.27 / Prometheus 3), and neither the number of labels nor the length of a name or value is
bounded here, as Prometheus bounds neither by default (``label_limit`` and
``label_value_length_limit`` are 0). The webhook's body cap is the only size limit; what
is too long to keep whole is cut when stored (``receiver.store.ingest``), after the
fingerprint has been computed from the full values. NUL, which PostgreSQL text cannot
hold, becomes U+FFFD, also after the fingerprint. Every timestamp must carry a zone.
Alertmanager's zero time (``0001-01-01T00:00:00Z``), the ``endsAt`` of a firing alert,
becomes ``None``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

NUL_REPLACEMENT = "\ufffd"


def _no_nul(value: str) -> str:
    return value.replace("\x00", NUL_REPLACEMENT) if "\x00" in value else value


def _clean_set(labels: dict[str, str]) -> dict[str, str]:
    if not any("\x00" in k or "\x00" in v for k, v in labels.items()):
        return labels
    return {_no_nul(k): _no_nul(v) for k, v in labels.items()}


Text = Annotated[str, AfterValidator(_no_nul)]
LabelName = Annotated[str, Field(min_length=1)]
LabelSet = dict[LabelName, str]
"""Labels or annotations as Alertmanager sends them (NUL kept until the fingerprint)."""
CleanLabelSet = Annotated[dict[LabelName, str], AfterValidator(_clean_set)]


def _zero_time_is_none(value: datetime | None) -> datetime | None:
    if value is not None and value.year <= 1:
        return None
    return value


def _utc(value: datetime) -> datetime:
    # PostgreSQL takes zone offsets up to 15:59 only, and SQLite compares times as text.
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
OptionalTime = Annotated[UtcTime | None, AfterValidator(_zero_time_is_none)]

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_SEPARATOR = b"\xff"


def label_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted name/value pairs."""
    h = _FNV64_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR):
            for byte in chunk:
                h ^= byte
                h = (h * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: LabelSet
    annotations: CleanLabelSet = Field(default_factory=dict)
    starts_at: UtcTime = Field(alias="startsAt")
    ends_at: OptionalTime = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> Alert:
        # Alertmanager's own fingerprint when it sent one, else the same FNV-1a over the
        # full label values; only then is NUL replaced.
        if not _FINGERPRINT.match(self.fingerprint):
            object.__setattr__(self, "fingerprint", label_fingerprint(self.labels))
        object.__setattr__(self, "labels", _clean_set(self.labels))
        return self

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class Notification(_Model):
    version: Literal["4"]
    group_key: Text = Field(alias="groupKey", min_length=1)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: Text
    group_labels: CleanLabelSet = Field(default_factory=dict, alias="groupLabels")
    common_labels: CleanLabelSet = Field(default_factory=dict, alias="commonLabels")
    common_annotations: CleanLabelSet = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    notification_reason: Text | None = None
    route_labels: CleanLabelSet | None = Field(default=None, alias="routeLabels")
    alerts: list[Alert] = Field(min_length=1)

    @field_validator("alerts")
    @classmethod
    def _sorted(cls, alerts: list[Alert]) -> list[Alert]:
        # A stable order keeps the row locks taken by concurrent writers in one order.
        return sorted(alerts, key=lambda a: (a.fingerprint, a.starts_at))


def content_digest(notification: Notification) -> str:
    """Identity of a delivery's content, equal for the same group sent by any HA peer.

    Peers differ only in ``externalURL``, so it is left out.
    """
    parts = [
        notification.receiver,
        notification.group_key,
        notification.status,
        str(notification.truncated_alerts),
    ]
    for a in notification.alerts:
        parts.append(
            f"{a.fingerprint}|{a.status}|{a.starts_at.isoformat()}|"
            f"{a.ends_at.isoformat() if a.ends_at else ''}"
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
