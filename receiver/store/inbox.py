"""The inbox: the notifications as they were received (their raw body), written by the
intake transaction and read back in order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from receiver.store.db import Row, Tx
from receiver.store.dialects import PerDialect
from receiver.store.records import IngestBatch
from receiver.store.repository import Repository, records

_NOTIFICATION_COLUMNS = """INSERT INTO notifications (digest, receiver, group_key, status,
        external_url, alert_count, body, first_received_at, last_received_at)"""
_NOTIFICATION_VALUES = """:digest, :receiver, :group_key, :status, :external_url,
        :alert_count, :body, :now, :now"""
_NOTIFICATION_CONFLICT = """ON CONFLICT (digest) DO UPDATE
           SET deliveries = notifications.deliveries + 1,
               last_received_at = excluded.last_received_at
        RETURNING id, deliveries"""


def _record_notification_pg(tx: Tx, batch: IngestBatch) -> Row:
    """The notification's row, in the statement that takes the key's advisory lock."""
    return _record_notification(
        tx, batch,
        "WITH turn AS (SELECT pg_advisory_xact_lock(hashtextextended(:key, 7)))"  # noqa: S608 - constant clauses, no values
        f" {_NOTIFICATION_COLUMNS} SELECT {_NOTIFICATION_VALUES} FROM turn"
        f" {_NOTIFICATION_CONFLICT}")


def _record_notification_sqlite(tx: Tx, batch: IngestBatch) -> Row:
    """The notification's row; the write transaction already is the key's turn."""
    row = _record_notification(
        tx, batch, f"{_NOTIFICATION_COLUMNS} VALUES ({_NOTIFICATION_VALUES})"
                   f" {_NOTIFICATION_CONFLICT}")
    tx.advisory_lock(batch.incident.key)
    return row


def _record_notification(tx: Tx, batch: IngestBatch, sql: str) -> Row:
    row = tx.fetchone(
        sql,
        {
            "key": batch.incident.key,
            "digest": batch.digest,
            "receiver": batch.receiver,
            "group_key": batch.group_key,
            "status": batch.status,
            "external_url": batch.external_url,
            "alert_count": len(batch.alerts),
            "body": batch.body,
            "now": batch.received_at,
        },
    )
    assert row is not None  # noqa: S101 - INSERT ... RETURNING always yields a row
    return row


_RECORD = PerDialect(postgres=_record_notification_pg, sqlite=_record_notification_sqlite)


def record(tx: Tx, batch: IngestBatch) -> Row:
    """The notification's row (``id``, ``deliveries``: more than 1 for a repeat delivery of
    the same content), with the incident key's turn taken: the transaction holds the key's
    advisory lock from here on."""
    return _RECORD.of(tx)(tx, batch)

@dataclass(frozen=True)
class StoredNotification:
    id: int
    receiver: str
    group_key: str
    status: str
    body: str
    first_received_at: datetime


class InboxRepository(Repository):
    """Stored notifications, oldest first."""

    def count_since(self, since: datetime) -> int:
        row = self.tx.fetchone("SELECT COUNT(*) AS n FROM notifications"
                               " WHERE first_received_at >= :since", {"since": since})
        return int(row["n"]) if row else 0

    def since(self, since: datetime, *, batch: int = 500) -> Iterator[StoredNotification]:
        """Every notification first received at or after ``since``, in batches by id."""
        after = 0
        while True:
            rows = self.tx.fetchall(
                "SELECT id, receiver, group_key, status, body, first_received_at"
                " FROM notifications WHERE id > :after AND first_received_at >= :since"
                " ORDER BY id LIMIT :limit", {"after": after, "since": since, "limit": batch})
            if not rows:
                return
            yield from records(StoredNotification, rows)
            after = rows[-1]["id"]
