"""POST /slack/interactivity: the Approve / Deny buttons of approval requests in Slack.

Order of checks, nothing decided unless all pass:

1. ``chat.slack`` configured (else 404);
2. size (413) and content type ``application/x-www-form-urlencoded`` (415);
3. Slack's signature (401 ``bad_signature``): ``X-Slack-Request-Timestamp`` within
   :data:`WINDOW` of now, and ``X-Slack-Signature`` equal, compared in constant time, to
   ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{raw body}`` keyed with the signing secret;
4. the same signature seen before (401 ``replayed``): each signed request counts once,
   across workers (recorded in the store's ``chat_inbound``);
5. the ``payload`` field parsed by :class:`BlockActions` (400 naming the field).

A button is then a decision on its job by the person whose ``people.users.<name>.slack``
is the clicker's user id, through :func:`receiver.people.approvals.decide_job`, the code
of the approval page (single use, N distinct approvers, the approving groups, expiry;
pause and maintenance windows still win when the job runs). A clicker that maps to nobody
is refused and audited (``approval.refused`` by ``chat:<user id>``); a person who may not
decide is refused and audited by ``decide_job``; both entries' origin carries the Slack
user id, the action id and the channel. The answer (200, JSON) and an ephemeral message in
the channel tell the clicker the outcome.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import structlog
from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from receiver.comms.chat.slack import APPROVE_ACTION, DENY_ACTION, SlackBackend
from receiver.errors import DecisionError, DeliveryFailed
from receiver.people import approvals
from receiver.web.errors import ApiError
from receiver.web.requests import field_errors
from receiver.web.services import services

bp = Blueprint("slack", __name__)
log = structlog.get_logger(__name__)

WINDOW = 5 * 60
"""Seconds a signed request stays valid (Slack's recommendation: five minutes)."""
MAX_FORM = 256 * 1024
EPHEMERAL_TIMEOUT = 1.0
"""Seconds the outcome message may take: Slack wants the answer within 3 s."""

_ID = r"^[A-Z0-9]{2,40}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlackUser(_Model):
    id: str = Field(pattern=_ID)


class SlackChannel(_Model):
    id: str = Field(pattern=_ID)


class SlackContainer(_Model):
    message_ts: str = Field(pattern=r"^[0-9]{1,12}\.[0-9]{1,9}$")


class SlackAction(_Model):
    action_id: str = Field(min_length=1, max_length=255)
    value: str = Field("", max_length=2000)
    action_ts: str = Field("", max_length=40)


class BlockActions(_Model):
    """The part of Slack's ``block_actions`` payload that a decision needs."""

    type: Literal["block_actions"]
    user: SlackUser
    channel: SlackChannel
    container: SlackContainer
    actions: list[SlackAction] = Field(min_length=1, max_length=25)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, sent: str | None, body: bytes,
           now: float) -> None:
    """Raise 401 unless ``sent`` is Slack's signature of ``body`` at a fresh ``timestamp``."""
    if not timestamp or not sent:
        raise ApiError(401, "bad_signature",
                       "X-Slack-Request-Timestamp and X-Slack-Signature are required")
    # Seconds since the epoch, as Slack sends them: ASCII digits only, so that int() never
    # reads a sign, spaces, underscores or other scripts' digits, and the number stays a
    # float's (a longer one overflowed the comparison below: a 500 to anyone).
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise ApiError(401, "bad_signature", "X-Slack-Request-Timestamp: not a number")
    at = int(timestamp)
    if abs(now - at) > WINDOW:
        raise ApiError(401, "bad_signature",
                       "X-Slack-Request-Timestamp: more than 5 minutes from now")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(),
                               sent.encode("utf-8", "replace")):
        raise ApiError(401, "bad_signature", "X-Slack-Signature does not match the body")


def _now() -> datetime:
    found: datetime = services().intake.clock()
    return found


def _payload(body: bytes) -> BlockActions:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_form", [{"field": "(form)",
                                              "message": "not a form body"}]) from None
    raw = (form.get("payload") or [""])[0]
    if not raw:
        raise ApiError(400, "invalid_form", [{"field": "payload", "message": "required"}])
    try:
        return BlockActions.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc, where="payload")
        for error in errors:
            if error["field"] != "payload":
                error["field"] = "payload." + error["field"]
        raise ApiError(400, "invalid_payload", errors) from exc


def signed_body(mimetype: str, limit: int = MAX_FORM) -> tuple[bytes, datetime]:
    """The body of this request and now, once checks 1-4 above have passed (raises the
    404, 413, 415 or 401 otherwise). Shared by every endpoint that Slack calls."""
    svc = services()
    slack = svc.config.chat.slack
    if slack is None:
        raise ApiError(404, "not_found", "Slack is not configured (chat.slack)")
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    if request.mimetype != mimetype:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be {mimetype}")
    body = request.get_data(cache=True)
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")
    now = _now()
    verify(slack.signing_secret.reveal(), request.headers.get("X-Slack-Request-Timestamp"),
           request.headers.get("X-Slack-Signature"), body, now.timestamp())
    sent = request.headers.get("X-Slack-Signature", "")
    with svc.store.unit() as uow:
        fresh = uow.chat.record_inbound(f"slack-signature:{sent[3:67]}", room_id="",
                                        sender="", job_id=None, action="request",
                                        outcome="received", now=now)
    if not fresh:
        raise ApiError(401, "replayed", "X-Slack-Signature: this request was handled already")
    return body, now


@bp.post("/slack/interactivity")
def interactivity() -> Response:
    body, now = signed_body("application/x-www-form-urlencoded")
    payload = _payload(body)
    outcomes = [_click(payload, action, now) for action in payload.actions]
    outcome = outcomes[0] if outcomes else ("ignored", "")
    return jsonify({"ok": outcome[0] in ("approved", "denied"), "outcome": outcome[0],
                    "text": outcome[1]})


def _click(payload: BlockActions, action: SlackAction, now: datetime) -> tuple[str, str]:
    """One button: (outcome, the sentence that tells the clicker)."""
    svc = services()
    config = svc.config
    if action.action_id not in (APPROVE_ACTION, DENY_ACTION):
        return "ignored", ""
    approve = action.action_id == APPROVE_ACTION
    user, channel = payload.user.id, payload.channel.id
    if config.chat.slack is not None and user == config.chat.slack.bot_user_id:
        return "ignored", ""
    with svc.store.unit(write=False) as uow:
        room = uow.chat.room_by_room_id(channel)
        target = uow.chat.message_by_event(payload.container.message_ts)
    if (room is None or target is None or target.kind != "job_awaiting_approval"
            or target.job_id is None or target.incident_id != room.incident_id
            or action.value != str(target.job_id)):
        return "ignored", "This button is not an approval request of remediator."
    job_id = target.job_id
    origin: dict[str, Any] = {"via": "slack", "chat_user": user, "action_id": action.action_id,
                              "event_id": action.action_ts or payload.container.message_ts,
                              "room_id": channel}
    person = config.people.person_of_chat("slack", user)
    bound = log.bind(job_id=job_id, chat_user=user, action_id=action.action_id)
    if person is None:
        with svc.store.unit() as uow:
            uow.chat.refuse(chat_user=user, action="approval.refused", subject=f"job:{job_id}",
                            incident_id=room.incident_id, code="unknown_chat_identity",
                            message=f"{user} is not mapped to any person ({action.action_id})",
                            origin=origin, now=now)
        bound.warning("slack_click_refused", code="unknown_chat_identity")
        outcome = ("refused:unknown_chat_identity",
                   f"Refused: your Slack user {user} is not mapped to a person of remediator.")
    else:
        try:
            approvals.decide_job(svc.store, config, job_id, approve=approve, user=person,
                                 reason=f"{'approved' if approve else 'denied'} in Slack",
                                 now=now, origin=origin)
        except DecisionError as exc:  # refused and audited by decide_job
            bound.warning("slack_click_refused", code=exc.code, user=person)
            outcome = (f"refused:{exc.code}", f"Refused for {person}: {str(exc)[:300]}")
        else:
            bound.info("slack_click", user=person, approve=approve)
            word = "approved" if approve else "denied"
            outcome = (word, f"Job #{job_id} {word} by {person}.")
    _tell(channel, user, outcome[1])
    return outcome


def _tell(channel: str, user: str, text: str) -> None:
    """An ephemeral message to the clicker; a failure is logged (the decision stands)."""
    slack = services().config.chat.slack
    if slack is None or not text:
        return
    try:
        SlackBackend(slack, timeout=EPHEMERAL_TIMEOUT).post_ephemeral(channel, user, text)
    except DeliveryFailed as exc:
        log.warning("slack_ephemeral_failed", error=str(exc))

