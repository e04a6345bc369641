"""HTTP checks (health and readiness endpoints) through the standard library.

Every hop is checked against the allowlist (``targets.http.hosts``): the first URL, and each
redirect, which is followed only to an allowed host (at most :data:`MAX_REDIRECTS` of them,
never from https to http). Userinfo in the first URL is sent as a Basic ``Authorization``
header to that host:port only.
"""

from __future__ import annotations

import base64
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from receiver.errors import AdapterError, RedirectRefused, TargetNotAllowed
from receiver.remediation.urls import HostAllowlist, check_url, next_hop

MAX_BODY = 4096
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int | None
    latency_ms: float
    body_excerpt: str
    error: str | None = None
    refused: str | None = None
    """Why a hop was not called (the allowlist refused it); ``status`` is then the redirect's."""
    redirects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Response:
    """What the last hop answered."""

    url: str
    status: int
    headers: Message
    body: bytes
    redirects: tuple[str, ...]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # fetch() follows redirects itself, checking each hop


def _without_userinfo(url: str) -> tuple[str, str | None]:
    split = urlsplit(url)
    userinfo, at, hostport = split.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(split._replace(netloc=hostport)), f"Basic {token}"


def fetch(
    url: str,
    hosts: HostAllowlist,
    *,
    timeout_s: float,
    max_body: int,
    headers: dict[str, str] | None = None,
) -> Response:
    """GET ``url``, following redirects only to allowed hosts.

    TargetNotAllowed when ``url`` is not allowed, RedirectRefused when a redirect leads out of
    the allowlist, AdapterError after too many redirects; OSError / URLError when the host
    cannot be reached.
    """
    first = check_url(url, hosts, userinfo_ok=True)
    opener = urllib.request.build_opener(_NoRedirect)
    current, auth = _without_userinfo(url)
    hops: list[str] = []
    while True:
        sent = {"User-Agent": "remediator-check", **(headers or {})}
        if auth is not None and check_url(current, hosts) == first:
            sent["Authorization"] = auth
        req = urllib.request.Request(current, headers=sent)  # noqa: S310 - http(s), checked
        try:
            with opener.open(req, timeout=timeout_s) as resp:
                status, got, body = resp.status, resp.headers, resp.read(max_body)
        except urllib.error.HTTPError as exc:
            status, got = exc.code, exc.headers
            body = exc.read(max_body) if exc.fp else b""
            exc.close()
        location = got.get("Location") if status in REDIRECTS else None
        if location is None:
            return Response(current, status, got, body, tuple(hops))
        if len(hops) >= MAX_REDIRECTS:
            raise AdapterError(f"more than {MAX_REDIRECTS} redirects (last to {location[:200]})")
        try:
            current = next_hop(current, location, hosts)
        except TargetNotAllowed as exc:
            raise RedirectRefused(
                f"redirect {status} to {location[:200]!r} not followed: {exc}",
                status, (*hops, location[:500]),
            ) from exc
        hops.append(current)


class HttpAdapter:
    def __init__(self, timeout_s: float = 5.0, *, hosts: HostAllowlist) -> None:
        self.timeout_s = timeout_s
        self.hosts = hosts

    def get(self, url: str) -> HttpResult:
        """GET ``url``; a refused URL or redirect comes back with ``refused`` set, nothing
        called beyond it."""
        started = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            resp = fetch(url, self.hosts, timeout_s=self.timeout_s, max_body=MAX_BODY)
        except RedirectRefused as exc:
            return HttpResult(url, exc.redirect_status, ms(), "", refused=str(exc),
                              redirects=exc.redirects)
        except TargetNotAllowed as exc:
            return HttpResult(url, None, ms(), "", refused=str(exc))
        except AdapterError as exc:
            return HttpResult(url, None, ms(), "", f"AdapterError: {exc}")
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            return HttpResult(url, None, ms(), "",
                              f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        return HttpResult(url, resp.status, ms(), resp.body.decode("utf-8", "replace"),
                          redirects=resp.redirects)
