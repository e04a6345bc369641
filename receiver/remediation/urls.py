"""URLs of diagnostic and verification checks: one builder for every check that calls HTTP.

A check's URL is a template (``http://{{ labels.instance }}/api/v1/health``) whose
``{{ labels.x }}`` / ``{{ annotations.x }}`` values come from an alert, that is from anyone who
can make an alert fire. :func:`build_url` renders the template, parses the result with
:mod:`urllib.parse` and validates it, so that a value can never point the call elsewhere:

- in the authority (between ``scheme://`` and the first ``/``, ``?`` or ``#`` of the template),
  a value may fill the host or the host:port only as a plain ``host[:port]``: letters, digits,
  ``. _ - :`` and an IPv6 address in brackets; never ``/ ? # @ \\``, whitespace or
  percent-encoding. A value may never stand in the scheme or the userinfo (refused at load);
- in the path, the query or the fragment, a value is percent-encoded whole (``/ ? # & = %``
  included); a value made only of dots is refused in the path (it would be a dot segment);
- the result must parse back to the template's scheme and userinfo and to the host:port that
  the plain value gave, and that host:port must be in ``targets.http.hosts``
  (:class:`~receiver.remediation.targets.HttpTargets`).

Anything else raises :class:`~receiver.errors.TargetNotAllowed` with the reason; the check is
then recorded as refused (a refused verification is a failed one). :func:`check_url_template`
is the structural part, run at config load; :func:`literal_host_refusal` refuses a literal
host that the allowlist does not name; :func:`check_url` and :func:`next_hop` check a URL and
each redirect hop against the allowlist.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urljoin, urlsplit

from receiver.errors import TargetNotAllowed
from receiver.remediation.rules import PLACEHOLDER, placeholder_value
from receiver.remediation.targets import show

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 8192
"""A built URL longer than this is refused (label values are long only when hostile)."""

_SCHEME = re.compile(r"^(https?)://")
_AUTHORITY_END = re.compile(r"[/?#]")
_VALUE_IN_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,261}$")
_NAME_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOSTPORT = re.compile(
    rf"^(?:(?P<name>{_NAME_LABEL}(?:\.{_NAME_LABEL})*)|\[(?P<v6>[0-9A-Fa-f:.]{{2,45}})\])"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
# A host whose last label is a number (or 0x...) is read as an IPv4 address by URL parsers.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


class HostAllowlist(Protocol):
    """What may be called: ``targets.http`` (:class:`~receiver.remediation.targets.HttpTargets`)."""

    def allows(self, host: str, port: int) -> bool: ...


@dataclass(frozen=True)
class Endpoint:
    """Where a URL connects: scheme, normalized host (lowercase name, IPv4, ``[v6]``), port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class _Parts:
    scheme: str
    userinfo: str | None
    host: str
    rest: str


def parse_hostport(text: str, scheme: str) -> Endpoint:
    """A plain ``host[:port]`` as an :class:`Endpoint`; ValueError saying why it is not one."""
    m = _HOSTPORT.fullmatch(text)
    if m is None:
        raise ValueError("not a plain host:port")
    port = int(m["port"]) if m["port"] else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    if m["v6"] is not None:
        try:
            return Endpoint(scheme, f"[{ipaddress.IPv6Address(m['v6']).compressed}]", port)
        except ValueError as exc:
            raise ValueError("not an IPv6 address in brackets") from exc
    host = m["name"].lower()
    if len(host) > 253:
        raise ValueError("host name longer than 253 characters")
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError as exc:
            raise ValueError("a numeric host must be a dotted-quad IPv4 address") from exc
        if canonical != host:
            raise ValueError("a numeric host must be a dotted-quad IPv4 address")
    return Endpoint(scheme, host, port)


def _split(template: str) -> _Parts:
    m = _SCHEME.match(template)
    if m is None:
        raise ValueError("a check URL must start with http:// or https://")
    after = template[m.end():]
    end = _AUTHORITY_END.search(after)
    authority, rest = (after[: end.start()], after[end.start():]) if end else (after, "")
    userinfo, at, host = authority.rpartition("@")
    return _Parts(m.group(1), userinfo if at else None, host, rest)


def check_url_template(template: str) -> None:
    """Refuse a URL template whose scheme or userinfo a value could fill, or whose host:port
    is not a plain host:port (ValueError, for the config loader)."""
    parts = _split(template)
    authority = (f"{parts.userinfo}@" if parts.userinfo is not None else "") + parts.host
    literal = PLACEHOLDER.sub("", authority)
    if "\\" in literal or any(c.isspace() for c in literal):
        raise ValueError("a backslash or whitespace in the host part of a URL")
    if parts.userinfo is not None and PLACEHOLDER.search(parts.userinfo):
        raise ValueError("a label or annotation may not fill the userinfo (user:password@)")
    # A placeholder stands for a name in the host, for a number in the port.
    head, colon, tail = parts.host.rpartition(":")
    if not colon or "]" in tail:
        head, tail = parts.host, ""
    sample = PLACEHOLDER.sub("a", head) + colon + PLACEHOLDER.sub("1", tail)
    try:
        parse_hostport(sample, parts.scheme)
    except ValueError as exc:
        raise ValueError(
            f"host:port {show(parts.host)}: {exc}; a label or annotation may fill the host "
            "or host:port, nothing else of the authority"
        ) from exc
    try:
        urlsplit(PLACEHOLDER.sub("1", template)).port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"does not parse as a URL: {exc}") from exc


def literal_host_refusal(template: str, hosts: HostAllowlist) -> str | None:
    """Why a template's literal host:port may not be called (None: allowed, or templated and
    so checked when the URL is built)."""
    parts = _split(template)
    if PLACEHOLDER.search(parts.host):
        return None
    endpoint = parse_hostport(parts.host, parts.scheme)
    if hosts.allows(endpoint.host, endpoint.port):
        return None
    return f"{endpoint} is not in targets.http.hosts (list every host that a check calls)"


def build_url(
    template: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    hosts: HostAllowlist,
) -> str:
    """The URL of a check for one alert, or TargetNotAllowed saying why it is refused
    (TemplateError when the alert lacks a label the template names)."""
    parts = _split(template)

    def host_value(m: re.Match[str]) -> str:
        value = placeholder_value(m, labels, annotations)
        if not _VALUE_IN_HOST.fullmatch(value):
            raise TargetNotAllowed(
                f"{m.group(1)[:-1]} {m.group(2)}={show(value)} may fill the host:port only as "
                "a plain host:port (no / ? # @ \\, whitespace, percent-encoding or other "
                "characters)"
            )
        return value

    hostport = PLACEHOLDER.sub(host_value, parts.host)
    try:
        endpoint = parse_hostport(hostport, parts.scheme)
    except ValueError as exc:
        raise TargetNotAllowed(f"host:port {show(hostport)}: {exc}") from exc
    query_at = min((i for i in (parts.rest.find("?"), parts.rest.find("#")) if i >= 0),
                   default=len(parts.rest))

    def rest_value(m: re.Match[str]) -> str:
        value = placeholder_value(m, labels, annotations)
        what = f"{m.group(1)[:-1]} {m.group(2)}={show(value)}"
        if m.start() < query_at and value and not value.strip("."):
            raise TargetNotAllowed(f"{what} would be a dot segment of the path")
        try:
            return quote(value, safe="")
        except UnicodeEncodeError as exc:
            raise TargetNotAllowed(f"{what} is not valid text") from exc

    rest = PLACEHOLDER.sub(rest_value, parts.rest)
    authority = (f"{parts.userinfo}@" if parts.userinfo is not None else "") + hostport
    url = f"{parts.scheme}://{authority}{rest}"
    if len(url) > MAX_URL_CHARS:
        raise TargetNotAllowed(f"the URL would be {len(url)} characters (at most {MAX_URL_CHARS})")
    got = check_url(url, hosts, userinfo_ok=True)
    split = urlsplit(url)
    if (split.scheme, split.netloc, got) != (parts.scheme, authority, endpoint):
        raise TargetNotAllowed(f"the alert's values change where {show(template)} points")
    return url


def check_url(url: str, hosts: HostAllowlist, *, userinfo_ok: bool = False) -> Endpoint:
    """Where ``url`` connects, when it may be called: an http(s) URL whose host:port is plain
    and in the allowlist (and without userinfo unless ``userinfo_ok``)."""
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError as exc:
        raise TargetNotAllowed(f"{show(url)} does not parse as a URL: {exc}") from exc
    if split.scheme not in DEFAULT_PORTS:
        raise TargetNotAllowed(f"{show(url)}: only http:// and https:// URLs are called")
    userinfo, at, hostport = split.netloc.rpartition("@")
    if at and not userinfo_ok:
        raise TargetNotAllowed(f"{show(url)}: a URL with user:password@ is not followed")
    try:
        endpoint = parse_hostport(hostport, split.scheme)
        # urllib's own reading of the host and port must agree with ours.
        name = split.hostname or ""
        seen = parse_hostport(f"[{name}]" if ":" in name else name, split.scheme)
    except ValueError as exc:
        raise TargetNotAllowed(f"host:port {show(hostport)}: {exc}") from exc
    if (seen.host, port or DEFAULT_PORTS[split.scheme]) != (endpoint.host, endpoint.port):
        raise TargetNotAllowed(f"{show(url)}: the host:port is ambiguous")
    if not hosts.allows(endpoint.host, endpoint.port):
        raise TargetNotAllowed(f"{endpoint} is not in targets.http.hosts")
    return endpoint


def next_hop(current: str, location: str, hosts: HostAllowlist) -> str:
    """The URL a redirect from ``current`` to ``location`` leads to, when it may be followed
    (in the allowlist, no userinfo, never from https to http)."""
    target = urljoin(current, location.strip()).partition("#")[0]
    check_url(target, hosts)
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
        raise TargetNotAllowed(f"redirect from https to {show(target)} is not followed")
    return target
