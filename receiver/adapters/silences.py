"""Silences in one Alertmanager, through its API v2 (``/api/v2/silences``).

The base URL is a literal of the config (a rule's ``silence.alertmanager``), never built from
an alert, and its host:port must be in ``targets.http.hosts``; it is checked again here
before every call. No redirect is followed. A silence made here matches by literal equality
only: every matcher is ``isEqual: true, isRegex: false``, whatever the label values hold, so
that a value from an alert can never widen a silence into a pattern.

Errors: :class:`~receiver.errors.TargetNotAllowed` when the URL is outside the allowlist,
:class:`~receiver.errors.AdapterError` when Alertmanager cannot be reached or answers in a
shape it should not, :class:`~receiver.errors.PlaybookError` when it refuses the request
(its status and the start of its answer in the message).
"""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from receiver.errors import AdapterError, PlaybookError
from receiver.remediation.urls import HostAllowlist, check_url

MAX_ANSWER = 64 * 1024
SILENCE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def equality_matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """One literal equality matcher per label, sorted by name (the API's ``matchers``);
    PlaybookError for a name or value that is not valid UTF-8 (a lone surrogate), which
    Alertmanager would read as another string."""
    out = []
    for name, value in sorted(labels.items()):
        for part, what in ((name, "name"), (value, "value")):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PlaybookError(f"a label {what} is not valid UTF-8: it cannot be "
                                    "matched literally") from exc
        out.append({"name": name, "value": value, "isRegex": False, "isEqual": True})
    return out


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as the error it is here


class SilencesAdapter:
    def __init__(self, base_url: str, timeout_s: float = 5.0, *, hosts: HostAllowlist) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AdapterError("the Alertmanager URL must be http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.hosts = hosts
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        url = self.base_url + path
        check_url(url, self.hosts)
        data = None if body is None else json.dumps(body).encode()
        headers = {"User-Agent": "remediator", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - http(s), checked
                                     headers=headers)
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return resp.status, resp.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            answer = exc.read(MAX_ANSWER) if exc.fp else b""
            exc.close()
            return exc.code, answer
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdapterError(f"Alertmanager {self.base_url} unreachable: {reason}") from exc

    def _refused(self, what: str, status: int, answer: bytes) -> PlaybookError:
        text = answer.decode("utf-8", "replace").strip()[:300]
        return PlaybookError(f"Alertmanager {self.base_url} refused to {what}: HTTP {status}"
                             + (f": {text}" if text else ""))

    def create_silence(self, labels: Mapping[str, str], *, starts_at: datetime,
                       ends_at: datetime, created_by: str, comment: str) -> str:
        """A silence matching exactly ``labels`` (each by literal equality) from ``starts_at``
        to ``ends_at``; its id."""
        body = {"matchers": equality_matchers(labels), "startsAt": _rfc3339(starts_at),
                "endsAt": _rfc3339(ends_at), "createdBy": created_by, "comment": comment}
        status, answer = self._call("POST", "/api/v2/silences", body)
        if status != 200:
            raise self._refused("create the silence", status, answer)
        try:
            silence_id = json.loads(answer)["silenceID"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AdapterError(f"Alertmanager {self.base_url} answered no silence id") from exc
        if not isinstance(silence_id, str) or not SILENCE_ID.fullmatch(silence_id):
            raise AdapterError(f"Alertmanager {self.base_url} answered an unexpected "
                               "silence id")
        return silence_id

    def expire_silence(self, silence_id: str) -> bool:
        """Expire a silence now: True when it was expired by this call, False when
        Alertmanager no longer has it."""
        if not SILENCE_ID.fullmatch(silence_id):
            raise PlaybookError("not a silence id")
        status, answer = self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")
        if status == 200:
            return True
        if status == 404:
            return False
        raise self._refused(f"expire silence {silence_id}", status, answer)
