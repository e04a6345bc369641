"""Secrets in configuration are references, never literals: ``env:NAME`` or ``file:/path``.

A :class:`Secret` keeps the resolved value out of ``repr``/``str`` so that it cannot leak
into logs or the audit log by accident; call :meth:`Secret.reveal` where it is needed.

A :class:`Redactor`, built once from the loaded config (:func:`redactor_for`), replaces every
configured secret value wherever it appears as a substring, together with the forms it takes
on the way out (percent-encoded, JSON- and HTML-escaped, base64, the password inside a DSN or
URL, the base64 ``user:password`` of basic auth, the token parts of a notification URL, and
the keys generated under ``data_dir``). Each sink applies it in one place: evidence
(``diagnostics.redaction.sanitize``), timeline events (``store.events.record``), audit
details (``store.audit.append``), logs (the structlog processor of
``logs.configure_logging``), JSON bodies and pages (``app.create_app``), notifications and
post-mortems (their renderers).

Values shorter than :data:`MIN_SECRET_LENGTH` would blank out ordinary words wherever they
occur, so a secret reference resolving to a shorter value is refused when the config loads;
a shorter password *inside* a DSN or URL is not redacted on its own (the whole DSN or URL
still is), and :attr:`Redactor.too_short` names where, for a warning at start.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from pydantic import BaseModel
from pydantic_core import core_schema

MIN_SECRET_LENGTH = 6
"""Shortest secret value accepted (and redacted): shorter ones would destroy text."""
REDACTED = "[redacted]"
KEY_FILES = ("secret_key", "audit_key")
"""Keys generated under ``data_dir`` when the config names none: secrets like the others."""


class Secret:
    """A resolved secret value that prints as ``'***'``."""

    __slots__ = ("_ref", "_value")

    def __init__(self, value: str, ref: str) -> None:
        self._value = value
        self._ref = ref

    def reveal(self) -> str:
        return self._value

    @property
    def ref(self) -> str:
        """Where the value came from (``env:NAME`` / ``file:/path``), safe to show."""
        return self._ref

    def __repr__(self) -> str:
        return f"Secret({self._ref!r})"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(
            resolve_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: s.ref, return_schema=core_schema.str_schema()
            ),
            json_schema_input_schema=core_schema.str_schema(),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def resolve_secret(ref: Any) -> Secret:
    """Resolve ``env:NAME`` or ``file:/path`` into a :class:`Secret`; anything else is refused,
    and so is a value shorter than :data:`MIN_SECRET_LENGTH` (it could not be redacted)."""
    if isinstance(ref, Secret):
        return ref
    if not isinstance(ref, str):
        raise ValueError("a secret must be a string 'env:NAME' or 'file:/path'")
    if ref.startswith("env:"):
        name = ref[4:]
        if not name:
            raise ValueError("'env:' needs a variable name")
        value = os.environ.get(name)
        if value is None:
            raise ValueError(f"environment variable {name} is not set")
        return _checked(value, ref)
    if ref.startswith("file:"):
        path = Path(ref[5:])
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
        return _checked(value, ref)
    raise ValueError("secrets must be given as 'env:NAME' or 'file:/path', not inline")


def _checked(value: str, ref: str) -> Secret:
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the secret in {ref} is shorter than {MIN_SECRET_LENGTH} characters: too weak, "
            "and too short to redact from logs and evidence without destroying their text"
        )
    return Secret(value, ref)


SecretRef = Secret
"""A pydantic field type: validates a reference, holds the resolved :class:`Secret`."""


# -- redaction -------------------------------------------------------------------------------


class Redactor:
    """Replaces each of a set of secret strings with :data:`REDACTED`, as a substring,
    wherever it appears in a string or in the strings (keys too) of a JSON-like value.

    Longer needles win where two overlap, so a DSN goes whole rather than around its
    password. An empty redactor returns its input unchanged.
    """

    __slots__ = ("_needles", "_pattern", "_in_json", "too_short")

    def __init__(self, needles: Iterable[str] = (), too_short: Iterable[str] = ()) -> None:
        kept = sorted({n for n in needles if len(n) >= MIN_SECRET_LENGTH},
                      key=lambda n: (-len(n), n))
        self._needles: tuple[str, ...] = tuple(kept)
        self._pattern = re.compile("|".join(map(re.escape, kept))) if kept else None
        # Each needle as it appears inside a JSON string, escaped to ASCII or not (escaping
        # is per character, so a string that holds a needle dumps to text that holds the
        # needle's dump).
        in_json = {json.dumps(n, ensure_ascii=ascii_only)[1:-1]
                   for n in kept for ascii_only in (False, True)}
        self._in_json = (re.compile("|".join(map(re.escape, sorted(in_json))))
                         if kept else None)
        self.too_short: tuple[str, ...] = tuple(dict.fromkeys(too_short))
        """Config paths of secrets whose short inner part (a DSN's password) is not
        redacted on its own."""

    @classmethod
    def from_config(cls, config: Any, extra: Iterable[str] = ()) -> Redactor:
        """Every secret of ``config`` (each :class:`Secret` in it, wherever it sits, the store
        URL's password, the generated ``data_dir/secret_key``) and of ``extra``, with the
        forms each may take on the way out."""
        needles: set[str] = set()
        short: list[str] = []
        for path, value in _config_secrets(config):
            for part in _parts(path, value, short):
                needles |= derived_forms(part)
        basic = getattr(getattr(config, "auth", None), "basic", None)
        if basic is not None:
            pair = f"{basic.username}:{basic.password.reveal()}".encode()
            needles |= {base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
        for value in extra:
            needles |= derived_forms(value)
        return cls(needles, short)

    def __bool__(self) -> bool:
        return self._pattern is not None

    @property
    def needles(self) -> tuple[str, ...]:
        return self._needles

    def merged(self, other: Redactor) -> Redactor:
        if not other or set(other._needles) <= set(self._needles):
            return self
        return Redactor(self._needles + other._needles, self.too_short + other.too_short)

    def text(self, value: str) -> str:
        if self._pattern is None or self._pattern.search(value) is None:
            return value  # the common case: one scan
        # Again while a secret is left: one whose text overlaps the marker could be formed
        # anew by a replacement next to it.
        for _ in range(8):
            value = self._pattern.sub(REDACTED, value)
            if self._pattern.search(value) is None:
                break
        return value

    def found(self, value: str) -> bool:
        return self._pattern is not None and self._pattern.search(value) is not None

    def __call__(self, value: Any) -> Any:
        """``value`` with every secret replaced: strings, dict keys and values, lists and
        tuples, dataclasses and pydantic models (as their dict); other values as they are."""
        if self._pattern is None or value is None or isinstance(value, int | float):
            return value  # no text in it (bool is an int)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict | list) and self._clean_json(value):
            return value
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self(dataclasses.asdict(value))
        if isinstance(value, BaseModel):
            return self(value.model_dump(mode="json"))
        return value

    def _clean_json(self, value: dict[Any, Any] | list[Any]) -> bool:
        """True when ``value`` is plain JSON (str keys; str, number, bool, None, list and
        dict values) with no needle in any of its strings: one dump and one scan instead
        of a call per string. Anything else (a needle somewhere, a value ``json`` cannot
        dump as it is) is left to the walk."""
        try:
            dumped = json.dumps(value, ensure_ascii=False, check_circular=False)
        except (TypeError, ValueError, RecursionError):
            return False
        return not self.found_in_json(dumped)

    def found_in_json(self, text: str) -> bool:
        """Whether JSON ``text`` (ASCII-escaped or not) holds a secret in one of its strings
        (or anywhere else: a needle across two strings also counts, to be safe)."""
        return self._in_json is not None and self._in_json.search(text) is not None

    def __repr__(self) -> str:
        return f"Redactor({len(self._needles)} forms)"


NO_SECRETS = Redactor()
"""The redactor of a process that loaded no config: it changes nothing."""


def derived_forms(value: str) -> set[str]:
    """``value`` and the forms it takes in URLs, JSON, HTML and base64."""
    if not value:
        return set()
    raw = value.encode()
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html.escape(value),
        html.escape(value, quote=False),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }
    forms |= {f.rstrip("=") for f in forms if f.endswith("=")}
    return forms


def _config_secrets(config: Any) -> Iterator[tuple[str, str]]:
    """``(config path, revealed value)`` of every secret in ``config``."""
    yield from _walk(config, "")
    store = getattr(config, "store", None)
    if store is not None and isinstance(getattr(store, "url", None), str) and _password(
            store.url):
        yield "store.url", store.url  # a plain URL that still carries a password
    data_dir = getattr(config, "data_dir", None)
    for name in KEY_FILES if isinstance(data_dir, str | Path) else ():
        try:
            yield f"data_dir/{name}", (Path(str(data_dir)) / name).read_text(
                encoding="utf-8").strip()
        except OSError:
            pass  # not created yet: nothing can have leaked it


def _walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Secret):
        yield path, node.reveal()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


_TOKEN_KEYS = re.compile(r"(?i)(pass|secret|token|key|auth|sig|cred)")


def _parts(path: str, value: str, short: list[str]) -> set[str]:
    """The secret ``value`` and the parts of it that are secret on their own: the password of
    a DSN or URL, and for a notification URL the token-like path segments and query values."""
    parts = {value}
    password = _password(value)
    if password:
        if len(password) < MIN_SECRET_LENGTH:
            short.append(path)
        parts |= {password, unquote(password)}
        userinfo = value.partition("://")[2].partition("@")[0]
        if userinfo and "@" in value:
            parts |= {userinfo, unquote(userinfo)}
    if path.startswith("notifications.") and "://" in value:
        parts |= _notification_tokens(value)
    return parts


def _password(value: str) -> str:
    if value.startswith(("postgresql://", "postgres://")) or "password=" in value:
        import psycopg.conninfo  # deferred: only configs with DSNs need it

        try:
            return str(psycopg.conninfo.conninfo_to_dict(value).get("password") or "")
        except psycopg.ProgrammingError:
            pass
    if "://" in value:
        try:
            return urlsplit(value).password or ""
        except ValueError:
            return ""
    return ""


def _notification_tokens(url: str) -> set[str]:
    """The parts of an apprise URL that look like credentials: pieces (between ``/ : @ ? & =
    # , ;``) with both letters and digits (``T1JJ3T3L2``) or 16+ characters long, and the
    values of token-named query keys. Plain words (a channel or recipient name) and the
    host, when it is a DNS name or an address, are left alone."""
    rest = url.partition("://")[2]
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        host = ""
    if "." not in host and ":" not in host:
        host = ""  # slack://T1/B2/C3 puts a token where the host goes
    found = {val for key, val in parse_qsl(urlsplit(url).query) if _TOKEN_KEYS.search(key)}
    for piece in re.split(r"[/:@?&=#,;]+", rest):
        piece = unquote(piece)
        if not piece or piece.lower() == host:
            continue
        looks_random = any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece)
        if len(piece) >= 16 or looks_random:
            found.add(piece)
    return {f for f in found if len(f) >= MIN_SECRET_LENGTH}


_CACHE: dict[int, tuple[Any, Redactor]] = {}


def redactor_for(config: Any) -> Redactor:
    """The :class:`Redactor` of ``config``, built once per config object."""
    hit = _CACHE.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    redactor = Redactor.from_config(config)
    if len(_CACHE) >= 64:
        _CACHE.clear()
    _CACHE[id(config)] = (config, redactor)
    return redactor
