"""Notifications (phase 4): outbox rows -> configured channels, through apprise, with retries.

Nothing is sent in a web request. ``events.record`` writes an ``outbox`` row in the event's
transaction; a worker calls :func:`deliver_due`, which

1. gives deliveries whose sender died (lease ran out) back to ``pending``;
2. expands new outbox rows into one ``outbox_deliveries`` row per channel whose ``events``
   and ``severities`` match (the incident's severity), the channel's own or its audience's
   (``notifications.audiences``, see :mod:`receiver.config.notifications`);
3. claims due deliveries one at a time with a lease (a conditional UPDATE; ``SKIP LOCKED``
   on PostgreSQL), so that two workers never send the same delivery at once;
4. sends each through apprise with a timeout, then marks it ``delivered``, or schedules a
   retry with exponential backoff, or ``dropped`` once ``retry.max_attempts`` are used.

Delivery is at least once: a worker that dies after the channel accepted a message but
before it recorded that leaves the delivery to be sent again when its lease runs out.

Channel URLs hold tokens. They never reach a log line, a message, or ``last_error``: error
text is scrubbed of every part of the URL, then passed through ``logs.redact_value``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from receiver.comms import markup, stakeholder
from receiver.comms.apprise_send import (
    AppriseSender,
    BodyFormat,
    Message,
    scrub,
    secret_parts,
)
from receiver.config import Config, NotificationChannel, NotificationRetry, NotificationsConfig
from receiver.config.notifications import Audience
from receiver.errors import DeliveryFailed, StoreError
from receiver.incidents import event_kinds
from receiver.incidents.event_kinds import NotifyType, label_of, notify_type
from receiver.people import tokens
from receiver.runtime.logs import redact_value
from receiver.secrets import redactor_for
from receiver.store import Store, UnitOfWork
from receiver.store.outbox import MessageContext

log = structlog.get_logger(__name__)

EXPAND_BATCH = 500

# Each notified kind's apprise type, read from the one table of event kinds.
NOTIFY_TYPES: dict[str, NotifyType] = {
    kind.value: spec.notify for kind, spec in event_kinds.TABLE.items() if spec.notify
}



Sender = Callable[[str, NotificationChannel, Message], None]
"""``send(channel_name, channel, message)``: returns when the channel took the message,
raises :class:`DeliveryFailed` (or any exception) when it did not."""


# -- pure parts ---------------------------------------------------------------------------
def matching_channels(settings: NotificationsConfig, kind: str, severity: str,
                      detail: dict[str, Any] | None = None) -> list[str]:
    """Names of the channels that want an event of ``kind`` (with ``detail``: a state change
    to mitigated is ``mitigated`` to a channel with an audience) on an incident of
    ``severity``."""
    return [name for name in sorted(settings.channels)
            if settings.route(name).matches(kind, severity, detail)]


def backoff(attempt: int, retry: NotificationRetry) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): ``backoff_initial`` doubled
    each time, capped at ``backoff_max`` (tenacity's ``wait_exponential(multiplier=initial,
    max=max)``)."""
    initial, cap = retry.backoff_initial.total_seconds(), retry.backoff_max.total_seconds()
    return timedelta(seconds=min(cap, initial * 2.0 ** min(max(attempt - 1, 0), 62)))


def next_attempt_at(attempts: int, retry: NotificationRetry, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None when it is time to give up."""
    if attempts >= retry.max_attempts:
        return None
    return now + backoff(attempts, retry)


def link_base(config: Config) -> str:
    return (config.notifications.link_base or config.server.public_url).rstrip("/")


def incident_url(config: Config, incident_id: int) -> str:
    return f"{link_base(config)}/incidents/{incident_id}"


@dataclass(frozen=True)
class _Format:
    """How one body format writes literal text (the format's one escaping function of
    :mod:`receiver.comms.markup`), a link of ours, one of our own bold labels, a line break."""

    text: Callable[[Any], str]
    link: Callable[[str, Any], str]
    label: Callable[[str], str]
    newline: str = "\n"


def _plain_link(url: str, _label: Any) -> str:
    return url


FORMATS: dict[str, _Format] = {
    "text": _Format(text=lambda v: "" if v is None else str(v), link=_plain_link,
                    label=str),
    "markdown": _Format(text=markup.md_text, link=markup.md_link, label="**{}**".format,
                        newline="  \n"),
    "slack": _Format(text=markup.slack_text, link=markup.slack_link, label="*{}*".format),
    "html": _Format(text=markup.html_text, link=markup.html_link, label="<b>{}</b>".format,
                    newline="<br>\n"),
}
"""Body formats a channel may ask for (``notifications.channels.<name>.format``)."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def render(config: Config, ctx: MessageContext, *, body_format: BodyFormat = "text",
           approval_links: dict[str, str] | None = None,
           approval_state: str | None = None, audience: Audience | None = None) -> Message:
    """The message for one outbox row (``ctx`` from ``uow.outbox.message_context``).

    Every value from the incident goes through the format's one escaping function, after
    the config's secrets are redacted from it; the only links are the ones made here (the
    incident page and each approver's review page), so an alert can not forge one.
    """
    fmt = FORMATS[body_format]
    ctx = MessageContext(**redactor_for(config)(asdict(ctx)))
    text, label = fmt.text, fmt.label
    kind = str(ctx.kind)
    link = incident_url(config, int(ctx.incident_id))
    kind_type = notify_type(kind)
    if kind == "state_changed":
        kind_type = "success" if stakeholder.event_of(ctx) in stakeholder.OVER | {
            "mitigated"} else "info"
    if audience is not None and audience.message == "stakeholder":
        title, body, subject = stakeholder.render(ctx, audience, fmt, link,
                                                  plain=body_format == "text")
        return Message(title=str(redact_value(title)), body=str(redact_value(body)),
                       body_format=body_format, notify_type=kind_type,
                       subject=str(redact_value(subject)))
    # One line: a subject (or a chat title) never carries a line break from an alert.
    plain_title = stakeholder.one_line(f"[{ctx.severity}] {label_of(kind)}: {ctx.title}")
    ack = (f"acknowledged {_when(ctx.acknowledged_at)}" if ctx.acknowledged_at
           else f"acknowledge by {_when(ctx.ack_due_at)}")
    facts = [("Severity", str(ctx.severity)), ("State", str(ctx.incident_state)),
             ("SLA", ack)]
    plain = body_format == "text"
    lines = [text(ctx.message), ""]
    for name, value in facts:
        lines.append(f"{label(name + ':')} {text(value)}")
    lines.append(f"{label('Incident:')} "
                 + (link if plain else fmt.link(link, f"#{ctx.incident_id}")))
    if kind == "job_awaiting_approval":
        lines.append("")
        if approval_links:
            lines.append(label("Approve or deny")
                         + " (one link per approver; the page asks to confirm):")
            for user, url in sorted(approval_links.items()):
                lines.append(f"- {text(user)}: "
                             + fmt.link(url, f"review job #{ctx.job_id}"))
        elif approval_state and approval_state != "pending":
            lines.append(f"No longer awaiting approval: {text(approval_state)}.")
        else:
            lines.append("Review it on the incident page: " + fmt.link(link, link))
    # Delivery is at least once: the id lets a receiver drop a repeat.
    lines += ["", f"Notification id: {int(ctx.id)}"]
    body = fmt.newline.join(lines)
    # apprise puts the title into the body, unescaped, for services without a title of
    # their own: it is escaped like the body.
    title = text(plain_title)
    return Message(title=str(redact_value(title)), body=str(redact_value(body)),
                   body_format=body_format, notify_type=kind_type,
                   subject=str(redact_value(plain_title)))


# -- the outbox ---------------------------------------------------------------------------
def expand(uow: UnitOfWork, settings: NotificationsConfig, now: datetime) -> int:
    """Fan out up to one batch of new outbox rows; return how many rows were expanded."""
    messages = uow.outbox.unexpanded(limit=EXPAND_BATCH)
    for msg in messages:
        names = set(matching_channels(settings, msg.kind, msg.severity, msg.detail))
        # An escalation level names its own channels: they are told whatever their filters.
        names |= {c for c in (msg.detail or {}).get("channels", []) if c in settings.channels}
        for name in sorted(names):
            uow.outbox.add_delivery(msg.id, name, now=now)
        uow.outbox.mark_expanded(msg.id, now=now)
    return len(messages)


def _approval_links(uow: UnitOfWork, config: Config,
                    job_id: int | None) -> tuple[dict[str, str], str]:
    if job_id is None:
        return {}, "none"
    # An approval references its job (a foreign key; jobs are never deleted).
    approval = uow.approvals.for_job(job_id)
    if approval is None:
        return {}, "none"
    if approval.state != "pending":
        return {}, approval.state
    overrides = uow.oncall.overrides(live_at=datetime.now(UTC)) if config.oncall.roles else []
    return dict(tokens.approval_links(config, approval, overrides)), "pending"


def _message(store: Store, config: Config, outbox_id: int, name: str,
             channel: NotificationChannel) -> Message:
    with store.unit(write=False) as uow:
        ctx = uow.outbox.message_context(outbox_id)
        if ctx is None:
            raise DeliveryFailed(f"outbox row {outbox_id} is gone")
        links: dict[str, str] = {}
        state = None
        if ctx.kind == "job_awaiting_approval":
            links, state = _approval_links(uow, config, ctx.job_id)
    return render(config, ctx, body_format=channel.format, approval_links=links,
                  approval_state=state, audience=config.notifications.audience_of(name))


def _lease(settings: NotificationsConfig) -> timedelta:
    # apprise may make a few requests per message, each bounded by the socket timeouts.
    return max(timedelta(seconds=60), settings.timeout * 6)


def deliver_due(
    store: Store,
    config: Config,
    *,
    clock: Callable[[], datetime],
    worker_id: str,
    send: Sender | None = None,
    limit: int = 100,
) -> int:
    """Expand new outbox rows, then send up to ``limit`` due deliveries; return how many were
    delivered. Safe to call from any number of threads and processes at once."""
    settings = config.notifications
    retry = settings.retry
    now = clock()
    with store.unit() as uow:
        for gone in uow.outbox.release_expired(now=now, max_attempts=retry.max_attempts):
            log.warning("notification_lease_expired", outbox_id=gone.outbox_id,
                        channel=gone.channel, state=gone.state, attempts=gone.attempts)
    for _ in range(1000):
        with store.unit() as uow:
            if expand(uow, settings, clock()) < EXPAND_BATCH:
                break

    sender = send if send is not None else AppriseSender(settings.timeout.total_seconds())
    lease = _lease(settings)
    delivered = 0
    for _ in range(limit):
        now = clock()
        with store.unit() as uow:
            claimed = uow.outbox.claim(worker=worker_id, now=now, until=now + lease)
        if claimed is None:
            break
        outbox_id, name, attempts = claimed.outbox_id, claimed.channel, claimed.attempts
        bound = log.bind(outbox_id=outbox_id, channel=name, attempt=attempts, worker=worker_id)
        channel = settings.channels.get(name)
        error: str | None = None
        if channel is None:
            error = f"channel {name} is no longer configured"
        else:
            secrets = secret_parts(channel.url.reveal())
            try:
                sender(name, channel, _message(store, config, outbox_id, name, channel))
            except DeliveryFailed as exc:
                error = scrub(str(exc), secrets)
            except StoreError:
                raise  # the store is down: the lease runs out and the delivery is retried
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the others
                error = scrub(f"{type(exc).__name__}: {exc}", secrets)
        now = clock()
        with store.unit() as uow:
            if error is None:
                if uow.outbox.delivered(outbox_id, name, worker=worker_id, now=now):
                    delivered += 1
                    bound.info("notification_delivered")
                else:
                    bound.warning("notification_lease_lost")
                continue
            retry_at = None if channel is None else next_attempt_at(attempts, retry, now)
            moved = uow.outbox.failed(outbox_id, name, worker=worker_id, error=error,
                                      now=now, retry_at=retry_at)
        if moved is None:
            bound.warning("notification_lease_lost", error=error)
        elif retry_at is None:
            bound.error("notification_dropped", error=error)
        else:
            bound.warning("notification_failed", error=error, retry_at=retry_at.isoformat())
    return delivered
