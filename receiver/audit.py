"""The tamper-evident audit log: canonical entries and their hash chain (pure functions).

``hash = sha256(prev_hash || canonical JSON of the entry)`` where the canonical JSON has
sorted keys, no spaces, and times in UTC ISO-8601 with microseconds. The first entry's
``prev_hash`` is 64 zeros. Any edited, inserted or removed entry breaks the chain at or
right after it, and :func:`verify_chain` names the first entry that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical(entry: dict[str, Any]) -> str:
    body = {
        "seq": int(entry["seq"]),
        "at": _utc(entry["at"]),
        "actor": entry["actor"],
        "action": entry["action"],
        "subject": entry["subject"],
        "incident_id": entry.get("incident_id"),
        "details": entry.get("details") or {},
        "origin": entry.get("origin") or {},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utc(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def chain_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: int | None = None
    problem: str = ""


def verify_chain(entries: Iterable[dict[str, Any]]) -> ChainReport:
    """Walk entries in ``id`` order and report the first one that breaks the chain."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    for e in entries:
        checked += 1
        if int(e["seq"]) != expected_seq:
            what = "removed before it" if int(e["seq"]) > expected_seq else "inserted or reordered"
            problem = f"expected seq {expected_seq}, found {e['seq']}: an entry was {what}"
            return ChainReport(False, checked, int(e["seq"]), e.get("id"), problem)
        if e["prev_hash"] != prev_hash:
            return ChainReport(False, checked, int(e["seq"]), e.get("id"),
                               "prev_hash does not match the previous entry's hash")
        if chain_hash(prev_hash, e) != e["hash"]:
            return ChainReport(False, checked, int(e["seq"]), e.get("id"),
                               "content does not match its hash: the entry was altered")
        prev_hash, expected_seq = e["hash"], expected_seq + 1
    return ChainReport(True, checked)
