"""The PostgreSQL-as-target adapter: backends (pg_stat_activity), cancel/terminate, a verify
query and the diagnostics' read-only figures. The client tools (pg_dump, pg_restore, psql)
are :mod:`receiver.adapters.pg_tools`.

SQL here is parameterized; the only text run as-is is an operator's ``verify_query`` from the
targets allowlist.

Errors: connection failures and timeouts raise :class:`AdapterError`; a refused statement or a
failing tool raises :class:`PlaybookError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg.rows import dict_row

from receiver.adapters.base import ClosingAdapter
from receiver.errors import AdapterError, PlaybookError
from receiver.secrets import Secret

APPLICATION_NAME = "remediator"
BackendKind = Literal["client", "superuser", "replication", "autovacuum", "other"]

_BACKENDS_SQL = """
SELECT a.pid, a.datname, a.usename, coalesce(a.application_name, '') AS application_name,
       coalesce(a.backend_type, '') AS backend_type, a.state, coalesce(a.query, '') AS query,
       a.backend_start, a.query_start,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS duration_s,
       coalesce(r.rolsuper, false) AS superuser
  FROM pg_stat_activity AS a
  LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
 WHERE a.pid <> pg_backend_pid()
   AND a.state = 'active'
   AND a.query_start IS NOT NULL
   AND clock_timestamp() - a.query_start >= make_interval(secs => %(min_s)s)
 ORDER BY a.query_start, a.pid
"""

# The backend is acted on only if it is still the same session running the same query.
_SAME_QUERY = """
  FROM pg_stat_activity
 WHERE pid = %(pid)s AND backend_start = %(backend_start)s AND query_start = %(query_start)s
   AND state = 'active'
"""


# Read-only snapshots for diagnostics (checklist phase 2).
_CONNECTIONS_SQL = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS client_connections,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
       count(*) FILTER (WHERE state = 'idle in transaction') AS idle_in_transaction,
       count(*) AS all_backends,
       current_setting('max_connections')::int AS max_connections
  FROM pg_stat_activity
"""
_LONGEST_SQL = """
SELECT pid, datname, usename, coalesce(application_name, '') AS application_name,
       coalesce(backend_type, '') AS backend_type, state, wait_event_type, wait_event,
       extract(epoch FROM clock_timestamp() - query_start)::float8 AS duration_s,
       left(coalesce(query, ''), %(chars)s) AS query
  FROM pg_stat_activity
 WHERE pid <> pg_backend_pid() AND state = 'active' AND query_start IS NOT NULL
 ORDER BY query_start, pid
 LIMIT %(limit)s
"""
_SIZE_SQL = """
SELECT current_database() AS database, pg_database_size(current_database()) AS bytes,
       pg_size_pretty(pg_database_size(current_database())) AS pretty
"""


@dataclass(frozen=True)
class Backend:
    """One server process from pg_stat_activity."""

    pid: int
    datname: str | None
    usename: str | None
    application_name: str
    backend_type: str
    state: str | None
    query: str
    duration_s: float
    superuser: bool
    backend_start: datetime | None
    query_start: datetime | None

    @property
    def kind(self) -> BackendKind:
        if self.backend_type == "walsender":
            return "replication"
        if self.backend_type.startswith("autovacuum"):
            return "autovacuum"
        if self.backend_type != "client backend":
            return "other"
        return "superuser" if self.superuser else "client"


class PostgresAdapter(ClosingAdapter):
    """One autocommit connection to a target; use it as a context manager."""

    def __init__(
        self,
        dsn: Secret,
        *,
        dbname: str | None = None,
        connect_timeout_s: int = 5,
        statement_timeout_s: int = 30,
    ) -> None:
        self._dsn = dsn
        self._dbname = dbname
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_s = statement_timeout_s
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def __enter__(self) -> PostgresAdapter:
        self.connect()  # fail fast: an unreachable database is known before any step
        return self

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is not None:
            return self._conn
        extra: dict[str, Any] = {}
        if self._dbname is not None:
            extra["dbname"] = self._dbname
        try:
            self._conn = psycopg.connect(
                self._dsn.reveal(),
                autocommit=True,
                connect_timeout=self._connect_timeout_s,
                application_name=APPLICATION_NAME,
                row_factory=dict_row,
                **extra,
            )
        except psycopg.OperationalError as exc:
            raise AdapterError(f"postgres unreachable ({self._dsn.ref}): {exc}") from exc
        with self._errors("set statement_timeout"):
            self._conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (f"{self._statement_timeout_s}s",),
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise AdapterError(f"postgres failed to {action}: {exc}") from exc
        except psycopg.Error as exc:
            raise PlaybookError(f"postgres refused to {action}: {exc}") from exc

    def _cursor(self) -> psycopg.Cursor[dict[str, Any]]:
        return self.connect().cursor()

    def own_pid(self) -> int:
        with self._errors("read its own pid"), self._cursor() as cur:
            row = cur.execute("SELECT pg_backend_pid() AS pid").fetchone()
        if row is None:
            raise PlaybookError("postgres returned no row for pg_backend_pid()")
        return int(row["pid"])

    def active_backends(self, min_duration_s: float) -> list[Backend]:
        """Every other backend whose current query has run at least ``min_duration_s``."""
        with self._errors("list backends"), self._cursor() as cur:
            rows = cur.execute(_BACKENDS_SQL, {"min_s": min_duration_s}).fetchall()
        return [Backend(**row) for row in rows]

    # -- read-only snapshots (diagnostics) ----------------------------------------------------

    def select_one_ms(self) -> float:
        """Round trip of ``SELECT 1`` on the open connection, in milliseconds."""
        self.connect()
        with self._errors("run SELECT 1"), self._cursor() as cur:
            started = time.perf_counter()
            cur.execute("SELECT 1").fetchone()
            return (time.perf_counter() - started) * 1000

    def connection_counts(self) -> dict[str, int]:
        """Client connections (all, active, idle in transaction) and max_connections."""
        with self._errors("count connections"), self._cursor() as cur:
            row = cur.execute(_CONNECTIONS_SQL).fetchone()
        return {k: int(v) for k, v in (row or {}).items()}

    def longest_queries(self, *, limit: int, chars: int) -> list[dict[str, Any]]:
        """The ``limit`` longest-running active queries (other than ours), text cut at
        ``chars``."""
        with self._errors("list the longest queries"), self._cursor() as cur:
            rows = cur.execute(_LONGEST_SQL, {"limit": limit, "chars": chars}).fetchall()
        return [dict(r) for r in rows]

    def database_size(self) -> dict[str, Any]:
        with self._errors("read the database size"), self._cursor() as cur:
            row = cur.execute(_SIZE_SQL).fetchone()
        return dict(row or {})

    def _same_query_call(self, function: str, backend: Backend) -> bool:
        query = sql.SQL("SELECT {}(pid) AS done").format(sql.Identifier(function)) + sql.SQL(
            _SAME_QUERY
        )
        params = {
            "pid": backend.pid,
            "backend_start": backend.backend_start,
            "query_start": backend.query_start,
        }
        with self._errors(f"call {function}({backend.pid})"), self._cursor() as cur:
            row = cur.execute(query, params).fetchone()
        return bool(row and row["done"])

    def cancel(self, backend: Backend) -> bool:
        """pg_cancel_backend, only if the backend still runs the same query."""
        return self._same_query_call("pg_cancel_backend", backend)

    def terminate(self, backend: Backend) -> bool:
        """pg_terminate_backend, only if the backend still runs the same query."""
        return self._same_query_call("pg_terminate_backend", backend)

    def still_running(self, backend: Backend) -> bool:
        with self._errors(f"look at backend {backend.pid}"), self._cursor() as cur:
            row = cur.execute(
                sql.SQL("SELECT count(*) AS n") + sql.SQL(_SAME_QUERY),
                {
                    "pid": backend.pid,
                    "backend_start": backend.backend_start,
                    "query_start": backend.query_start,
                },
            ).fetchone()
        return bool(row and row["n"])

    def first_value(self, trusted_query: str) -> Any:
        """First column of the first row of an operator-written query (None without rows)."""
        with self._errors("run the verify query"), self._cursor() as cur:
            # The text comes from the operator's targets allowlist, never from an alert.
            cur.execute(sql.SQL(trusted_query))
            row = cur.fetchone()
        if not row:
            return None
        return next(iter(row.values()))
