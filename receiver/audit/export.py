"""Audit log export: JSON Lines (one entry a line, exactly what is hashed) and CSV.

An entry is an :class:`~receiver.store.audit.AuditEntry` record, or a mapping with its
fields (the store's ``audit()`` answer)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from receiver.store.audit import AuditEntry

Entry: TypeAlias = "AuditEntry | Mapping[str, Any]"

FIELDS = ("seq", "at", "actor", "action", "subject", "incident_id", "details", "origin",
          "prev_hash", "hash", "alg", "key_id")


def _plain(entry: Entry) -> dict[str, Any]:
    fields = entry if isinstance(entry, Mapping) else asdict(entry)
    out = {}
    for k in FIELDS:
        v = fields.get(k)
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


def to_jsonl(entries: Iterable[Entry]) -> str:
    return "".join(json.dumps(_plain(e), sort_keys=True, ensure_ascii=False) + "\n"
                   for e in entries)


def to_csv(entries: Iterable[Entry]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    for e in entries:
        row = _plain(e)
        cells = []
        for k in FIELDS:
            v = row[k]
            if isinstance(v, dict | list):
                v = json.dumps(v, sort_keys=True, ensure_ascii=False)
            text = "" if v is None else str(v)
            if text[:1] in ("=", "+", "-", "@"):
                text = "'" + text  # keep spreadsheet formulas inert
            cells.append(text)
        writer.writerow(cells)
    return buf.getvalue()
