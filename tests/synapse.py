"""A real Matrix homeserver for the tests: Synapse (``matrix-synapse`` from PyPI) on SQLite,
listening on loopback only, started and stopped by the test setup.

Users are registered through Synapse's shared-secret registration admin API
(``/_synapse/admin/v1/register``: fetch a nonce, then POST the user with the HMAC-SHA1 of
nonce, user, password and admin flag under the shared secret). :class:`MatrixUser` is a small
client-server API client for the people in the tests (join, react, read a room), written
against the HTTP API directly so that it checks remediator's client from the outside.

Everything lives in one temporary directory; nothing is read from outside the repository
but the installed Synapse package itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support import free_port, http

SERVER_NAME = "localtest"
START_TIMEOUT = 60.0
_FAST = {"per_second": 10000, "burst_count": 10000}


def _config(root: Path, port: int, secret: str) -> dict[str, Any]:
    return {
        "server_name": SERVER_NAME,
        "pid_file": str(root / "homeserver.pid"),
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                       "tls": False, "x_forwarded": False,
                       "resources": [{"names": ["client"], "compress": False}]}],
        "database": {"name": "sqlite3", "args": {"database": str(root / "homeserver.db")}},
        "log_config": str(root / "log.yaml"),
        "media_store_path": str(root / "media"),
        "signing_key_path": str(root / "signing.key"),
        "registration_shared_secret": secret,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_metrics": False,
        "presence": {"enabled": False},
        # The tests create many rooms and messages in seconds: no rate limit gets in the way.
        "rc_message": _FAST,
        "rc_room_creation": _FAST,
        "rc_joins": {"local": _FAST, "remote": _FAST},
        "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
        "rc_registration": _FAST,
        "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    }


_LOG = """version: 1
formatters:
  precise: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: LOGFILE}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
"""


@dataclass
class MatrixUser:
    """A person (or the bot) on the homeserver, with their access token."""

    server: Synapse
    user_id: str
    token: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, raw = http(method, f"{self.server.url}/_matrix/client/v3{path}", body=body,
                           headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        return status, json.loads(raw or b"{}")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status == 200, (method, path, status, answer)
        return answer

    def join(self, room_id: str) -> None:
        self.ok("POST", f"/join/{quote(room_id, safe='')}", {})

    def react(self, room_id: str, event_id: str, key: str) -> str:
        answer = self.ok("PUT", f"/rooms/{quote(room_id, safe='')}/send/m.reaction/"
                         f"{uuid.uuid4().hex}",
                         {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id,
                                           "key": key}})
        return str(answer["event_id"])

    def say(self, room_id: str, body: str) -> str:
        answer = self.ok("PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/"
                         f"{uuid.uuid4().hex}", {"msgtype": "m.text", "body": body})
        return str(answer["event_id"])

    def state(self, room_id: str, event_type: str, key: str = "") -> Any:
        return self.ok("GET", f"/rooms/{quote(room_id, safe='')}/state/{event_type}/{key}")

    def event(self, room_id: str, event_id: str) -> Any:
        return self.ok("GET", f"/rooms/{quote(room_id, safe='')}/event/"
                       f"{quote(event_id, safe='')}")

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        """Every m.room.message of the room, oldest first."""
        out: list[dict[str, Any]] = []
        token = ""
        for _ in range(100):
            path = f"/rooms/{quote(room_id, safe='')}/messages?dir=f&limit=100"
            if token:
                path += f"&from={quote(token, safe='')}"
            page = self.ok("GET", path)
            out += [e for e in page.get("chunk", []) if e.get("type") == "m.room.message"]
            if not page.get("end") or not page.get("chunk"):
                break
            token = page["end"]
        return out

    def members(self, room_id: str, membership: str) -> set[str]:
        page = self.ok("GET", f"/rooms/{quote(room_id, safe='')}/members"
                       f"?membership={membership}")
        return {e["state_key"] for e in page.get("chunk", [])}

    def joined_rooms(self) -> set[str]:
        return set(self.ok("GET", "/joined_rooms")["joined_rooms"])

    def resolve(self, alias_local: str) -> str | None:
        status, answer = self.call(
            "GET", f"/directory/room/{quote(f'#{alias_local}:{SERVER_NAME}', safe='')}")
        return str(answer["room_id"]) if status == 200 else None


class Synapse:
    """One homeserver process under ``root``; :meth:`stop` and :meth:`start` keep its data."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "log.yaml").write_text(_LOG.replace("LOGFILE", str(root / "homeserver.log")),
                                       encoding="utf-8")
        (root / "homeserver.yaml").write_text(
            json.dumps(_config(root, self.port, self.secret)), encoding="utf-8")
        from signedjson.key import generate_signing_key, write_signing_keys

        with open(root / "signing.key", "w", encoding="utf-8") as f:
            write_signing_keys(f, [generate_signing_key("a_test")])

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "--config-path",
             str(self.root / "homeserver.yaml")],
            cwd=self.root, env=env, stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - kept by the process
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("synapse exited: "
                                   + (self.root / "stderr.log").read_text()[-2000:])
            try:
                if http("GET", f"{self.url}/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"synapse did not answer within {START_TIMEOUT}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def register(self, localpart: str, *, admin: bool = False) -> MatrixUser:
        """Register ``@localpart:localtest`` through the shared-secret admin API."""
        status, raw = http("GET", f"{self.url}/_synapse/admin/v1/register")
        assert status == 200, raw
        nonce = json.loads(raw)["nonce"]
        password = secrets.token_hex(12)
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce.encode(), localpart.encode(), password.encode()):
            mac.update(part)
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        status, raw = http("POST", f"{self.url}/_synapse/admin/v1/register", body={
            "nonce": nonce, "username": localpart, "password": password, "admin": admin,
            "mac": mac.hexdigest()}, timeout=30)
        assert status == 200, raw
        answer = json.loads(raw)
        return MatrixUser(self, answer["user_id"], answer["access_token"])
