"""Narrow adapters around the real systems that playbooks act on and diagnostics look at.

Nothing outside this package builds an adapter: playbooks (``ctx.adapters``), diagnostics,
verification checks and backups ask :class:`AdapterFactory` for one, use it (as a context
manager when it holds a connection), and call the few methods of its protocol in
:mod:`receiver.adapters.protocols`. Every adapter raises :class:`receiver.errors.AdapterError`
when its system cannot be reached, and :class:`receiver.errors.PlaybookError` when the
system refuses an action.

Importing this package is cheap: the client libraries (docker, psycopg, redis) are imported by
the adapter modules, which the factory loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from receiver.adapters.protocols import (
    DeploysApi,
    DockerApi,
    HaproxyApi,
    HttpApi,
    PgToolsApi,
    PostgresApi,
    PrometheusApi,
    RedisApi,
    SilencesApi,
)

if TYPE_CHECKING:
    from receiver.remediation.haproxy_targets import HaproxyTarget
    from receiver.remediation.targets import DockerEndpoint, PostgresTarget, RedisTarget
    from receiver.remediation.urls import HostAllowlist


class AdapterFactory:
    """Builds adapters from allowlist entries: the one place an adapter is created. The
    engine may subclass it to reuse clients."""

    def docker(self, endpoint: DockerEndpoint) -> DockerApi:
        from receiver.adapters.docker import DockerAdapter

        return DockerAdapter(base_url=endpoint.base_url, timeout_s=endpoint.timeout_s)

    def deploys(self, endpoint: DockerEndpoint) -> DeploysApi:
        """The Docker daemon of ``endpoint`` with Swarm service versions and rollback."""
        from receiver.adapters.deploys import DeploysAdapter

        return DeploysAdapter(base_url=endpoint.base_url, timeout_s=endpoint.timeout_s)

    def haproxy(self, target: HaproxyTarget) -> HaproxyApi:
        """The runtime API of an allowlisted HAProxy, on its admin socket."""
        from receiver.adapters.haproxy import HaproxyAdapter

        return HaproxyAdapter(target.socket, timeout_s=target.timeout_s)

    def postgres(self, target: PostgresTarget, *, dbname: str | None = None) -> PostgresApi:
        from receiver.adapters.postgres import PostgresAdapter

        return PostgresAdapter(
            target.dsn, dbname=dbname, connect_timeout_s=target.connect_timeout_s
        )

    def pg_tools(self, target: PostgresTarget) -> PgToolsApi:
        from receiver.adapters.pg_tools import PgTools

        return PgTools(target.dsn, bin_dir=target.bin_dir)

    def redis(self, target: RedisTarget, *, db: int) -> RedisApi:
        from receiver.adapters.redis import RedisAdapter

        return RedisAdapter(target.url, db=db, socket_timeout_s=target.socket_timeout_s)

    def http(self, *, timeout_s: float, hosts: HostAllowlist) -> HttpApi:
        """GETs to the hosts of ``targets.http`` only (each redirect hop checked too)."""
        from receiver.adapters.http import HttpAdapter

        return HttpAdapter(timeout_s=timeout_s, hosts=hosts)

    def prometheus(self, base_url: str, *, timeout_s: float, hosts: HostAllowlist) -> PrometheusApi:
        """Queries to the Prometheus at ``base_url``, whose host ``hosts`` must hold."""
        from receiver.adapters.prometheus import PrometheusAdapter

        return PrometheusAdapter(base_url, timeout_s, hosts=hosts)

    def alertmanager_silences(self, base_url: str, *, timeout_s: float,
                              hosts: HostAllowlist) -> SilencesApi:
        """Silences in the Alertmanager at ``base_url``, whose host ``hosts`` must hold."""
        from receiver.adapters.silences import SilencesAdapter

        return SilencesAdapter(base_url, timeout_s, hosts=hosts)


__all__ = ["AdapterFactory", "DeploysApi", "DockerApi", "HaproxyApi", "HttpApi", "PgToolsApi",
           "PostgresApi", "PrometheusApi", "RedisApi", "SilencesApi"]
