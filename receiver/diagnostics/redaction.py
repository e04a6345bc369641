"""What evidence may keep: redaction (URL credentials, secret-named keys, bearer tokens, and
the configured DSNs, URLs and passwords themselves) and the ``max_evidence_bytes`` cap."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

import psycopg.conninfo

from receiver.diagnostics.findings import CheckResult, Finding
from receiver.logs import REDACTED, redact_mapping, redact_value
from receiver.targets import TargetsConfig


def secret_strings(targets: TargetsConfig) -> list[str]:
    """The configured DSNs and URLs, and the passwords in them: never stored as evidence."""
    found: set[str] = set()
    for pg in targets.postgres.values():
        dsn = pg.dsn.reveal()
        found.add(dsn)
        try:
            found.add(str(psycopg.conninfo.conninfo_to_dict(dsn).get("password") or ""))
        except psycopg.ProgrammingError:
            pass
    for rd in targets.redis.values():
        url = rd.url.reveal()
        found.add(url)
        try:
            found.add(urlsplit(url).password or "")
        except ValueError:
            pass
    # Very short values would blank out ordinary text; longest first, so a DSN goes whole.
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def clean(value: Any, secrets: list[str]) -> Any:
    """``value`` made JSON-safe, with secret-looking parts and every one of ``secrets``
    replaced by the redaction marker."""
    if isinstance(value, str):
        text = redact_value(value)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text
    if isinstance(value, dict):
        return {str(k): clean(v, secrets) for k, v in redact_mapping(value).items()}
    if isinstance(value, list | tuple):
        return [clean(v, secrets) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Inf are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean(str(value), secrets)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _shrink(value: Any, chars: int, items: int, key: str = "") -> Any:
    if isinstance(value, str) and len(value) > chars:
        return value[:chars] + f"...[+{len(value) - chars} chars]"
    if isinstance(value, dict):
        return {k: _shrink(v, chars, items, k) for k, v in value.items()}
    if isinstance(value, list):
        kept = value[-items:] if key.endswith("_tail") else value[:items]
        out = [_shrink(v, chars, items) for v in kept]
        if len(value) > items:
            out.append(f"...[{len(value) - items} more]")
        return out
    return value


def cap(detail: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``detail`` if it fits in ``max_bytes`` of JSON, else a shrunk copy marked truncated
    (strings and lists cut; ``*_tail`` lists keep their end)."""
    if _size(detail) <= max_bytes:
        return detail
    for chars, items in ((1000, 50), (400, 20), (160, 10), (60, 5), (20, 2)):
        shrunk = {**_shrink(detail, chars, items), "truncated": True}
        if _size(shrunk) <= max_bytes:
            return shrunk
    text = json.dumps(detail, ensure_ascii=False)
    keep = max_bytes // 2
    while True:
        fallback = {"outcome": detail.get("outcome"), "truncated": True, "excerpt": text[:keep]}
        if _size(fallback) <= max_bytes or keep == 0:
            return fallback
        keep //= 2


def sanitize(result: CheckResult, secrets: list[str], max_bytes: int) -> CheckResult:
    """The result as it may be stored: redacted, its summary cut, its detail capped."""
    finding = result.finding
    detail = clean({"outcome": finding.outcome, **finding.detail}, secrets)
    summary = str(clean(finding.summary, secrets))[:1000]
    return CheckResult(result.name, result.kind,
                       Finding(finding.outcome, summary, cap(detail, max_bytes)),
                       result.started_at, result.duration_ms)
