"""What the tables keep of over-long alert text: cut values, bounded incident keys.

The webhook accepts any value Alertmanager can send (the body cap is its only limit); these
bounds apply to what the tables keep. The inbox row keeps the raw body whole, so a replay
sees every value in full, and identities (fingerprints, the incident key's hash) come from
the full values.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, TypeVar

from receiver.store.records import AlertRecord, IngestBatch

T = TypeVar("T")

STORED_VALUE_CHARS = 65536
"""A label or annotation value longer than this is kept cut, with a marker."""
STORED_NAME_CHARS = 1024
"""A label or annotation name longer than this is kept cut, with its length and a hash."""
STORED_TEXT_CHARS = 8192
"""The receiver, group key, alert and Alertmanager URLs kept in their own columns."""
KEY_BYTES = 1024
"""An incident key longer than this (UTF-8) is kept as its start and its SHA-256: the key
is indexed, and PostgreSQL's B-tree entries hold at most ~2.7 kB."""
CUT_MARK = "… [cut: {n} characters in all]"


def cut(value: str, limit: int = STORED_VALUE_CHARS) -> str:
    """``value``, or its first ``limit`` characters and a marker with its full length."""
    if len(value) <= limit:
        return value
    return value[:limit] + CUT_MARK.format(n=len(value))


def _cut_name(name: str) -> str:
    if len(name) <= STORED_NAME_CHARS:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{cut(name, STORED_NAME_CHARS)} sha256:{digest}"  # distinct names stay distinct


def _cut_set(labels: dict[str, str]) -> dict[str, str]:
    if all(len(k) <= STORED_NAME_CHARS and len(v) <= STORED_VALUE_CHARS
           for k, v in labels.items()):
        return labels
    return {_cut_name(k): cut(v) for k, v in labels.items()}


def bounded_key(key: str) -> str:
    """The incident key as stored: itself, or its first bytes and the SHA-256 of all of it."""
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= KEY_BYTES:
        return key
    head = raw[: KEY_BYTES // 2].decode("utf-8", "ignore")
    return f"{head}… sha256:{hashlib.sha256(raw).hexdigest()}"


def for_storage(batch: IngestBatch) -> IngestBatch:
    """The batch with every over-long alert-derived string cut as the tables keep it (the
    same objects where nothing is too long: the common case costs no copies)."""
    alerts = [_stored_alert(a) for a in batch.alerts]
    inc = batch.incident
    cut_inc = {"key": bounded_key(inc.key), "receiver": cut(inc.receiver, STORED_TEXT_CHARS),
               "group_key": cut(inc.group_key, STORED_TEXT_CHARS),
               "group_labels": _cut_set(inc.group_labels),
               "severity_reason": cut(inc.severity_reason, STORED_TEXT_CHARS)}
    incident = _replaced(inc, cut_inc)
    cut_batch = {"receiver": cut(batch.receiver, STORED_TEXT_CHARS),
                 "group_key": cut(batch.group_key, STORED_TEXT_CHARS),
                 "external_url": cut(batch.external_url, STORED_TEXT_CHARS),
                 "incident": incident}
    if any(new is not old for new, old in zip(alerts, batch.alerts, strict=True)):
        cut_batch["alerts"] = alerts
    return _replaced(batch, cut_batch)


def _stored_alert(a: AlertRecord) -> AlertRecord:
    return _replaced(a, {"alertname": cut(a.alertname, STORED_TEXT_CHARS),
                         "labels": _cut_set(a.labels), "annotations": _cut_set(a.annotations),
                         "generator_url": cut(a.generator_url, STORED_TEXT_CHARS),
                         "severity_reason": cut(a.severity_reason, STORED_TEXT_CHARS)})


def _replaced(obj: T, fields: dict[str, Any]) -> T:
    """``obj`` with ``fields`` replaced, or ``obj`` itself when each is already its own."""
    changed = {k: v for k, v in fields.items() if v is not getattr(obj, k)}
    return dataclasses.replace(obj, **changed) if changed else obj  # type: ignore[type-var]
