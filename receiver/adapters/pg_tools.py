"""The PostgreSQL client tools against a target: pg_dump, pg_restore and psql.

The tools run with an argv list (validated names and paths only), a timeout and a scrubbed
environment: PATH plus the ``PG*`` variables derived from the target's DSN, so that the
password travels in ``PGPASSWORD`` and never in argv.

Errors: a tool that cannot reach its server or times out raises :class:`AdapterError`; a
tool that is missing or fails otherwise raises :class:`PlaybookError`.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # argv lists only, never a shell: see PgTools.run
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import psycopg.conninfo

from receiver.errors import AdapterError, PlaybookError
from receiver.secrets import Secret

Tool = Literal["pg_dump", "pg_restore", "psql"]

_CONNINFO_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcompression": "PGSSLCOMPRESSION",
    "requiressl": "PGREQUIRESSL",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class ToolResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def stderr_tail(self, limit: int = 2000) -> str:
        return self.stderr[-limit:]


class PgTools:
    """Runs pg_dump, pg_restore and psql against one target, without a shell."""

    def __init__(self, dsn: Secret, *, bin_dir: Path | None = None) -> None:
        self._dsn = dsn
        self._bin_dir = bin_dir

    def env(self, dbname: str | None) -> dict[str, str]:
        """The whole environment a tool gets: PATH and the DSN as ``PG*`` variables."""
        try:
            params = psycopg.conninfo.conninfo_to_dict(self._dsn.reveal())
        except psycopg.ProgrammingError as exc:
            raise PlaybookError(f"cannot parse the postgres DSN ({self._dsn.ref})") from exc
        env = {"PATH": os.environ.get("PATH") or _DEFAULT_PATH, "PGCONNECT_TIMEOUT": "10"}
        for key, value in params.items():
            if value is None:
                continue
            name = _CONNINFO_ENV.get(key)
            if name is None:
                raise PlaybookError(
                    f"DSN parameter {key!r} ({self._dsn.ref}) cannot be passed to the client tools"
                )
            env[name] = str(value)
        if dbname is not None:
            env["PGDATABASE"] = dbname
        return env

    def executable(self, tool: Tool) -> str:
        if self._bin_dir is not None:
            path = self._bin_dir / tool
            if not path.is_file():
                raise PlaybookError(f"{tool} not found in {self._bin_dir}")
            return str(path)
        found = shutil.which(tool, path=os.environ.get("PATH") or _DEFAULT_PATH)
        if found is None:
            raise PlaybookError(f"{tool} not found on PATH")
        return found

    def run(
        self,
        tool: Tool,
        args: list[str],
        *,
        dbname: str | None,
        timeout_s: float,
        check: bool = True,
    ) -> ToolResult:
        """Run one tool with an argv list; a non-zero exit raises unless ``check`` is False."""
        argv = [self.executable(tool), *args]
        try:
            # An argv list of validated names and paths, no shell, a timeout, a scrubbed env.
            proc = subprocess.run(  # noqa: S603
                argv,
                env=self.env(dbname),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AdapterError(f"{tool} timed out after {timeout_s}s") from exc
        except OSError as exc:
            raise PlaybookError(f"cannot run {tool}: {exc}") from exc
        result = ToolResult(argv, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            message = f"{tool} exited with {proc.returncode}: {result.stderr_tail(500).strip()}"
            if "connection to server" in proc.stderr:
                raise AdapterError(message)
            raise PlaybookError(message)
        return result

    def version(self, tool: Tool) -> str:
        return self.run(tool, ["--version"], dbname=None, timeout_s=30).stdout.strip()

    def dump(
        self, dbname: str, out: Path, *, fmt: Literal["custom", "plain"], timeout_s: float
    ) -> None:
        """pg_dump ``dbname`` into ``out`` (custom format, or plain SQL with DROP ... IF EXISTS)."""
        args = ["--no-password", "--dbname", dbname, "--file", str(out)]
        if fmt == "custom":
            args += ["--format", "custom"]
        else:
            args += ["--format", "plain", "--clean", "--if-exists"]
        self.run("pg_dump", args, dbname=dbname, timeout_s=timeout_s)

    def list_archive(self, archive: Path, *, timeout_s: float) -> ToolResult:
        """``pg_restore --list``: reads the archive's table of contents, connects to nothing."""
        return self.run(
            "pg_restore", ["--list", str(archive)], dbname=None, timeout_s=timeout_s, check=False
        )

    def restore_archive(self, dbname: str, archive: Path, *, timeout_s: float) -> ToolResult:
        """pg_restore in one transaction, dropping existing objects first."""
        args = [
            "--no-password",
            "--dbname",
            dbname,
            "--single-transaction",
            "--exit-on-error",
            "--clean",
            "--if-exists",
            str(archive),
        ]
        return self.run("pg_restore", args, dbname=dbname, timeout_s=timeout_s, check=False)

    def run_sql_file(self, dbname: str, script: Path, *, timeout_s: float) -> ToolResult:
        """psql a plain SQL file in one transaction, stopping at the first error."""
        args = [
            "--no-password",
            "--no-psqlrc",
            "--quiet",
            "--dbname",
            dbname,
            "--single-transaction",
            "--set",
            "ON_ERROR_STOP=1",
            "--file",
            str(script),
        ]
        return self.run("psql", args, dbname=dbname, timeout_s=timeout_s, check=False)
