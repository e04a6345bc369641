"""HTTP checks (health and readiness endpoints) through the standard library."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from receiver.errors import AdapterError

MAX_BODY = 4096


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int | None
    latency_ms: float
    body_excerpt: str
    error: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a check reports the redirect status; it never follows it


class HttpAdapter:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def get(self, url: str) -> HttpResult:
        if not url.startswith(("http://", "https://")):
            raise AdapterError("only http:// and https:// URLs are checked")
        started = time.perf_counter()
        req = urllib.request.Request(url, headers={"User-Agent": "remediator-check"})  # noqa: S310 - scheme checked above
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                body = resp.read(MAX_BODY)
                status = resp.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(MAX_BODY) if exc.fp else b"", exc.code
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return HttpResult(url, None, (time.perf_counter() - started) * 1000, "",
                              f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        return HttpResult(url, status, (time.perf_counter() - started) * 1000,
                          body.decode("utf-8", "replace"))
