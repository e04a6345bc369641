"""Posting alerts to an Alertmanager through its API v2 (``POST /api/v2/alerts``).

The Alertmanager's host:port must be in the HTTP allowlist (``targets.http.hosts``), like
every other outbound call; its URL may carry a path prefix but no userinfo, query or
fragment. No redirect is followed. The alerts are sent as a JSON array of
``{labels, annotations, startsAt, endsAt, generatorURL}``: their values are never
interpreted here, only encoded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from receiver.errors import AdapterError, TargetNotAllowed
from receiver.remediation.targets import show
from receiver.remediation.urls import HostAllowlist, check_url

MAX_ANSWER = 2048


@dataclass(frozen=True)
class PostableAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    generator_url: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "annotations": dict(self.annotations),
                "startsAt": _rfc3339(self.starts_at), "endsAt": _rfc3339(self.ends_at),
                "generatorURL": self.generator_url}


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def alerts_url(base: str, hosts: HostAllowlist) -> str:
    """The API v2 alerts endpoint under ``base``, when ``base`` may be called."""
    split = urlsplit(base)
    if split.query or split.fragment or "@" in split.netloc:
        raise TargetNotAllowed(f"{show(base)}: an Alertmanager URL is scheme://host:port[/path]"
                               " without user, query or fragment")
    check_url(base, hosts)
    return base.rstrip("/") + "/api/v2/alerts"


class AlertmanagerAdapter:
    def __init__(self, hosts: HostAllowlist, *, timeout_s: float = 5.0) -> None:
        self.hosts = hosts
        self.timeout_s = timeout_s

    def post(self, base: str, alerts: list[PostableAlert]) -> None:
        """Post ``alerts``; TargetNotAllowed for a URL outside the allowlist, AdapterError
        when the Alertmanager cannot be reached or does not answer 200."""
        url = alerts_url(base, self.hosts)
        body = json.dumps([a.as_json() for a in alerts], ensure_ascii=True).encode()
        req = urllib.request.Request(  # noqa: S310 - http(s), checked against the allowlist
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "remediator-gameday"})
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=self.timeout_s) as resp:
                status, text = resp.status, resp.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read(MAX_ANSWER) if exc.fp else b""
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            raise AdapterError(f"Alertmanager {url} unreachable: "
                               f"{getattr(exc, 'reason', exc)}") from exc
        if status != 200:
            raise AdapterError(f"Alertmanager {url} answered {status}: "
                               f"{text.decode('utf-8', 'replace')[:300]}")
