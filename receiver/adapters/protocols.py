"""The interface of each kind of adapter: exactly what playbooks, diagnostics, verification
and backups may call.

:class:`receiver.adapters.AdapterFactory` returns these types, so the type checker holds
every caller to them, and a test double (or another implementation) only has to provide
these few methods. The adapter classes in this package implement them; the assignments at
the bottom of this module make the type checker prove it, and
``tests/test_extension_points.py`` checks it at run time.

Importing this module imports none of the client libraries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from datetime import datetime

    from receiver.adapters.compose_deploys import ComposeReplica, ComposeRevision
    from receiver.adapters.deploys import ServiceRevision
    from receiver.adapters.docker import ContainerDetails, ContainerState, ServiceState
    from receiver.adapters.haproxy import HaproxyServer, ServerAdminState
    from receiver.adapters.http import HttpResult
    from receiver.adapters.pg_tools import Tool, ToolResult
    from receiver.adapters.postgres import Backend
    from receiver.adapters.prometheus import Sample
    from receiver.adapters.redis import UnlinkResult


@runtime_checkable
class Closing(Protocol):
    """An adapter holding a connection: use it as a context manager; it closes on exit."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class DockerApi(Closing, Protocol):
    """One Docker daemon: containers (inspect, logs, restart, remove, compose replicas) and
    Swarm services (inspect, scale, wait)."""

    def container(self, name_or_id: str, *, exact_name: bool = True) -> ContainerState | None: ...

    def details(self, name: str) -> ContainerDetails | None: ...

    def logs(self, container_id: str, *, tail: int) -> str: ...

    def containers(self, labels: Mapping[str, str]) -> list[ContainerState]: ...

    def restart(self, container_id: str, stop_timeout_s: int) -> None: ...

    def wait_ready(self, container_id: str, timeout_s: float) -> ContainerState: ...

    def remove(self, container_id: str, stop_timeout_s: int) -> None: ...

    def service(self, name: str) -> ServiceState | None: ...

    def scale_service(self, name: str, replicas: int) -> None: ...

    def wait_service(self, name: str, replicas: int, timeout_s: float) -> ServiceState: ...

    def compose_replicas(self, project: str, service: str) -> list[ContainerState]: ...

    def create_compose_replica(self, template_id: str, number: int) -> ContainerState: ...


@runtime_checkable
class PostgresApi(Closing, Protocol):
    """One PostgreSQL database as a target: backends (list, cancel, terminate) and a few
    read-only figures."""

    def own_pid(self) -> int: ...

    def active_backends(self, min_duration_s: float) -> list[Backend]: ...

    def cancel(self, backend: Backend) -> bool: ...

    def terminate(self, backend: Backend) -> bool: ...

    def still_running(self, backend: Backend) -> bool: ...

    def select_one_ms(self) -> float: ...

    def connection_counts(self) -> dict[str, int]: ...

    def longest_queries(self, *, limit: int, chars: int) -> list[dict[str, Any]]: ...

    def database_size(self) -> dict[str, Any]: ...

    def first_value(self, trusted_query: str) -> Any: ...


@runtime_checkable
class PgToolsApi(Protocol):
    """The PostgreSQL client tools (pg_dump, pg_restore, psql) for one server."""

    def version(self, tool: Tool) -> str: ...

    def dump(
        self, dbname: str, out: Path, *, fmt: Literal["custom", "plain"], timeout_s: float
    ) -> None: ...

    def list_archive(self, archive: Path, *, timeout_s: float) -> ToolResult: ...

    def restore_archive(self, dbname: str, archive: Path, *, timeout_s: float) -> ToolResult: ...

    def run_sql_file(self, dbname: str, script: Path, *, timeout_s: float) -> ToolResult: ...


@runtime_checkable
class RedisApi(Closing, Protocol):
    """One logical Redis database: sizes, a bounded SCAN count and UNLINK, flushes."""

    def ping_ms(self) -> float: ...

    def info(self, section: str) -> dict[str, Any]: ...

    def dbsize(self) -> int: ...

    def keyspace_sizes(self) -> dict[int, int]: ...

    def count_matching(
        self, pattern: str, *, batch: int, limit: int, key_prefixes: Sequence[str] | None = None
    ) -> tuple[int, bool]: ...

    def unlink_matching(
        self,
        pattern: str,
        *,
        batch: int,
        max_keys: int,
        key_prefixes: Sequence[str] | None = None,
    ) -> UnlinkResult: ...

    def flushdb(self) -> None: ...

    def flushall(self) -> None: ...


@runtime_checkable
class HaproxyApi(Protocol):
    """One HAProxy's runtime API (admin socket): server states, read and set."""

    def version(self) -> str: ...

    def servers(self, backend: str) -> list[HaproxyServer]: ...

    def server(self, backend: str, server: str) -> HaproxyServer | None: ...

    def set_state(self, backend: str, server: str, state: ServerAdminState) -> None: ...


@runtime_checkable
class DeploysApi(DockerApi, Protocol):
    """The Docker API plus service versions: a Swarm service's current and previous spec and
    the engine's own rollback to the previous one; a Compose service's replicas with their
    recorded previous image, and recreating a replica on another image."""

    def revision(self, name: str) -> ServiceRevision | None: ...

    def rollback_service(self, name: str, version: int) -> None: ...

    def wait_rollout(self, name: str, timeout_s: float) -> ServiceRevision: ...

    def compose_revision(
        self, project: str, service: str, previous_label: str
    ) -> ComposeRevision: ...

    def image_id(self, reference: str) -> str | None: ...

    def recreate_on_image(
        self,
        container_id: str,
        image: str,
        *,
        set_labels: dict[str, str],
        drop_labels: tuple[str, ...],
        previous_label: str,
        stop_timeout_s: int,
        wait_timeout_s: float,
    ) -> ComposeReplica: ...


@runtime_checkable
class HttpApi(Protocol):
    """GET a URL whose host, and every redirect hop, the allowlist holds."""

    def get(self, url: str) -> HttpResult: ...


@runtime_checkable
class PrometheusApi(Protocol):
    """Instant PromQL queries against one Prometheus."""

    def query(self, promql: str) -> list[Sample]: ...


@runtime_checkable
class SilencesApi(Protocol):
    """Silences in one Alertmanager (API v2), matching labels by literal equality only."""

    def create_silence(self, labels: Mapping[str, str], *, starts_at: datetime,
                       ends_at: datetime, created_by: str, comment: str) -> str: ...

    def expire_silence(self, silence_id: str) -> bool: ...


if TYPE_CHECKING:
    from receiver.adapters.deploys import DeploysAdapter
    from receiver.adapters.docker import DockerAdapter
    from receiver.adapters.haproxy import HaproxyAdapter
    from receiver.adapters.http import HttpAdapter
    from receiver.adapters.pg_tools import PgTools
    from receiver.adapters.postgres import PostgresAdapter
    from receiver.adapters.prometheus import PrometheusAdapter
    from receiver.adapters.redis import RedisAdapter
    from receiver.adapters.silences import SilencesAdapter

    def _implements(
        docker: DockerAdapter,
        postgres: PostgresAdapter,
        pg_tools: PgTools,
        redis: RedisAdapter,
        http: HttpAdapter,
        prometheus: PrometheusAdapter,
        haproxy: HaproxyAdapter,
        deploys: DeploysAdapter,
        silences: SilencesAdapter,
    ) -> None:
        """Never called: the type checker proves each adapter implements its protocol."""
        _d: DockerApi = docker
        _p: PostgresApi = postgres
        _t: PgToolsApi = pg_tools
        _r: RedisApi = redis
        _h: HttpApi = http
        _m: PrometheusApi = prometheus
        _x: HaproxyApi = haproxy
        _v: DeploysApi = deploys
        _s: SilencesApi = silences


__all__ = ["Closing", "DeploysApi", "DockerApi", "HaproxyApi", "HttpApi", "PgToolsApi",
           "PostgresApi", "PrometheusApi", "RedisApi", "SilencesApi"]
