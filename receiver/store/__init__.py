"""The store: one interface over SQLite (embedded default) and PostgreSQL (production).

``Store`` is what the rest of the service uses: :meth:`Store.unit` opens a unit of work (one
transaction with a repository per aggregate, see :mod:`receiver.store.unit`), and a few
methods answer whole questions in a transaction of their own. SQL lives in this package
only, one module per aggregate, written once for both backends (see ``db``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.audit.chain import AuditKey, ChainReport, verify_chain
from receiver.errors import StoreConflict
from receiver.secrets import Redactor
from receiver.store import audit as _audit
from receiver.store import incident_views as _incidents
from receiver.store.audit import AuditFilter
from receiver.store.db import Database, Listener, open_database
from receiver.store.ingest import ingest as _ingest
from receiver.store.migrations import migrate as _migrate
from receiver.store.migrations import pending as _pending
from receiver.store.records import IncidentFilter, IngestBatch, IngestResult
from receiver.store.unit import UnitOfWork

__all__ = ["AuditFilter", "Store", "open_store", "IncidentFilter", "IngestBatch", "IngestResult",
           "UnitOfWork"]


class Store:
    def __init__(self, db: Database, *, audit_key: AuditKey | None = None,
                 checkpoint_dir: Path | None = None) -> None:
        """``audit_key`` HMAC-chains the audit entries this store appends and checks them;
        ``checkpoint_dir`` holds the signed checkpoints that verification compares with."""
        self.db = db
        self.db.audit_key = audit_key
        self.audit_key = audit_key
        self.checkpoint_dir = checkpoint_dir

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def unit(self, *, write: bool = True) -> Iterator[UnitOfWork]:
        """One unit of work: a transaction (read-only with ``write=False``) and its
        repositories; it commits when the block ends and rolls back when it raises."""
        with self.db.transaction(write=write) as tx:
            yield UnitOfWork(tx)

    def migrate(self) -> list[str]:
        return _migrate(self.db)

    def pending_migrations(self) -> list[str]:
        return _pending(self.db)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a query."""
        with self.db.transaction(write=False) as tx:
            tx.fetchone("SELECT 1 AS ok")

    def probe_commit(self) -> None:
        """Raise StoreUnavailable unless the store can commit now (see
        :meth:`~receiver.store.db.Database.probe_commit`; cached briefly)."""
        self.db.probe_commit()

    def ingest(self, batch: IngestBatch) -> IngestResult:
        """One intake transaction, retried (up to 3 times, briefly) when PostgreSQL picks
        it as a deadlock victim or a serialization failure; a store that is down still
        answers StoreUnavailable at once, for the webhook's 503."""
        for attempt in range(3):
            try:
                with self.db.transaction() as tx:
                    return _ingest(tx, batch)
            except StoreConflict:
                if attempt == 2:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def list_incidents(self, f: IncidentFilter) -> list[dict[str, Any]]:
        """The incident list's read model (see :mod:`receiver.store.incident_views`)."""
        with self.db.transaction(write=False) as tx:
            return _incidents.list_incidents(tx, f)

    def get_incident(self, incident_id: int) -> dict[str, Any] | None:
        """The API's JSON body of one incident; code that reads an incident's parts uses
        ``uow.incidents.detail(incident_id)``, a record."""
        with self.db.transaction(write=False) as tx:
            return _incidents.get_incident(tx, incident_id)

    def audit(self, f: AuditFilter) -> list[dict[str, Any]]:
        with self.db.transaction(write=False) as tx:
            return _audit.query(tx, f)

    def verify_audit(self, step: Callable[[int], None] | None = None) -> ChainReport:
        """The chain checked with the audit key, against every signed checkpoint in the
        checkpoint directory (read first, so that a newer one cannot race the walk), and
        the append-only triggers read from the catalog. ``step(1)`` is called for each
        entry walked (a progress bar's update)."""
        from receiver.audit.checkpoints import read_checkpoints

        found = (read_checkpoints(self.checkpoint_dir, self.audit_key)
                 if self.checkpoint_dir is not None and self.audit_key is not None else None)
        with self.db.transaction(write=False) as tx:
            problems = [*(found.problems if found else ()), *_audit.trigger_problems(tx)]
            notes = found.notes if found else ("no checkpoint directory: a deleted tail "
                                               "cannot be detected",)
            rows = _audit.walk(tx)
            if step is not None:
                rows = _stepped(rows, step)
            return verify_chain(rows, self.audit_key,
                                found.checkpoints if found else (), problems, notes,
                                locate=lambda seq: _audit.row_id(tx, seq))

    def audit_head(self) -> _audit.Head:
        with self.db.transaction(write=False) as tx:
            return _audit.head(tx)

    def redact_with(self, redactor: Redactor) -> None:
        """Cut ``redactor``'s secrets (with those it already had) from every timeline event
        and audit entry this store writes."""
        self.db.redactor = self.db.redactor.merged(redactor)

    def listen(self, channel: str) -> Listener:
        """A listener woken by the commits that notify ``channel`` (see
        :meth:`receiver.store.db.Database.listen`); close it when done."""
        return self.db.listen(channel)

    def maintain(self) -> int:
        """The backend's periodic upkeep (SQLite: checkpoint the WAL), bounded."""
        return self.db.maintain()

    def close(self) -> None:
        self.db.close()


def open_store(url: str, *, pool_min: int = 1, pool_max: int = 10, timeout: float = 3.0,
               audit_key: AuditKey | None = None, checkpoint_dir: Path | None = None) -> Store:
    return Store(open_database(url, pool_min=pool_min, pool_max=pool_max, timeout=timeout),
                 audit_key=audit_key, checkpoint_dir=checkpoint_dir)


def _stepped(rows: Iterator[Any], step: Callable[[int], None]) -> Iterator[Any]:
    for row in rows:
        step(1)
        yield row
