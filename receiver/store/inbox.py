"""The inbox: the notifications as they were received (their raw body), read back in order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from receiver.store.repository import Repository, records


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
