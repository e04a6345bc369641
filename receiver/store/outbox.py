"""The notifications outbox: expansion into per-channel deliveries, leases, outcomes.

``outbox`` rows are written by ``events.record`` in the event's transaction. Each is expanded
once into ``outbox_deliveries`` (one row per matching channel; the primary key makes a second
expansion a no-op). A delivery moves through a small state table, each move a conditional
UPDATE so that two workers never hold the same delivery:

    pending --claim--> sending --delivered--> delivered
       ^                  |  \\--retry------> pending (later next_attempt_at)
       |                  |   \\--give up---> dropped
       \\--lease expired--/
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.db import Row, Tx
from receiver.store.repository import Repository, maybe, records


@dataclass(frozen=True)
class OutboxMessage:
    """An outbox row not yet expanded, with its incident's severity."""

    id: int
    kind: str
    incident_id: int
    detail: dict[str, Any] | None
    severity: str


@dataclass(frozen=True)
class MessageContext:
    """An outbox row with what a message needs from its incident."""

    id: int
    kind: str
    incident_id: int
    job_id: int | None
    message: str
    detail: dict[str, Any] | None
    created_at: datetime
    title: str
    severity: str
    incident_state: str
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    group_labels: dict[str, str] | None = None



@dataclass(frozen=True)
class Delivery:
    """One outbox row's delivery to one channel."""

    outbox_id: int
    channel: str
    state: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None

DELIVERY_COLUMNS = ("outbox_id, channel, state, attempts, next_attempt_at, lease_owner,"
                    " lease_expires_at, last_error, delivered_at")

_CLAIM = f"""UPDATE outbox_deliveries
       SET state = 'sending', lease_owner = :worker, lease_expires_at = :until,
           attempts = attempts + 1
     WHERE outbox_id = :outbox_id AND channel = :channel AND state = 'pending'
       AND next_attempt_at <= :now
 RETURNING {DELIVERY_COLUMNS}"""  # noqa: S608 - constant columns


def unexpanded(tx: Tx, *, limit: int) -> list[Row]:
    """Outbox rows not yet fanned out, oldest first, with their incident's severity."""
    return tx.lock_rows("outbox o JOIN incidents i ON i.id = o.incident_id",
                        "o.expanded_at IS NULL",
                        columns="o.id, o.kind, o.incident_id, o.detail, i.severity",
                        order_by="o.id", limit=limit, skip_locked=True, of="o")


def add_delivery(tx: Tx, outbox_id: int, channel: str, *, now: datetime) -> None:
    tx.execute(
        "INSERT INTO outbox_deliveries (outbox_id, channel, state, attempts, next_attempt_at)"
        " VALUES (:o, :c, 'pending', 0, :now) ON CONFLICT (outbox_id, channel) DO NOTHING",
        {"o": outbox_id, "c": channel, "now": now},
    )


def mark_expanded(tx: Tx, outbox_id: int, *, now: datetime) -> None:
    tx.execute(
        "UPDATE outbox SET expanded_at = :now WHERE id = :id AND expanded_at IS NULL",
        {"id": outbox_id, "now": now},
    )


def release_expired(tx: Tx, *, now: datetime, max_attempts: int) -> list[Row]:
    """Deliveries whose sender's lease ran out go back to ``pending`` (due at once), or to
    ``dropped`` when they have used up their attempts. Returns the rows moved."""
    dropped = tx.fetchall(
        f"""UPDATE outbox_deliveries SET state = 'dropped', lease_owner = NULL,
                  lease_expires_at = NULL,
                  last_error = COALESCE(last_error || '; ', '') || 'lease expired while sending'
            WHERE state = 'sending' AND lease_expires_at <= :now AND attempts >= :max
        RETURNING {DELIVERY_COLUMNS}""",  # noqa: S608 - constant columns
        {"now": now, "max": max_attempts},
    )
    pending = tx.fetchall(
        f"""UPDATE outbox_deliveries SET state = 'pending', lease_owner = NULL,
                  lease_expires_at = NULL, next_attempt_at = :now,
                  last_error = 'lease expired while sending (the message may have gone out)'
            WHERE state = 'sending' AND lease_expires_at <= :now
        RETURNING {DELIVERY_COLUMNS}""",  # noqa: S608 - constant columns
        {"now": now},
    )
    return dropped + pending


def claim(tx: Tx, *, worker: str, now: datetime, until: datetime) -> Row | None:
    """Lease the delivery that has been due longest to ``worker``; None when nothing is due."""
    for _ in range(3):  # the conditional UPDATE can lose to another worker: pick again
        pick = tx.lock_row("outbox_deliveries", "state = 'pending' AND next_attempt_at <= :now",
                           {"now": now}, columns="outbox_id, channel",
                           order_by="next_attempt_at, outbox_id, channel", limit=1,
                           skip_locked=True)
        if pick is None:
            return None
        row = tx.fetchone(_CLAIM, {**pick, "worker": worker, "now": now, "until": until})
        if row is not None:
            return row
    return None


def message_context(tx: Tx, outbox_id: int) -> Row | None:
    """The outbox row with what a message needs from its incident."""
    return tx.fetchone(
        "SELECT o.id, o.kind, o.incident_id, o.job_id, o.message, o.detail, o.created_at,"
        " i.title, i.severity, i.state AS incident_state, i.ack_due_at, i.acknowledged_at,"
        " i.group_labels"
        " FROM outbox o JOIN incidents i ON i.id = o.incident_id WHERE o.id = :id",
        {"id": outbox_id},
    )


def delivered(tx: Tx, outbox_id: int, channel: str, *, worker: str, now: datetime) -> bool:
    """sending -> delivered, only by the lease holder. False if the lease was lost."""
    row = tx.fetchone(
        "UPDATE outbox_deliveries SET state = 'delivered', delivered_at = :now,"
        " lease_owner = NULL, lease_expires_at = NULL"
        " WHERE outbox_id = :o AND channel = :c AND state = 'sending' AND lease_owner = :w"
        " RETURNING outbox_id",
        {"o": outbox_id, "c": channel, "w": worker, "now": now},
    )
    return row is not None


def failed(tx: Tx, outbox_id: int, channel: str, *, worker: str, error: str, now: datetime,
           retry_at: datetime | None) -> Row | None:
    """sending -> pending, due at ``retry_at``; or -> dropped when ``retry_at`` is None. Only
    the lease holder moves it. Returns the row after the move, or None if the lease was lost."""
    return tx.fetchone(
        f"""UPDATE outbox_deliveries SET state = :state, next_attempt_at = :next,
                  last_error = :err, lease_owner = NULL, lease_expires_at = NULL
            WHERE outbox_id = :o AND channel = :c AND state = 'sending' AND lease_owner = :w
        RETURNING {DELIVERY_COLUMNS}""",  # noqa: S608 - constant columns
        {"o": outbox_id, "c": channel, "w": worker, "err": error,
         "next": retry_at if retry_at is not None else now,
         "state": "pending" if retry_at is not None else "dropped"},
    )


def deliveries(tx: Tx, outbox_id: int | None = None) -> list[Row]:
    """Delivery rows, of one outbox row or all, in outbox then channel order."""
    if outbox_id is None:
        return tx.fetchall(
            f"SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries ORDER BY outbox_id, channel"  # noqa: S608 - constant columns
        )
    return tx.fetchall(
        f"SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries WHERE outbox_id = :o"  # noqa: S608 - constant columns
        " ORDER BY channel",
        {"o": outbox_id},
    )


class OutboxRepository(Repository):
    """The notifications outbox and its per-channel deliveries."""

    def unexpanded(self, *, limit: int) -> list[OutboxMessage]:
        """Outbox rows not yet fanned out, oldest first, locked (others' skipped)."""
        return records(OutboxMessage, unexpanded(self.tx, limit=limit))

    def add_delivery(self, outbox_id: int, channel: str, *, now: datetime) -> None:
        add_delivery(self.tx, outbox_id, channel, now=now)

    def mark_expanded(self, outbox_id: int, *, now: datetime) -> None:
        mark_expanded(self.tx, outbox_id, now=now)

    def release_expired(self, *, now: datetime, max_attempts: int) -> list[Delivery]:
        return records(Delivery, release_expired(self.tx, now=now, max_attempts=max_attempts))

    def claim(self, *, worker: str, now: datetime, until: datetime) -> Delivery | None:
        return maybe(Delivery, claim(self.tx, worker=worker, now=now, until=until))

    def message_context(self, outbox_id: int) -> MessageContext | None:
        return maybe(MessageContext, message_context(self.tx, outbox_id))

    def delivered(self, outbox_id: int, channel: str, *, worker: str, now: datetime) -> bool:
        return delivered(self.tx, outbox_id, channel, worker=worker, now=now)

    def failed(self, outbox_id: int, channel: str, *, worker: str, error: str, now: datetime,
               retry_at: datetime | None) -> Delivery | None:
        return maybe(Delivery, failed(self.tx, outbox_id, channel, worker=worker, error=error,
                                      now=now, retry_at=retry_at))

    def deliveries(self, outbox_id: int | None = None) -> list[Delivery]:
        return records(Delivery, deliveries(self.tx, outbox_id))
