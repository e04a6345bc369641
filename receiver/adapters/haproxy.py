"""The HAProxy adapter: server states through the runtime API on the admin socket.

One command per connection (HAProxy's non-interactive mode: it answers and closes), written
as words that each match a strict pattern, so no value can add a second command (``;``), a
line, or a word. No shell and no ``socat``: a plain Unix socket.

Errors: no socket, a refused connection or a timeout raise :class:`AdapterError`; HAProxy
refusing a command (``No such server.``, ``Permission denied``) raises
:class:`PlaybookError` with its answer.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from receiver.errors import AdapterError, PlaybookError

ServerAdminState = Literal["ready", "drain", "maint"]

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_MAX_ANSWER = 4 * 1024 * 1024

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited, configured or
# resolution-driven maintenance; forced or inherited drain.
_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20
_DRAIN_BITS = 0x08 | 0x10
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
_OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


@dataclass(frozen=True)
class HaproxyServer:
    """One server as ``show servers state`` reports it."""

    backend: str
    name: str
    address: str
    port: int | None
    admin: ServerAdminState
    admin_bits: int
    operational: str
    weight: int

    @property
    def ready(self) -> bool:
        """In rotation: neither in maintenance nor draining."""
        return self.admin == "ready"

    @property
    def serving(self) -> bool:
        """In rotation and up (not down by its health check)."""
        return self.ready and self.operational in ("running", "starting")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def admin_state(bits: int) -> ServerAdminState:
    if bits & _MAINT_BITS:
        return "maint"
    if bits & _DRAIN_BITS:
        return "drain"
    return "ready"


def parse_servers_state(text: str) -> list[HaproxyServer]:
    """The servers of a ``show servers state`` answer (format version 1, named columns)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise PlaybookError(f"haproxy answered an unknown servers-state format: {text[:200]!r}")
    columns: list[str] = []
    servers = []
    for line in lines[1:]:
        if line.startswith("#"):
            columns = line.lstrip("# ").split()
            continue
        row = dict(zip(columns, line.split(), strict=False))
        try:
            bits = int(row["srv_admin_state"])
            port = row.get("srv_port", "-")
            servers.append(
                HaproxyServer(
                    backend=row["be_name"],
                    name=row["srv_name"],
                    address=row.get("srv_addr", ""),
                    port=int(port) if port.isdigit() else None,
                    admin=admin_state(bits),
                    admin_bits=bits,
                    operational=_OP_STATES.get(int(row["srv_op_state"]), "unknown"),
                    weight=int(row.get("srv_uweight", "0")),
                )
            )
        except (KeyError, ValueError) as exc:
            raise PlaybookError(
                f"haproxy answered an unreadable server line: {line[:200]!r}"
            ) from exc
    return servers


def _word(value: str, what: str) -> str:
    if not _WORD.fullmatch(value):
        raise PlaybookError(f"{what} {value[:64]!r} is not a plain HAProxy name")
    return value


class HaproxyAdapter:
    """The runtime API of one HAProxy, over its admin socket (a new connection per command)."""

    def __init__(self, socket_path: Path, timeout_s: float = 5) -> None:
        self._path = socket_path
        self._timeout_s = timeout_s

    def command(self, *words: str) -> str:
        """Send one command made of these words and return HAProxy's whole answer."""
        line = " ".join(words)
        if any(not w or any(c in w for c in " \t\r\n;#\\'\"") for w in words):
            raise PlaybookError(f"refusing a malformed haproxy command {line[:80]!r}")
        deadline = time.monotonic() + self._timeout_s
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout_s)
                sock.connect(str(self._path))
                sock.sendall(line.encode("ascii") + b"\n")
                chunks: list[bytes] = []
                size = 0
                while True:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_ANSWER:
                        raise PlaybookError(f"haproxy's answer to {words[0]!r} is too large")
        except OSError as exc:  # no socket, refused, timed out
            raise AdapterError(
                f"haproxy admin socket {self._path} unreachable while sending "
                f"{' '.join(words[:2])!r}: {exc}"
            ) from exc
        return b"".join(chunks).decode("utf-8", "replace")

    def version(self) -> str:
        """HAProxy's version (``show info``)."""
        for line in self.command("show", "info").splitlines():
            key, _, value = line.partition(":")
            if key == "Version":
                return value.strip()
        raise PlaybookError("haproxy's 'show info' holds no Version")

    def servers(self, backend: str) -> list[HaproxyServer]:
        """Every server of ``backend``; PlaybookError when HAProxy has no such backend."""
        answer = self.command("show", "servers", "state", _word(backend, "backend"))
        if not answer.startswith("1\n"):
            raise PlaybookError(
                f"haproxy refused to show backend {backend!r}: {answer.strip()[:200]}"
            )
        return [s for s in parse_servers_state(answer) if s.backend == backend]

    def server(self, backend: str, server: str) -> HaproxyServer | None:
        """The server called exactly ``server`` in ``backend``, or None."""
        _word(server, "server")
        return next((s for s in self.servers(backend) if s.name == server), None)

    def set_state(self, backend: str, server: str, state: ServerAdminState) -> None:
        """``set server <backend>/<server> state <state>``; HAProxy answers nothing when it
        did it."""
        if state not in ("ready", "drain", "maint"):
            raise PlaybookError(f"unknown server state {state!r}")
        target = f"{_word(backend, 'backend')}/{_word(server, 'server')}"
        answer = self.command("set", "server", target, "state", state).strip()
        if answer:
            raise PlaybookError(f"haproxy refused to set {target} to {state}: {answer[:200]}")
