"""The ``audit`` section: the audit chain's key, its signed checkpoints and where copies go."""

from __future__ import annotations

from datetime import timedelta
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.secrets import Secret, SecretRef


class SyslogSink(Section):
    """Each checkpoint is also sent as one syslog message (stdlib SysLogHandler)."""

    kind: Literal["syslog"]
    address: str = Field(
        pattern=r"^(/\S+|[\w.\-\[\]:]+:\d{1,5})$",
        description="host:port of a syslog server, or the path of a local socket (/dev/log)",
    )
    protocol: Literal["udp", "tcp"] = "udp"
    facility: str = "auth"

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in SysLogHandler.facility_names:
            known = ", ".join(sorted(SysLogHandler.facility_names))
            raise ValueError(f"unknown syslog facility; known: {known}")
        return value


class WebhookSink(Section):
    """Each checkpoint is also POSTed as its signed JSON."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://\S+$")
    bearer_token: SecretRef | None = None
    timeout: Duration = timedelta(seconds=5)


CheckpointSink = Annotated[SyslogSink | WebhookSink, Field(discriminator="kind")]


class AuditConfig(Section):
    key: SecretRef | None = Field(
        default=None,
        description="HMAC key of the audit chain and its checkpoints; when unset, a random "
        "key is created once in data_dir/audit_key (mode 0600). Never stored in the database",
    )
    checkpoint_dir: Path | None = Field(
        default=None,
        description="where signed checkpoints of the chain's head are written "
        "(default data_dir/audit-checkpoints; a relative path is under data_dir)",
    )
    checkpoint_interval: Duration = timedelta(minutes=1)
    checkpoint_keep: int = Field(default=1000, ge=1, le=1_000_000)
    sinks: list[CheckpointSink] = Field(default_factory=list)

    @field_validator("key")
    @classmethod
    def _key_length(cls, value: Secret | None) -> Secret | None:
        if value is not None and len(value.reveal().encode("utf-8")) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        return value

    @field_validator("checkpoint_interval")
    @classmethod
    def _interval(cls, value: timedelta) -> timedelta:
        if value < timedelta(milliseconds=100):
            raise ValueError("checkpoint_interval must be at least 100ms")
        return value
