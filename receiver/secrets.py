"""Secrets in configuration are references, never literals: ``env:NAME`` or ``file:/path``.

A :class:`Secret` keeps the resolved value out of ``repr``/``str`` so that it cannot leak
into logs or the audit log by accident; call :meth:`Secret.reveal` where it is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_core import core_schema


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
    """Resolve ``env:NAME`` or ``file:/path`` into a :class:`Secret`; anything else is refused."""
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
        return Secret(value, ref)
    if ref.startswith("file:"):
        path = Path(ref[5:])
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
        return Secret(value, ref)
    raise ValueError("secrets must be given as 'env:NAME' or 'file:/path', not inline")


SecretRef = Secret
"""A pydantic field type: validates a reference, holds the resolved :class:`Secret`."""
