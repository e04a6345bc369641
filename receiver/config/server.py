"""How the process runs: the ``server``, ``auth``, ``store`` and ``logging`` sections."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.secrets import SecretRef


class ServerConfig(Section):
    bind: str = Field(default="127.0.0.1:9095", pattern=r"^[\w.\-\[\]:]+:\d{1,5}$")
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=64)
    timeout: int = Field(default=30, ge=1, le=600)
    # Alertmanager sends whatever its templates produce and never retries a 413: the default
    # leaves room for a group of alerts carrying long log excerpts (Alertmanager repeats a
    # lone alert's annotations in commonAnnotations, doubling them).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="a client has this long from a request's first byte to send its headers; "
        "until then it holds a few bytes of buffer, never a thread",
    )
    body_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="and this long after the headers to send its body; a request gets a "
        "thread only once it is complete",
    )

    keepalive_requests: int = Field(
        default=20, ge=1, le=100_000,
        description="a kept-alive connection is closed (Connection: close) with the response "
        "to this many requests, so that clients' connections spread over the workers again",
    )
    keepalive_lifetime: Duration = Field(
        default=timedelta(seconds=5),
        description="... or with the first response once the connection is this old",
    )

    @field_validator("header_timeout", "body_timeout", "keepalive_lifetime")
    @classmethod
    def _client_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(minutes=10):
            raise ValueError("must be between 1s and 10m")
        return value
    public_url: str = Field(default="http://127.0.0.1:9095", pattern=r"^https?://")
    embedded_worker: bool = True
    secret_key: SecretRef | None = Field(
        default=None,
        description="signs approval links, sessions and CSRF tokens; when unset, a random "
        "key is created once in data_dir/secret_key (mode 0600) and shared by all processes",
    )
    secure_cookies: bool = Field(
        default=True, description="mark the session cookie Secure (HTTPS only)"
    )
    metrics_token: SecretRef | None = Field(
        default=None,
        description="when set, GET /metrics needs 'Authorization: Bearer <token>'",
    )
    metrics_refresh: Duration = Field(
        default=timedelta(seconds=15),
        description="how often a worker recomputes the incident figures that /metrics "
        "serves; a scrape finding none fresher than twice this computes them itself",
    )


class BasicAuth(Section):
    username: str = Field(min_length=1)
    password: SecretRef


class AuthConfig(Section):
    bearer_token: SecretRef | None = None
    basic: BasicAuth | None = None

    @property
    def configured(self) -> bool:
        return self.bearer_token is not None or self.basic is not None


class StoreConfig(Section):
    url: SecretRef | str = Field(
        default="sqlite:///remediator.db",
        description="sqlite:///relative/or//absolute path, or postgresql://...; "
        "a PostgreSQL URL with a password belongs in env:NAME or file:/path",
    )
    pool_min: int = Field(default=1, ge=0, le=100)
    pool_max: int = Field(default=10, ge=1, le=200)
    connect_timeout: Duration = timedelta(seconds=3)
    migrate_on_start: bool = True

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("env:", "file:")):
            return value  # resolved by SecretRef
        if isinstance(value, str) and not value.startswith(
            ("sqlite://", "postgresql://", "postgres://")
        ):
            raise ValueError("store.url must start with sqlite://, postgresql:// or env:/file:")
        return value

    def resolved_url(self) -> str:
        return self.url.reveal() if not isinstance(self.url, str) else self.url


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
