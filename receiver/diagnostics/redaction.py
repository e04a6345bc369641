"""What evidence may keep: redaction (URL credentials, secret-named keys, bearer tokens, and
every configured secret, through the config's :class:`~receiver.secrets.Redactor`) and the
``max_evidence_bytes`` cap. Redaction comes first, so that a cut can never leave half a
secret behind."""

from __future__ import annotations

import json
import math
from typing import Any

from receiver.diagnostics.findings import CheckResult, Finding
from receiver.runtime.logs import redact_mapping, redact_value
from receiver.secrets import Redactor


def clean(value: Any, redactor: Redactor) -> Any:
    """``value`` made JSON-safe, with secret-looking parts and every configured secret
    replaced by the redaction marker."""
    if isinstance(value, str):
        return redactor.text(str(redact_value(value)))
    if isinstance(value, dict):
        return {redactor.text(str(k)): clean(v, redactor)
                for k, v in redact_mapping(value).items()}
    if isinstance(value, list | tuple):
        return [clean(v, redactor) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Inf are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean(str(value), redactor)


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


def sanitize(result: CheckResult, redactor: Redactor, max_bytes: int) -> CheckResult:
    """The result as it may be stored (the one way into the evidence table): redacted, its
    summary cut, its detail capped."""
    finding = result.finding
    detail = clean({"outcome": finding.outcome, **finding.detail}, redactor)
    summary = str(clean(finding.summary, redactor))[:1000]
    return CheckResult(result.name, result.kind,
                       Finding(finding.outcome, summary, cap(detail, max_bytes)),
                       result.started_at, result.duration_ms)
