"""Instant PromQL queries against a Prometheus HTTP API.

The base URL is called like any HTTP check (:func:`receiver.adapters.http.fetch`): its host
and every redirect hop must be in ``targets.http.hosts``. Queries are rendered from alerts
by :func:`receiver.remediation.promql.render_query`, never here.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
from dataclasses import dataclass
from typing import Any

from receiver.adapters.http import fetch
from receiver.errors import AdapterError
from receiver.remediation.urls import HostAllowlist

MAX_ANSWER = 4 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusAdapter:
    def __init__(self, base_url: str, timeout_s: float = 5.0, *, hosts: HostAllowlist) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AdapterError("the Prometheus URL must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.hosts = hosts

    def query(self, promql: str) -> list[Sample]:
        """The instant vector (or scalar) of ``promql``; TargetNotAllowed when the URL or a
        redirect is outside the allowlist, AdapterError when Prometheus cannot answer."""
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            resp = fetch(url, self.hosts, timeout_s=self.timeout_s, max_body=MAX_ANSWER)
            payload: dict[str, Any] = json.loads(resp.body)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise AdapterError(f"Prometheus query failed: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error", "unknown") if isinstance(payload, dict) else "unknown"
            raise AdapterError(f"Prometheus error: {error}")
        data = payload.get("data", {})
        kind, result = data.get("resultType"), data.get("result", [])
        try:
            if kind == "vector":
                return [Sample(r.get("metric", {}), float(r["value"][1])) for r in result]
            if kind == "scalar":
                return [Sample({}, float(result[1]))]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AdapterError(f"Prometheus answered an unexpected shape: {exc}") from exc
        raise AdapterError(f"unsupported result type {kind!r}; use an instant vector")
