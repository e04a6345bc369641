"""The statements that differ between the store backends, chosen in one way.

Most of the store's SQL is written once for both backends. What each backend does its own
way as a *mechanism* (row locks, advisory locks, notifications, listening) is a capability
of the transaction (:class:`receiver.store.db.Tx`, :meth:`receiver.store.db.Database.listen`).
What remains are a few statements that one backend writes differently for speed or
because its catalog differs (the alert upsert, the report's duration arithmetic, the
audit log's trigger catalog): each is one function per backend, next to the code that uses
it, and the pair is declared once as a :class:`PerDialect`::

    _UPSERT = PerDialect(postgres=_upsert_alerts_pg, sqlite=_upsert_alerts_sqlite)
    rows = _UPSERT.of(tx)(tx, alerts, ...)

Every backend is a required keyword of :class:`PerDialect`: adding a backend to
:data:`DIALECTS` and to the constructor makes every declaration that lacks its variant fail
at import, so no backend runs another's statement through a default branch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from receiver.errors import StoreError

if TYPE_CHECKING:
    from receiver.store.db import Tx

T = TypeVar("T")

DIALECTS = ("postgres", "sqlite")
"""Every store backend, by its ``Database.dialect`` name."""


class PerDialect(Generic[T]):
    """One variant of something (a function, a SQL fragment) per store backend."""

    __slots__ = ("_by",)

    def __init__(self, *, postgres: T, sqlite: T) -> None:
        self._by: dict[str, T] = {"postgres": postgres, "sqlite": sqlite}

    def __getitem__(self, dialect: str) -> T:
        try:
            return self._by[dialect]
        except KeyError:
            raise StoreError(f"no variant for store backend {dialect!r}") from None

    def of(self, tx: Tx) -> T:
        """The variant for the backend of ``tx``."""
        return self[tx.dialect]
