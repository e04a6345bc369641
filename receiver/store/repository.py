"""What every repository is: a transaction, and frozen records made from its rows.

A repository (one per aggregate, in that aggregate's module of this package) holds the
:class:`~receiver.store.db.Tx` of the unit of work it belongs to and turns every row it reads
into a frozen dataclass with :func:`record`; code outside the store never sees a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from receiver.store.db import Tx

R = TypeVar("R")


class Repository:
    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def record(cls: type[R], row: Mapping[str, Any]) -> R:
    """``cls`` (a frozen dataclass) from the row's columns of the same names; KeyError when
    the row lacks one, so that a query and its record cannot drift apart silently."""
    return cls(**{name: row[name] for name in _names(cls)})


def maybe(cls: type[R], row: Mapping[str, Any] | None) -> R | None:
    return None if row is None else record(cls, row)


def records(cls: type[R], rows: Iterable[Mapping[str, Any]]) -> list[R]:
    return [record(cls, row) for row in rows]
