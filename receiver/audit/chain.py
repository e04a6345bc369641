"""The tamper-evident audit log: canonical entries, their keyed chain, signed checkpoints
(pure functions, no I/O).

Each entry is chained to the one before it::

    hash = HMAC-SHA256(audit key, prev_hash || canonical JSON of the entry)      (alg hmac-sha256)
    hash = SHA-256(prev_hash || canonical JSON of the entry)                     (alg sha256)

The canonical JSON has sorted keys, no spaces, and times in UTC ISO-8601 with microseconds;
a keyed entry's canonical JSON also names its ``alg`` and ``key_id``. The first entry's
``prev_hash`` is 64 zeros. ``sha256`` entries are the ones written before the chain was
keyed (or by a library caller that opened the store without a key): they still verify as
plain SHA-256, but none may follow a keyed entry, nor come after the ``legacy_until``
sequence that a signed checkpoint recorded. Without the key, nobody can recompute a keyed
hash, so editing, inserting, deleting or re-hashing entries breaks the chain at or right
after the first changed entry. A *checkpoint* is the head of the chain (sequence, hash,
time) signed with the same key and kept outside the database: cutting the tail of the
chain, or rewriting it wholesale, no longer matches the latest checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
KEYED = "hmac-sha256"
LEGACY = "sha256"
CHECKPOINT_KIND = "remediator.audit.checkpoint"
_CHECKPOINT_DOMAIN = b"remediator.audit.checkpoint.v1\n"
_KEY_ID_DOMAIN = b"remediator.audit.key-id.v1"


class AuditKey:
    """The chain's HMAC key. Never printed, never stored in the database; ``id`` (a short
    HMAC of a fixed string) tells which key signed an entry without revealing it."""

    __slots__ = ("_base", "id")

    def __init__(self, secret: bytes | str) -> None:
        raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(raw) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self._base = hmac.new(raw, digestmod=hashlib.sha256)  # keyed pads computed once
        self.id = self.mac(_KEY_ID_DOMAIN)[:16]

    def mac(self, data: bytes) -> str:
        h = self._base.copy()
        h.update(data)
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"AuditKey(id={self.id})"

    __str__ = __repr__


def canonical(entry: Mapping[str, Any]) -> str:
    body: dict[str, Any] = {
        "seq": int(entry["seq"]),
        "at": _utc(entry["at"]),
        "actor": entry["actor"],
        "action": entry["action"],
        "subject": entry["subject"],
        "incident_id": entry.get("incident_id"),
        "details": entry.get("details") or {},
        "origin": entry.get("origin") or {},
    }
    if (entry.get("alg") or LEGACY) != LEGACY:
        body["alg"] = entry["alg"]
        body["key_id"] = entry.get("key_id")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utc(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def chain_hash(prev_hash: str, entry: Mapping[str, Any], key: AuditKey | None = None) -> str:
    """The entry's hash: HMAC with ``key`` for a keyed entry, plain SHA-256 for a legacy one."""
    data = (prev_hash + canonical(entry)).encode("utf-8")
    if (entry.get("alg") or LEGACY) == LEGACY:
        return hashlib.sha256(data).hexdigest()
    if key is None:
        raise ValueError("a keyed audit entry needs the audit key")
    return key.mac(data)


# -- checkpoints ------------------------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "at ``at`` the chain's head was ``seq`` with ``hash``"."""

    seq: int
    hash: str
    at: str
    legacy_until: int
    reason: str
    process: str
    name: str = ""  # where it was read from (file name), for messages


def sign_checkpoint(key: AuditKey, *, seq: int, hash: str, legacy_until: int,  # noqa: A002
                    at: datetime, reason: str, process: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": CHECKPOINT_KIND,
        "v": 1,
        "seq": int(seq),
        "hash": hash,
        "legacy_until": int(legacy_until),
        "at": _utc(at),
        "reason": reason,
        "process": process,
        "key_id": key.id,
    }
    body["mac"] = key.mac(_CHECKPOINT_DOMAIN + _checkpoint_bytes(body))
    return body


def _checkpoint_bytes(body: Mapping[str, Any]) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "mac"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def open_checkpoint(key: AuditKey, data: Any, name: str = "") -> Checkpoint:
    """Check a checkpoint's signature and shape; ValueError names what is wrong."""
    if not isinstance(data, dict) or data.get("kind") != CHECKPOINT_KIND:
        raise ValueError("not an audit checkpoint")
    mac = data.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(
            mac, key.mac(_CHECKPOINT_DOMAIN + _checkpoint_bytes(data))):
        if data.get("key_id") != key.id:
            raise ValueError(f"signed with another key (key id {data.get('key_id')!r}, "
                             f"this key is {key.id})")
        raise ValueError("signature does not match: the checkpoint was forged or edited")
    try:
        return Checkpoint(seq=int(data["seq"]), hash=str(data["hash"]), at=str(data["at"]),
                          legacy_until=int(data["legacy_until"]), reason=str(data["reason"]),
                          process=str(data["process"]), name=name)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed checkpoint: {exc}") from exc


# -- verification ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_id: int | None = None
    problem: str = ""
    problems: tuple[str, ...] = ()
    head_seq: int = 0
    head_hash: str = GENESIS
    keyed: int = 0
    legacy: int = 0
    checkpoint: Checkpoint | None = None
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "ok": self.ok, "checked": self.checked, "first_bad_seq": self.first_bad_seq,
            "problem": self.problem, "problems": list(self.problems),
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "entries": {"keyed": self.keyed, "legacy_sha256": self.legacy},
            "checkpoint": None if cp is None else {
                "seq": cp.seq, "hash": cp.hash, "at": cp.at, "reason": cp.reason,
                "process": cp.process, "name": cp.name},
            "notes": list(self.notes),
        }


@dataclass
class _Walk:
    prev_hash: str = GENESIS
    expected_seq: int = 1
    checked: int = 0
    keyed: int = 0
    legacy: int = 0
    bad_seq: int | None = None
    bad_id: int | None = None
    problem: str = ""


def verify_chain(
    entries: Iterable[Mapping[str, Any]],
    key: AuditKey | None = None,
    checkpoints: Iterable[Checkpoint] = (),
    extra_problems: Iterable[str] = (),
    notes: Iterable[str] = (),
    locate: Callable[[int], int | None] | None = None,
) -> ChainReport:
    """Walk entries in ``id`` order, check each link and hash (HMAC with ``key``), then the
    chain against every signed checkpoint; name the first entry that does not fit.

    ``extra_problems`` (found elsewhere, e.g. a dropped trigger) make the report fail too;
    ``locate(seq)`` (the row id holding a seq, if any) tells a deleted entry from one that
    was inserted later under a number the walk has not reached yet.
    """
    marks: dict[int, list[Checkpoint]] = {}
    for c in checkpoints:
        marks.setdefault(c.seq, []).append(c)
    latest = max((c for cs in marks.values() for c in cs), key=lambda c: (c.seq, c.at),
                 default=None)
    legacy_until = min((c.legacy_until for cs in marks.values() for c in cs), default=None)
    w = _Walk()
    rewritten: list[tuple[int, str]] = []
    for e in entries:
        w.checked += 1
        problem = _entry_problem(w, e, key, legacy_until, locate)
        if problem:
            w.bad_seq, w.bad_id, w.problem = int(e["seq"]), e.get("id"), problem
            break
        for c in marks.get(int(e["seq"]), ()):
            if c.hash != e["hash"]:
                rewritten.append((int(e["seq"]),
                    f"entry seq {e['seq']} is not the one checkpoint {c.name or '?'} signed at "
                    f"{c.at}: the history up to it was rewritten"))
        w.prev_hash, w.expected_seq = e["hash"], w.expected_seq + 1
    head_seq = w.expected_seq - 1
    problems: list[str] = []
    first_seq = w.bad_seq
    if w.problem:
        problems.append(f"entry seq {w.bad_seq}: {w.problem}")
    elif latest is not None and latest.seq > head_seq:
        first_seq = head_seq + 1
        problems.append(
            f"tail deleted: the chain ends at seq {head_seq} but checkpoint {latest.name or '?'} "
            f"signed at {latest.at} recorded seq {latest.seq} (hash {latest.hash[:16]}...); "
            f"entries {head_seq + 1}..{latest.seq} or more are gone")
    if rewritten and not w.problem:
        first_seq = rewritten[0][0]
        problems.append(rewritten[0][1])
    problems.extend(extra_problems)
    return ChainReport(
        ok=not problems, checked=w.checked, first_bad_seq=first_seq, first_bad_id=w.bad_id,
        problem=problems[0] if problems else "", problems=tuple(problems),
        head_seq=head_seq, head_hash=w.prev_hash, keyed=w.keyed, legacy=w.legacy,
        checkpoint=latest, notes=tuple(notes),
    )


def _entry_problem(w: _Walk, e: Mapping[str, Any], key: AuditKey | None,
                   legacy_until: int | None,
                   locate: Callable[[int], int | None] | None) -> str:
    seq = int(e["seq"])
    if seq != w.expected_seq:
        if seq > w.expected_seq:
            elsewhere = locate(w.expected_seq) if locate is not None else None
            if elsewhere is not None:
                return (f"expected seq {w.expected_seq}, found {seq}: entry seq "
                        f"{w.expected_seq} was inserted later (row id {elsewhere}) and the "
                        "entries after it renumbered")
            return (f"expected seq {w.expected_seq}, found {seq}: an entry was deleted "
                    "(removed) before it")
        return f"expected seq {w.expected_seq}, found {seq}: an entry was inserted or reordered"
    if e["prev_hash"] != w.prev_hash:
        return ("prev_hash does not match the previous entry's hash: an entry was inserted, "
                "deleted or re-hashed before it")
    alg = e.get("alg") or LEGACY
    if alg == LEGACY:
        if w.keyed:
            return ("unkeyed sha256 entry after keyed entries: the chain was re-hashed "
                    "without the key")
        if legacy_until is not None and seq > legacy_until:
            return (f"unkeyed sha256 entry after seq {legacy_until}, where a signed "
                    "checkpoint says the keyed chain began: re-hashed without the key")
        w.legacy += 1
        if chain_hash(w.prev_hash, e) != e["hash"]:
            return "content does not match its sha256 hash: the entry was edited"
        return ""
    if alg != KEYED:
        return f"unknown hash algorithm {alg!r}"
    if key is None:
        return "keyed entry, but no audit key was given to check it"
    if e.get("key_id") != key.id:
        return (f"signed with another key (key id {e.get('key_id')!r}, this key is "
                f"{key.id}): re-hashed with a different key")
    w.keyed += 1
    if not hmac.compare_digest(chain_hash(w.prev_hash, e, key), str(e["hash"])):
        return ("HMAC does not match: the entry was edited, or re-hashed without the key")
    return ""
