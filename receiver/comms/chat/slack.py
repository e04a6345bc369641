"""The Slack backend: a private channel per incident through the Web API (``slack-sdk``).

Calls, each one request with the configured timeout to the configured API base URL only
(``chat.slack.api_url``), the bot token in the ``Authorization`` header and JSON bodies:

- ``conversations.create`` (``name``, ``is_private``); when the name is taken
  (``name_taken``), ``conversations.list`` finds the channel, and it is ours only if its
  purpose carries this room's key (set by ``conversations.setPurpose`` right after the
  creation): a retry after a lost answer finds its channel, anyone else's is left alone;
- ``conversations.invite`` (``already_in_channel`` is success), ``pins.add``
  (``already_pinned`` is success), ``conversations.setTopic`` (250 characters),
  ``conversations.archive`` (``already_archived`` is success);
- ``chat.postMessage`` with ``metadata`` carrying the message's transaction id. Slack has no
  idempotency key, so when a message may have been posted already (the first message of a
  room's lease: the previous try may have ended between Slack's answer and the store's
  record), ``conversations.history`` is read first and a message with that transaction id is
  taken as the one sent. A message to an archived channel is dropped (the room is closed).

Text is Slack "mrkdwn": ``&``, ``<`` and ``>`` are escaped (so no ``<!channel>`` or
``<@U…>`` in alert text pings anyone), links are not unfurled, and Block Kit text objects are
``plain_text``. An approval request carries Approve / Deny buttons (``action_id``
``remediator_approve`` / ``remediator_deny``, the job id as ``value``), answered at
``POST /slack/interactivity`` (:mod:`receiver.web.slack`).

Errors become :class:`~receiver.errors.DeliveryFailed` naming the method, the HTTP status and
Slack's error code (never the token); ``ratelimited`` (HTTP 429) carries Slack's
``Retry-After`` as :attr:`DeliveryFailed.retry_after` where the room's next try honours it.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from receiver.comms.chat.base import RoomSpec, SyncBatch
from receiver.config.chat import SlackConfig
from receiver.errors import DeliveryFailed

APPROVE_ACTION, DENY_ACTION = "remediator_approve", "remediator_deny"
EVENT_TYPE = "remediator_message"
KEY_PREFIX = "remediator room key: "
TOPIC_LIMIT = 250
TEXT_LIMIT = 39_000
"""chat.postMessage truncates text past 40,000 characters."""
BLOCK_TEXT_LIMIT = 3000
LIST_PAGES = 20
HISTORY_LIMIT = 50


def mrkdwn_escape(text: str) -> str:
    """The three characters Slack asks to escape in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def approval_blocks(body: str, job_id: int) -> list[dict[str, Any]]:
    """An approval request: the plan, targets and risk as plain text, then the buttons."""
    text = body if len(body) <= BLOCK_TEXT_LIMIT else body[: BLOCK_TEXT_LIMIT - 1] + "\u2026"
    return [
        {"type": "section", "block_id": f"remediator_plan_{job_id}",
         "text": {"type": "plain_text", "text": text, "emoji": False}},
        {"type": "actions", "block_id": f"remediator_decide_{job_id}", "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "value": str(job_id),
             "style": "primary", "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY_ACTION, "value": str(job_id),
             "style": "danger", "text": {"type": "plain_text", "text": "Deny"}},
        ]},
    ]


class SlackBackend:
    name = "slack"
    reads_rooms = False
    """Slack comes to remediator (``/slack/interactivity``, ``/slack/events``): no sync."""

    def __init__(self, settings: SlackConfig, *, timeout: float | None = None) -> None:
        self.user_id = settings.bot_user_id
        self.base = settings.api_url
        seconds = settings.timeout.total_seconds() if timeout is None else timeout
        self._client = WebClient(token=settings.bot_token.reveal(), base_url=settings.api_url,
                                 timeout=max(1, int(seconds)), retry_handlers=[])

    # -- one request ----------------------------------------------------------------------
    def _call(self, method: str, body: dict[str, Any] | None = None, *,
              query: dict[str, Any] | None = None,
              ok_errors: tuple[str, ...] = ()) -> dict[str, Any]:
        try:
            if query is not None:
                answer = self._client.api_call(method, params=query)
            else:
                answer = self._client.api_call(method, json=body or {})
            data = answer.data
        except SlackApiError as exc:
            status = exc.response.status_code
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            code = str(data.get("error") or "")
            if code and code in ok_errors:
                return {"ok": False, "error": code}
            failed = DeliveryFailed(f"slack {method}: {status} {code or 'error'}".rstrip())
            if status == 429 or code == "ratelimited":
                failed.retry_after = _seconds(exc.response.headers.get("Retry-After")
                                              or exc.response.headers.get("retry-after"))
            raise failed from None
        except (SlackClientError, OSError, ValueError) as exc:
            raise DeliveryFailed(f"slack {method}: {type(exc).__name__}: "
                                 f"{str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise DeliveryFailed(f"slack {method}: the answer is not a JSON object")
        return data

    # -- the interface --------------------------------------------------------------------
    def create_room(self, spec: RoomSpec) -> str | None:
        name = spec.alias.replace(".", "-")[:80]  # Slack names: a-z 0-9 - _
        answer = self._call("conversations.create", {"name": name, "is_private": True},
                            ok_errors=("name_taken",))
        channel = answer.get("channel") if answer.get("ok") else None
        if isinstance(channel, dict) and isinstance(channel.get("id"), str):
            room_id = str(channel["id"])
            self._call("conversations.setPurpose",
                       {"channel": room_id, "purpose": KEY_PREFIX + spec.key})
            self.set_topic(room_id, spec.topic)
            return room_id
        return self._find(name, spec.key)

    def _find(self, name: str, key: str) -> str | None:
        """The channel ``name`` when its purpose carries ``key`` (made by an earlier try)."""
        cursor = ""
        for _ in range(LIST_PAGES):
            query: dict[str, Any] = {"types": "private_channel,public_channel", "limit": 200,
                                     "exclude_archived": "true"}
            if cursor:
                query["cursor"] = cursor
            page = self._call("conversations.list", query=query)
            for channel in page.get("channels") or []:
                if not isinstance(channel, dict) or channel.get("name") != name:
                    continue
                purpose = channel.get("purpose") or {}
                value = purpose.get("value") if isinstance(purpose, dict) else None
                if value == KEY_PREFIX + key and isinstance(channel.get("id"), str):
                    return str(channel["id"])
                return None
            meta = page.get("response_metadata") or {}
            cursor = str(meta.get("next_cursor") or "") if isinstance(meta, dict) else ""
            if not cursor:
                break
        return None

    def invite(self, room_id: str, user_id: str) -> None:
        self._call("conversations.invite", {"channel": room_id, "users": user_id},
                   ok_errors=("already_in_channel",))

    def send_text(self, room_id: str, txn_id: str, body: str, *, maybe_sent: bool = False,
                  approval_job: int | None = None) -> str:
        if maybe_sent:
            found = self._sent(room_id, txn_id)
            if found is not None:
                return found
        text = mrkdwn_escape(body)
        args: dict[str, Any] = {
            "channel": room_id, "text": text[:TEXT_LIMIT], "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {"event_type": EVENT_TYPE, "event_payload": {"txn": txn_id}},
        }
        if approval_job is not None:
            args["blocks"] = approval_blocks(body, approval_job)
        answer = self._call("chat.postMessage", args, ok_errors=("is_archived",))
        if answer.get("error") == "is_archived":
            return ""  # the room is closed: the message is dropped, not retried
        ts = answer.get("ts")
        if not isinstance(ts, str) or not ts:
            raise DeliveryFailed("slack chat.postMessage: the answer has no ts")
        return ts

    def _sent(self, room_id: str, txn_id: str) -> str | None:
        """The ts of a message of ours with ``txn_id`` among the channel's newest ones."""
        page = self._call("conversations.history",
                          query={"channel": room_id, "limit": HISTORY_LIMIT,
                                 "include_all_metadata": "true"},
                          ok_errors=("channel_not_found",))
        for message in page.get("messages") or []:
            if not isinstance(message, dict):
                continue
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") if isinstance(meta, dict) else None
            if (isinstance(payload, dict) and meta.get("event_type") == EVENT_TYPE
                    and payload.get("txn") == txn_id and isinstance(message.get("ts"), str)):
                return str(message["ts"])
        return None

    def pin(self, room_id: str, event_ids: list[str]) -> None:
        for ts in event_ids:
            self._call("pins.add", {"channel": room_id, "timestamp": ts},
                       ok_errors=("already_pinned",))

    def set_topic(self, room_id: str, topic: str) -> None:
        cut = topic if len(topic) <= TOPIC_LIMIT else topic[: TOPIC_LIMIT - 1] + "\u2026"
        self._call("conversations.setTopic", {"channel": room_id, "topic": cut})

    def archive(self, room_id: str) -> None:
        self._call("conversations.archive", {"channel": room_id},
                   ok_errors=("already_archived",))

    def post_ephemeral(self, room_id: str, user_id: str, body: str) -> None:
        """A message only ``user_id`` sees (the outcome of their click)."""
        self._call("chat.postEphemeral", {"channel": room_id, "user": user_id,
                                          "text": mrkdwn_escape(body)[:TEXT_LIMIT]})

    def sync(self, since: str | None, timeout: float) -> SyncBatch:
        return SyncBatch(next_batch=since or "", events=())


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(str(value))
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds <= 3600 else None
