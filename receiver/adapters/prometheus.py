"""Instant PromQL queries against a Prometheus HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from receiver.errors import AdapterError


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusAdapter:
    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AdapterError("the Prometheus URL must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[Sample]:
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310 - scheme checked in __init__
                payload: dict[str, Any] = json.loads(resp.read(4 * 1024 * 1024))
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            raise AdapterError(f"Prometheus query failed: {exc}") from exc
        if payload.get("status") != "success":
            raise AdapterError(f"Prometheus error: {payload.get('error', 'unknown')}")
        data = payload.get("data", {})
        kind, result = data.get("resultType"), data.get("result", [])
        if kind == "vector":
            return [Sample(r.get("metric", {}), float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise AdapterError(f"unsupported result type {kind!r}; use an instant vector")
