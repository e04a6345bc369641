"""Pydantic models of the Alertmanager webhook payload (version 4, Alertmanager 0.25-0.34).

The webhook body is parsed once, here, at the edge. Unknown extra fields are accepted and
ignored so that a newer Alertmanager does not break intake. Strings may not contain NUL
(PostgreSQL text cannot hold it, and no real label does), label sets are bounded, and
every timestamp must carry a zone. Alertmanager's zero time (``0001-01-01T00:00:00Z``),
the ``endsAt`` of a firing alert, becomes ``None``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_LABELS = 256
"""Labels (and annotations) per set. Real alerts carry tens; 20,000 is an attack."""

MAX_NAME_LEN = 1024
MAX_VALUE_LEN = 65536


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
LabelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN), AfterValidator(_no_nul)]
LabelValue = Annotated[str, Field(max_length=MAX_VALUE_LEN), AfterValidator(_no_nul)]


def _bounded(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise ValueError(f"too many entries: {len(value)} (at most {MAX_LABELS})")
    return value


def _count_first(value: object) -> object:
    # Refuse an oversized mapping before validating each of its entries.
    if isinstance(value, dict) and len(value) > MAX_LABELS:
        raise ValueError(f"too many entries: {len(value)} (at most {MAX_LABELS})")
    return value


LabelSet = Annotated[dict[LabelName, LabelValue], BeforeValidator(_count_first)]


def _zero_time_is_none(value: datetime | None) -> datetime | None:
    if value is not None and value.year <= 1:
        return None
    return value


OptionalTime = Annotated[AwareDatetime | None, AfterValidator(_zero_time_is_none)]

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
    annotations: LabelSet = Field(default_factory=dict)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: OptionalTime = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL", max_length=8192)
    fingerprint: str = ""

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> Alert:
        if not _FINGERPRINT.match(self.fingerprint):
            object.__setattr__(self, "fingerprint", label_fingerprint(self.labels))
        return self

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class Notification(_Model):
    version: Literal["4"]
    group_key: Text = Field(alias="groupKey", min_length=1, max_length=16384)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: Text = Field(max_length=1024)
    group_labels: LabelSet = Field(default_factory=dict, alias="groupLabels")
    common_labels: LabelSet = Field(default_factory=dict, alias="commonLabels")
    common_annotations: LabelSet = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL", max_length=8192)
    notification_reason: Text | None = Field(default=None, max_length=1024)
    route_labels: LabelSet | None = Field(default=None, alias="routeLabels")
    alerts: list[Alert] = Field(min_length=1, max_length=10000)

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
