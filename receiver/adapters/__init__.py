"""Narrow adapters around the real systems that playbooks act on.

Playbooks never hold a raw client: they ask :class:`AdapterFactory` (``ctx.adapters``) for an
adapter, use it as a context manager, and call its few methods. Every adapter raises
:class:`receiver.errors.AdapterError` when its system cannot be reached, and
:class:`receiver.errors.PlaybookError` when the system refuses an action.

Importing this package is cheap: the client libraries (docker, psycopg, redis) are imported by
the adapter modules, which the factory loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.adapters.docker import DockerAdapter
    from receiver.adapters.postgres import PgTools, PostgresAdapter
    from receiver.adapters.redis import RedisAdapter
    from receiver.targets import DockerEndpoint, PostgresTarget, RedisTarget


class AdapterFactory:
    """Builds adapters from allowlist entries. The engine may subclass it to reuse clients."""

    def docker(self, endpoint: DockerEndpoint) -> DockerAdapter:
        from receiver.adapters.docker import DockerAdapter

        return DockerAdapter(base_url=endpoint.base_url, timeout_s=endpoint.timeout_s)

    def postgres(self, target: PostgresTarget, *, dbname: str | None = None) -> PostgresAdapter:
        from receiver.adapters.postgres import PostgresAdapter

        return PostgresAdapter(
            target.dsn, dbname=dbname, connect_timeout_s=target.connect_timeout_s
        )

    def pg_tools(self, target: PostgresTarget) -> PgTools:
        from receiver.adapters.postgres import PgTools

        return PgTools(target.dsn, bin_dir=target.bin_dir)

    def redis(self, target: RedisTarget, *, db: int) -> RedisAdapter:
        from receiver.adapters.redis import RedisAdapter

        return RedisAdapter(target.url, db=db, socket_timeout_s=target.socket_timeout_s)


__all__ = ["AdapterFactory"]
