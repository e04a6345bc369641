"""POST /slack/events: Slack's Events API, the ``!`` commands written in an incident channel.

The request passes the checks of ``POST /slack/interactivity`` first, by the same code
(:func:`receiver.web.slack.signed_body`: ``chat.slack`` configured, size, content type
``application/json``, the v0 signature with a fresh timestamp, a signed request counted
once), then the JSON body:

- ``url_verification``: answered with its ``challenge`` (Slack's handshake when the request
  URL is set);
- ``event_callback`` with a ``message`` event: a message by a person (no ``subtype``, so no
  edit, deletion or join, and no ``bot_id``) that starts with ``!`` is handled once per
  ``event_id`` (recorded in the store's ``chat_inbound`` before anything is done, so a retry
  of Slack's, or the same event on another worker, does nothing), by the code that handles
  Matrix rooms (:func:`receiver.comms.chat.inbound.handle`): in an incident's channel only,
  as the person whose ``people.users.<name>.slack`` is the sender, with the pages' checks; a
  sender mapped to nobody is refused and audited (``chat.refused`` / ``approval.refused`` by
  ``chat:<user id>``);
- anything else (other event types, other envelope types) is acknowledged and ignored.

Slack wants the answer within 3 s: the work is a few store transactions (replies are queued
for the chat service to post), so it is done in the request and the answer follows it.
A body that is not the documented shape gets a 400 naming the field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

import structlog
from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from receiver.comms.chat import inbound
from receiver.comms.chat.base import Inbound
from receiver.comms.chat.slack import SlackBackend
from receiver.web.errors import ApiError
from receiver.web.requests import field_error, field_errors
from receiver.web.services import services
from receiver.web.slack import signed_body

bp = Blueprint("slack_events", __name__)
log = structlog.get_logger(__name__)

MAX_EVENT = 256 * 1024
_ID = r"^[A-Z0-9]{2,40}$"
_MENTION = re.compile(r"<@([A-Z0-9]{2,40})(?:\|[^>]{0,80})?>")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UrlVerification(_Model):
    type: Literal["url_verification"]
    challenge: str = Field(min_length=1, max_length=500)


class EventCallback(_Model):
    type: Literal["event_callback"]
    event_id: str = Field(pattern=r"^[A-Za-z0-9]{2,64}$")
    event: dict[str, Any]


class MessageEvent(_Model):
    """The fields of Slack's ``message`` event that a command needs."""

    type: Literal["message"]
    channel: str = Field(pattern=_ID)
    user: str | None = Field(None, pattern=_ID)
    text: str = Field("", max_length=40_000)
    subtype: str | None = Field(None, max_length=100)
    bot_id: str | None = Field(None, max_length=100)
    ts: str = Field("", max_length=40)


def _invalid(exc: ValidationError, prefix: str) -> ApiError:
    errors = field_errors(exc, where=prefix or "(body)")
    if prefix:
        for error in errors:
            if error["field"] != prefix:
                error["field"] = error["loc"] = f"{prefix}.{error['field']}"
    return ApiError(400, "invalid_payload", errors)


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "invalid_json", [field_error("(body)", "not JSON")]) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_payload", [field_error("(body)", "not a JSON object")])
    if not isinstance(data.get("type"), str):
        raise ApiError(400, "invalid_payload", [field_error("type", "a string is required")])
    return data


def command_text(text: str, people: dict[str, str]) -> str:
    """Slack's message text as written: its three escapes undone, and a mention of a
    mapped person (``<@U012ABC>``) as that person's name (``!assign @alice`` -> ``alice``)."""
    named = _MENTION.sub(lambda m: people.get(m.group(1), m.group(1)), text)
    return named.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@bp.post("/slack/events")
def events() -> Response:
    body, now = signed_body("application/json", MAX_EVENT)
    data = _envelope(body)
    kind = data["type"]
    if kind == "url_verification":
        try:
            check = UrlVerification.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc, "") from exc
        return jsonify({"challenge": check.challenge})
    if kind != "event_callback":
        return jsonify({"ok": True, "outcome": "ignored"})
    try:
        callback = EventCallback.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, "") from exc
    if callback.event.get("type") != "message":
        return jsonify({"ok": True, "outcome": "ignored"})
    try:
        message = MessageEvent.model_validate(callback.event)
    except ValidationError as exc:
        raise _invalid(exc, "event") from exc
    return jsonify({"ok": True, "outcome": _message(callback.event_id, message, now)})


def _message(event_id: str, message: MessageEvent, now: datetime) -> str:
    svc = services()
    slack = svc.config.chat.slack
    assert slack is not None  # noqa: S101 - signed_body answered 404 otherwise
    if (message.subtype is not None or message.bot_id is not None or message.user is None
            or message.user == slack.bot_user_id or not message.text.lstrip().startswith("!")):
        return "ignored"  # edits, deletions, joins, bots (us too), and plain talk
    with svc.store.unit() as uow:
        fresh = uow.chat.record_inbound(f"slack-event:{event_id}", room_id=message.channel,
                                        sender=message.user, job_id=None, action="event",
                                        outcome="received", now=now)
    if not fresh:
        return "duplicate"
    people = {p.slack: name for name, p in svc.config.people.users.items() if p.slack}
    event = Inbound(room_id=message.channel, event_id=event_id, sender=message.user,
                    kind="text", body=command_text(message.text, people))
    outcome = inbound.handle(svc.store, svc.config, SlackBackend(slack), event, now)
    log.info("slack_event", event_id=event_id, chat_user=message.user,
             outcome=outcome or "ignored")
    return outcome or "ignored"
