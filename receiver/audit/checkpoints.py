"""The audit key and the signed checkpoints of the audit chain's head, kept outside the
database.

A checkpoint says "at time T the chain's head was seq N with hash H", HMAC-signed with the
audit key (see :mod:`receiver.audit.chain`). Each one is a small JSON file (mode 0600) in the
checkpoint directory (mode 0700, default ``data_dir/audit-checkpoints``), named so that the
names sort by sequence then time; a checkpoint of an unchanged head replaces the older one,
and only the newest ``audit.checkpoint_keep`` files are kept. ``serve`` and ``worker`` write
one when they start and stop, and the worker's chores at least every
``audit.checkpoint_interval``. A copy can go to syslog and/or a webhook (best effort: a sink
that is down is logged, never blocks the chain).

The key is ``audit.key`` (a secret reference) or a random key created once in
``data_dir/audit_key`` (mode 0600), beside ``secret_key``, and shared by every process of the
deployment that uses that data dir.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import SysLogHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from receiver.audit.chain import AuditKey, Checkpoint, open_checkpoint, sign_checkpoint
from receiver.config import Config, SyslogSink, WebhookSink
from receiver.errors import AuditKeyMissing

if TYPE_CHECKING:
    from receiver.store import Store

log = structlog.get_logger(__name__)

KEY_FILE = "audit_key"
MAX_CHECKPOINT_BYTES = 64 * 1024


# -- the key ------------------------------------------------------------------------------
def audit_key(config: Config, *, create: bool = True) -> AuditKey:
    """``audit.key``, or the key in ``data_dir/audit_key``, created (0600) when missing and
    ``create`` is set. Two processes starting at once end up with the same key."""
    if config.audit.key is not None:
        return AuditKey(config.audit.key.reveal())
    path = Path(config.data_dir) / KEY_FILE
    try:
        return AuditKey(_read_key(path))
    except FileNotFoundError:
        if not create:
            raise AuditKeyMissing(
                f"no audit key: audit.key is not set and {path} does not exist") from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a key another process made
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return AuditKey(_read_key(path))


def _read_key(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    if path.stat().st_mode & 0o077:
        log.warning("audit_key_file_mode", path=str(path),
                    detail="the audit key file is readable by others; chmod 600 it")
    return text


def checkpoint_dir(config: Config) -> Path:
    configured = config.audit.checkpoint_dir
    if configured is None:
        return Path(config.data_dir) / "audit-checkpoints"
    return configured if configured.is_absolute() else Path(config.data_dir) / configured


def store_options(config: Config, *, create_key: bool = True) -> dict[str, Any]:
    """The ``open_store`` arguments that make a store chain and check the audit log with the
    deployment's key and checkpoints."""
    return {"audit_key": audit_key(config, create=create_key),
            "checkpoint_dir": checkpoint_dir(config)}


def process_name(role: str) -> str:
    return f"{role} {socket.gethostname()}:{os.getpid()}"


# -- reading ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    checkpoints: tuple[Checkpoint, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]


def _files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir()
                      if p.name.endswith(".json") and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def read_checkpoints(directory: Path, key: AuditKey) -> Found:
    """Every checkpoint in ``directory`` whose signature holds; each one that does not is a
    problem (someone wrote into the checkpoint directory without the key)."""
    found: list[Checkpoint] = []
    problems: list[str] = []
    for path in _files(directory):
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_CHECKPOINT_BYTES + 1)
        except FileNotFoundError:
            continue  # superseded or pruned by a writer meanwhile
        except OSError as exc:
            problems.append(f"checkpoint {path.name}: cannot read it: {exc.strerror}")
            continue
        try:
            if len(raw) > MAX_CHECKPOINT_BYTES:
                raise ValueError("too large to be a checkpoint")
            found.append(open_checkpoint(key, json.loads(raw), name=path.name))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.append(f"checkpoint {path.name}: {exc}")
    notes = () if found else (f"no signed checkpoint in {directory} yet: a deleted tail "
                              "cannot be detected",)
    return Found(tuple(found), tuple(problems), notes)


# -- writing ------------------------------------------------------------------------------
def write_checkpoint(store: Store, config: Config, *, reason: str, process: str,
                     now: datetime | None = None) -> dict[str, Any] | None:
    """Sign the current head, write it to the checkpoint directory, send it to the sinks.
    None when the store has no audit key or checkpoint directory (a library caller)."""
    key, directory = store.audit_key, store.checkpoint_dir
    if key is None or directory is None:
        return None
    with store.unit(write=False) as uow:
        head = uow.audit.head()
    at = now or datetime.now(UTC)
    body = sign_checkpoint(key, seq=head.seq, hash=head.hash, legacy_until=head.legacy_until,
                           at=at, reason=reason, process=process)
    _write_file(directory, body, at, keep=config.audit.checkpoint_keep)
    for sink in config.audit.sinks:
        _send(sink, body)
    return body


def checkpoint_if_due(store: Store, config: Config, *, process: str) -> int:
    """Write an ``interval`` checkpoint when the newest one is older than
    ``audit.checkpoint_interval`` (any process sharing the directory counts); 1 if written."""
    directory = store.checkpoint_dir
    if store.audit_key is None or directory is None:
        return 0
    newest = 0.0
    for path in _files(directory):
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:
            continue
    if time.time() - newest < config.audit.checkpoint_interval.total_seconds():
        return 0
    write_checkpoint(store, config, reason="interval", process=process)
    return 1


def checkpoint_quietly(store: Store, config: Config, *, reason: str, role: str) -> None:
    """A start/stop checkpoint; a failure is logged and printed, and does not stop the
    process (the chain itself is still in the database)."""
    try:
        body = write_checkpoint(store, config, reason=reason, process=process_name(role))
    except Exception as exc:  # noqa: BLE001 - reported; starting or stopping goes on
        log.warning("audit_checkpoint_failed", reason=reason, error=str(exc))
        return
    if body is not None:
        log.info("audit_checkpoint", reason=reason, seq=body["seq"])


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _write_file(directory: Path, body: dict[str, Any], at: datetime, *, keep: int) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o777 != 0o700:
        directory.chmod(0o700)
    name = f"{body['seq']:012d}-{_stamp(at)}-{os.getpid()}-{secrets.token_hex(3)}.json"
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(body, f, sort_keys=True, separators=(",", ":"))
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    path = directory / name
    os.replace(tmp, path)
    _prune(directory, path, body, keep)
    return path


def _prune(directory: Path, new: Path, body: dict[str, Any], keep: int) -> None:
    """Drop older checkpoints of the same head (the new one says the same, later), then all
    but the newest ``keep``."""
    same_seq = f"{body['seq']:012d}-"
    files = _files(directory)
    for path in files:
        if path == new or not path.name.startswith(same_seq) or path.name > new.name:
            continue
        try:
            old = json.loads(path.read_bytes()[:MAX_CHECKPOINT_BYTES])
        except (OSError, ValueError):
            continue
        if isinstance(old, dict) and old.get("hash") == body["hash"]:
            path.unlink(missing_ok=True)
    files = _files(directory)
    for path in files[:max(len(files) - keep, 0)]:
        path.unlink(missing_ok=True)


def _send(sink: SyslogSink | WebhookSink, body: dict[str, Any]) -> None:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    try:
        if isinstance(sink, WebhookSink):
            headers = {"Content-Type": "application/json",
                       "User-Agent": "remediator-audit-checkpoint"}
            if sink.bearer_token is not None:
                headers["Authorization"] = f"Bearer {sink.bearer_token.reveal()}"
            req = urllib.request.Request(sink.url, data=text.encode(), headers=headers,  # noqa: S310 - http(s) only, checked by the config model
                                         method="POST")
            with urllib.request.urlopen(req, timeout=sink.timeout.total_seconds()) as resp:  # noqa: S310 - as above
                resp.read(1024)
        else:
            _syslog(sink, text)
    except (OSError, ValueError) as exc:  # urllib.error.URLError is an OSError
        log.warning("audit_checkpoint_sink_failed", sink=sink.kind, error=str(exc))


def _syslog(sink: SyslogSink, text: str) -> None:
    address: str | tuple[str, int]
    if sink.address.startswith("/"):
        address = sink.address
    else:
        host, _, port = sink.address.rpartition(":")
        address = (host.strip("[]"), int(port))
    handler = SysLogHandler(
        address=address, facility=SysLogHandler.facility_names[sink.facility],
        socktype=socket.SOCK_STREAM if sink.protocol == "tcp" else socket.SOCK_DGRAM)
    try:
        record = logging.LogRecord("remediator.audit", logging.INFO, __file__, 0,
                                   "remediator-audit-checkpoint: %s", (text,), None)
        handler.handle(record)
    finally:
        handler.close()
