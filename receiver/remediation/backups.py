"""Backups of allowlisted PostgreSQL databases: create, list, verify, restore.

A backup location (``targets.backups.<name>``) is one directory holding dumps of one database.
Each dump ``<database>-<UTC timestamp>-<kind>.<dump|sql.gz>`` has a manifest next to it,
``<dump file>.manifest.json``, recording its format, database, kind, creation time, size and
sha256. A dump without a readable manifest is never restored.

A backup *verifies* when its manifest names this location's database, its size and sha256
match, and its content reads back: ``pg_restore --list`` for the custom format, a full gzip
decompression (CRC check) for ``.sql.gz``.

These are plain functions used by the ``restore_database`` playbook and by the CLI
(``remediator backup create|list|verify``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from receiver.adapters import AdapterFactory
from receiver.errors import PlaybookError
from receiver.remediation.targets import BackupLocation, PostgresTarget, TargetsConfig

if TYPE_CHECKING:
    from receiver.adapters import PgToolsApi
    from receiver.adapters.pg_tools import ToolResult

BackupKind = Literal["scheduled", "manual", "safety"]
BackupFormat = Literal["custom", "sql.gz"]

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
_EXTENSIONS: dict[str, str] = {"custom": ".dump", "sql.gz": ".sql.gz"}
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Backup:
    """One dump and what its manifest says about it."""

    path: Path
    manifest_path: Path
    format: BackupFormat
    database: str
    kind: BackupKind
    created_at: datetime
    sha256: str
    size: int
    tool: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "format": self.format,
            "database": self.database,
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True)
class BackupListing:
    """The backups of a location, newest first, and the manifests that could not be read."""

    backups: list[Backup]
    invalid: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BackupCheck:
    """Whether a backup verifies, and every problem found when it does not."""

    name: str
    ok: bool
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "problems": list(self.problems)}


def resolve_location(
    targets: TargetsConfig, location: str
) -> tuple[BackupLocation, PostgresTarget]:
    """The allowlisted location and its PostgreSQL target (TargetNotAllowed otherwise)."""
    loc = targets.backup_location(location)
    target = targets.postgres_target(loc.postgres)
    target.check_database(loc.database, loc.postgres)
    return loc, target


def backup_path(loc: BackupLocation, *, kind: BackupKind, fmt: BackupFormat, now: datetime) -> Path:
    """Where a new dump taken at ``now`` goes (a free name; nothing is created)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    stem = f"{loc.database}-{stamp}-{kind}"
    candidate = loc.directory / f"{stem}{_EXTENSIONS[fmt]}"
    counter = 1
    while candidate.exists() or _manifest_for(candidate).exists():
        candidate = loc.directory / f"{stem}-{counter}{_EXTENSIONS[fmt]}"
        counter += 1
    return candidate


def create_backup(
    targets: TargetsConfig,
    location: str,
    *,
    kind: BackupKind = "manual",
    fmt: BackupFormat = "custom",
    clock: Callable[[], datetime] | None = None,
    adapters: AdapterFactory | None = None,
) -> Backup:
    """pg_dump the location's database into the location, then write its manifest."""
    loc, target = resolve_location(targets, location)
    tools = (adapters or AdapterFactory()).pg_tools(target)
    now = (clock or _utcnow)()
    loc.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = backup_path(loc, kind=kind, fmt=fmt, now=now)
    partial = final.with_name(f".{final.name}.partial")
    plain = final.with_name(f".{final.name}.sql.partial")
    try:
        if fmt == "custom":
            tools.dump(loc.database, partial, fmt="custom", timeout_s=loc.dump_timeout_s)
        else:
            tools.dump(loc.database, plain, fmt="plain", timeout_s=loc.dump_timeout_s)
            with plain.open("rb") as src, gzip.open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        partial.chmod(0o600)
        digest, size = _sha256(partial)
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
        plain.unlink(missing_ok=True)
    backup = Backup(
        path=final,
        manifest_path=_manifest_for(final),
        format=fmt,
        database=loc.database,
        kind=kind,
        created_at=now.astimezone(UTC),
        sha256=digest,
        size=size,
        tool=tools.version("pg_dump"),
    )
    _write_manifest(backup, postgres=loc.postgres)
    return backup


def list_backups(targets: TargetsConfig, location: str) -> BackupListing:
    """Every backup with a readable manifest in the location, newest first."""
    loc = targets.backup_location(location)
    if not loc.directory.is_dir():
        return BackupListing([])
    backups: list[Backup] = []
    invalid: list[tuple[Path, str]] = []
    for manifest in sorted(loc.directory.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            backups.append(_read_manifest(manifest))
        except ValueError as exc:
            invalid.append((manifest, str(exc)))
    backups.sort(key=lambda b: (b.created_at, b.name), reverse=True)
    return BackupListing(backups, invalid)


def verify_backup(
    targets: TargetsConfig,
    location: str,
    backup: Backup,
    *,
    timeout_s: float = 300,
    adapters: AdapterFactory | None = None,
) -> BackupCheck:
    """Check a backup against its manifest and read its content back; no database is touched."""
    loc, target = resolve_location(targets, location)
    problems: list[str] = []
    if backup.database != loc.database:
        problems.append(f"it is a dump of {backup.database!r}, not of {loc.database!r}")
    if backup.path.parent != loc.directory or not backup.path.is_file():
        problems.append("the dump file is missing")
        return BackupCheck(backup.name, False, problems)
    digest, size = _sha256(backup.path)
    if size != backup.size:
        problems.append(f"size is {size} bytes, the manifest says {backup.size}")
    if digest != backup.sha256:
        problems.append("sha256 does not match the manifest")
    if not problems:
        tools = (adapters or AdapterFactory()).pg_tools(target)
        problems.extend(_content_problems(backup, tools, timeout_s))
    return BackupCheck(backup.name, not problems, problems)


def newest_verified(
    targets: TargetsConfig,
    location: str,
    *,
    include_safety: bool = False,
    only: str | None = None,
    adapters: AdapterFactory | None = None,
) -> tuple[Backup | None, list[BackupCheck]]:
    """The newest backup that verifies, and the checks of the newer ones that did not.

    Safety dumps (taken before a restore) are skipped unless ``include_safety``; ``only``
    restricts the choice to the backup with that file name.
    """
    listing = list_backups(targets, location)
    rejected = [BackupCheck(path.name, False, [reason]) for path, reason in listing.invalid]
    for backup in listing.backups:
        if only is not None and backup.name != only:
            continue
        if backup.kind == "safety" and not include_safety and only is None:
            continue
        check = verify_backup(targets, location, backup, adapters=adapters)
        if check.ok:
            return backup, rejected
        rejected.append(check)
    return None, rejected


def restore_backup(
    targets: TargetsConfig,
    location: str,
    backup: Backup,
    *,
    adapters: AdapterFactory | None = None,
) -> ToolResult:
    """Restore a (verified) backup into the location's database in a single transaction.

    The caller checks ``returncode``: on failure the transaction rolled back.
    """
    loc, target = resolve_location(targets, location)
    tools = (adapters or AdapterFactory()).pg_tools(target)
    if backup.format == "custom":
        return tools.restore_archive(loc.database, backup.path, timeout_s=loc.restore_timeout_s)
    fd, name = tempfile.mkstemp(prefix=".restore-", suffix=".sql", dir=loc.directory)
    script = Path(name)
    try:
        with os.fdopen(fd, "wb") as dst, gzip.open(backup.path, "rb") as src:
            shutil.copyfileobj(src, dst, _CHUNK)
        return tools.run_sql_file(loc.database, script, timeout_s=loc.restore_timeout_s)
    except (OSError, EOFError, zlib.error) as exc:
        raise PlaybookError(f"cannot decompress {backup.name}: {exc}") from exc
    finally:
        script.unlink(missing_ok=True)


# -- helpers ---------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _manifest_for(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_manifest(backup: Backup, *, postgres: str) -> None:
    body = {
        "manifest_version": MANIFEST_VERSION,
        "file": backup.name,
        "format": backup.format,
        "database": backup.database,
        "postgres_target": postgres,
        "kind": backup.kind,
        "created_at": backup.created_at.isoformat(),
        "size": backup.size,
        "sha256": backup.sha256,
        "tool": backup.tool,
    }
    tmp = backup.manifest_path.with_name(f".{backup.manifest_path.name}.partial")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.rename(backup.manifest_path)


def _read_manifest(manifest: Path) -> Backup:
    """Parse a manifest; anything unexpected raises ValueError with the reason."""
    try:
        body = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable manifest: {exc}") from exc
    if not isinstance(body, dict) or body.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError("not a version 1 manifest")
    file = body.get("file")
    if not isinstance(file, str) or not _SAFE_FILE.match(file):
        raise ValueError("the manifest's file name is not a plain file name")
    if manifest.name != file + MANIFEST_SUFFIX:
        raise ValueError("the manifest does not sit next to the file it names")
    fmt, kind = body.get("format"), body.get("kind")
    if fmt not in get_args(BackupFormat) or kind not in get_args(BackupKind):
        raise ValueError(f"unknown format {fmt!r} or kind {kind!r}")
    sha, size, database = body.get("sha256"), body.get("size"), body.get("database")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError("the manifest has no valid sha256")
    if not isinstance(size, int) or size < 0 or not isinstance(database, str):
        raise ValueError("the manifest has no valid size or database")
    try:
        created = datetime.fromisoformat(str(body.get("created_at")))
    except ValueError as exc:
        raise ValueError("the manifest has no valid created_at") from exc
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return Backup(
        path=manifest.with_name(file),
        manifest_path=manifest,
        format=cast(BackupFormat, fmt),
        database=database,
        kind=cast(BackupKind, kind),
        created_at=created,
        sha256=sha,
        size=size,
        tool=str(body.get("tool", "")),
    )


def _content_problems(backup: Backup, tools: PgToolsApi, timeout_s: float) -> list[str]:
    if backup.format == "custom":
        listed = tools.list_archive(backup.path, timeout_s=timeout_s)
        if listed.returncode != 0:
            return [f"pg_restore --list failed: {listed.stderr_tail(300).strip()}"]
        if not any(line and not line.startswith(";") for line in listed.stdout.splitlines()):
            return ["pg_restore --list shows an empty archive"]
        return []
    try:
        with gzip.open(backup.path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return [f"gzip integrity check failed: {exc}"]
    return []
