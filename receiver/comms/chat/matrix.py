"""The Matrix backend: the client-server API (v3) of one homeserver, over plain HTTP.

Plain HTTP through the standard library rather than matrix-nio: nio is an asyncio client
(aiohttp) with its own dependency tree, sync loop and in-memory state, while remediator's
workers are threads and keep all state in the store (the sync position, the transaction id
of every message, which reaction was handled). Eight endpoints are needed; each call here is
one request with a timeout, no redirect followed and no other host contacted (no
``.well-known`` discovery): the configured homeserver is the only host the token is sent to.

- ``POST /createRoom`` with ``room_alias_name``: when the alias is taken (``M_ROOM_IN_USE``),
  the alias is resolved and the room is ours only if its ``m.room.create`` content carries
  this room's key (a retry after a lost answer); otherwise the caller picks another name;
- ``PUT /rooms/{id}/send/m.room.message/{txnId}``: the transaction id makes a repeated send
  one event (Synapse keeps them per device, also across its restarts);
- ``PUT /rooms/{id}/state/m.room.pinned_events`` and ``.../m.room.topic``;
- ``POST /rooms/{id}/invite``;
- ``GET /sync`` with a filter for reactions and messages of joined rooms; when a room's
  timeline is ``limited`` (more happened since the last sync than one answer holds), the
  gap is read back with ``GET /rooms/{id}/messages?dir=b&to=<since>``.

Errors become :class:`~receiver.errors.DeliveryFailed` with the status, the Matrix error code
and the endpoint's shape (never the token, which only travels in the Authorization header).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from receiver.comms.chat.base import Inbound, RoomSpec, SyncBatch
from receiver.config.chat import MatrixConfig
from receiver.errors import DeliveryFailed

API = "/_matrix/client/v3"
KEY_FIELD = "io.remediator.room_key"
MAX_BODY = 4 * 1024 * 1024
GAP_PAGES = 10
"""Pages of 100 events read back when a sync was limited (more happened since the last)."""
SYNC_FILTER = {
    "presence": {"types": []},
    "account_data": {"types": []},
    "room": {
        "timeline": {"types": ["m.reaction", "m.room.message"], "limit": 100},
        "state": {"types": [], "lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer to report, never a hop to follow


def _p(value: str) -> str:
    return quote(value, safe="")


class MatrixBackend:
    name = "matrix"

    def __init__(self, settings: MatrixConfig) -> None:
        self.base = settings.homeserver.rstrip("/")
        self.user_id = settings.user_id
        self.server_name = settings.user_id.split(":", 1)[1]
        self._token = settings.access_token
        self.timeout = settings.timeout.total_seconds()
        self._opener = urllib.request.build_opener(_NoRedirect)

    # -- one request ----------------------------------------------------------------------
    def _call(self, method: str, path: str, shape: str, body: Any = None,
              query: dict[str, str] | None = None, timeout: float | None = None,
              ok_codes: tuple[str, ...] = ()) -> dict[str, Any]:
        url = self.base + API + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token.reveal()}",
                   "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - the configured homeserver (http(s) only, checked at load)
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as resp:
                raw = resp.read(MAX_BODY)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(MAX_BODY), exc.code
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(f"matrix {method} {shape}: {type(exc).__name__}: "
                                 f"{str(exc)[:200]}") from None
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if 200 <= status < 300:
            return answer
        code = str(answer.get("errcode") or "")
        if code and code in ok_codes:
            return {"errcode": code}
        why = str(answer.get("error") or "")[:200]
        raise DeliveryFailed(f"matrix {method} {shape}: {status} {code} {why}".rstrip())

    # -- the interface --------------------------------------------------------------------
    def create_room(self, spec: RoomSpec) -> str | None:
        answer = self._call("POST", "/createRoom", "/createRoom", {
            "name": spec.name,
            "topic": spec.topic,
            "room_alias_name": spec.alias,
            "preset": "private_chat",
            "visibility": "private",
            "creation_content": {KEY_FIELD: spec.key},
        }, ok_codes=("M_ROOM_IN_USE",))
        if "room_id" in answer:
            return str(answer["room_id"])
        alias = f"#{spec.alias}:{self.server_name}"
        found = self._call("GET", f"/directory/room/{_p(alias)}", "/directory/room/{alias}")
        room_id = str(found.get("room_id") or "")
        if not room_id:
            return None
        try:
            create = self._call("GET", f"/rooms/{_p(room_id)}/state/m.room.create/",
                                "/rooms/{room}/state/m.room.create")
        except DeliveryFailed:
            return None  # a room we cannot read is not ours
        return room_id if create.get(KEY_FIELD) == spec.key else None

    def invite(self, room_id: str, user_id: str) -> None:
        self._call("POST", f"/rooms/{_p(room_id)}/invite", "/rooms/{room}/invite",
                   {"user_id": user_id})

    def send_text(self, room_id: str, txn_id: str, body: str, *, maybe_sent: bool = False,
                  approval_job: int | None = None) -> str:
        # The homeserver keeps transaction ids: a repeat is the same event, and an approval
        # request is decided by reactions, so neither flag changes the request.
        answer = self._call(
            "PUT", f"/rooms/{_p(room_id)}/send/m.room.message/{_p(txn_id)}",
            "/rooms/{room}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": body, "m.mentions": {}})
        event_id = answer.get("event_id")
        if not isinstance(event_id, str):
            raise DeliveryFailed("matrix send: the answer has no event_id")
        return event_id

    def pin(self, room_id: str, event_ids: list[str]) -> None:
        self._call("PUT", f"/rooms/{_p(room_id)}/state/m.room.pinned_events/",
                   "/rooms/{room}/state/m.room.pinned_events", {"pinned": event_ids})

    def set_topic(self, room_id: str, topic: str) -> None:
        self._call("PUT", f"/rooms/{_p(room_id)}/state/m.room.topic/",
                   "/rooms/{room}/state/m.room.topic", {"topic": topic})

    def archive(self, room_id: str) -> None:
        return None  # a Matrix room stays; its [closed] topic marks it

    def sync(self, since: str | None, timeout: float) -> SyncBatch:
        query = {"filter": json.dumps(SYNC_FILTER, separators=(",", ":")),
                 "timeout": str(int(timeout * 1000))}
        if since:
            query["since"] = since
        answer = self._call("GET", "/sync", "/sync", query=query,
                            timeout=timeout + self.timeout)
        events: list[Inbound] = []
        joined = (answer.get("rooms") or {}).get("join") or {}
        for room_id, room in joined.items() if isinstance(joined, dict) else ():
            timeline = (room or {}).get("timeline") or {}
            raw = list(timeline.get("events") or [])
            if timeline.get("limited") and since and isinstance(timeline.get("prev_batch"), str):
                raw = self._gap(str(room_id), timeline["prev_batch"], since) + raw
            for event in raw:
                parsed = _inbound(str(room_id), event)
                if parsed is not None:
                    events.append(parsed)
        return SyncBatch(next_batch=str(answer.get("next_batch") or since or ""),
                         events=tuple(events))

    def _gap(self, room_id: str, start: str, since: str) -> list[Any]:
        """The events a limited sync left out (between ``since`` and ``start``), oldest
        first, at most :data:`GAP_PAGES` pages of them (the newest ones)."""
        found: list[Any] = []
        token = start
        room_filter = json.dumps({"types": ["m.reaction", "m.room.message"]},
                                 separators=(",", ":"))
        for _ in range(GAP_PAGES):
            page = self._call("GET", f"/rooms/{_p(room_id)}/messages", "/rooms/{room}/messages",
                              query={"dir": "b", "from": token, "to": since, "limit": "100",
                                     "filter": room_filter})
            chunk = page.get("chunk") or []
            found.extend(chunk)
            nxt = page.get("end")
            if not chunk or not isinstance(nxt, str) or nxt == token:
                break
            token = nxt
        return list(reversed(found))


def _inbound(room_id: str, event: Any) -> Inbound | None:
    if not isinstance(event, dict):
        return None
    event_id, sender, content = event.get("event_id"), event.get("sender"), event.get("content")
    if not isinstance(event_id, str) or not isinstance(sender, str) or not isinstance(
            content, dict):
        return None
    if event.get("type") == "m.reaction":
        rel = content.get("m.relates_to")
        if not isinstance(rel, dict) or rel.get("rel_type") != "m.annotation":
            return None
        target, key = rel.get("event_id"), rel.get("key")
        if not isinstance(target, str) or not isinstance(key, str):
            return None
        return Inbound(room_id, event_id, sender, "reaction", relates_to=target, key=key[:32])
    if event.get("type") == "m.room.message" and isinstance(content.get("body"), str):
        rel = content.get("m.relates_to")
        if isinstance(rel, dict) and rel.get("rel_type") == "m.replace":
            return None  # an edit changes an earlier message: never a command of its own
        return Inbound(room_id, event_id, sender, "text", body=content["body"][:2000])
    return None
