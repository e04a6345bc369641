"""The adapters of ``remediator test`` and ``remediator replay``: none.

Both judge a config without touching what it points at, so every adapter the allowlist
check would build (a Docker lookup of a container's labels, for one) is refused with an
:class:`~receiver.errors.AdapterError` before it connects; the verdict then says that the
check needs the live system.
"""

from __future__ import annotations

from typing import Any, NoReturn

from receiver.adapters import AdapterFactory
from receiver.errors import AdapterError


def _offline(name: str) -> Any:
    def refuse(self: AdapterFactory, *args: Any, **kwargs: Any) -> NoReturn:
        raise AdapterError(f"{name}: not consulted here (nothing live is touched)")

    refuse.__name__ = name
    return refuse


class OfflineAdapters(AdapterFactory):
    """An adapter factory that builds nothing: each method raises AdapterError."""


for _name in [n for n in vars(AdapterFactory) if not n.startswith("_")
              and callable(getattr(AdapterFactory, n))]:
    setattr(OfflineAdapters, _name, _offline(_name))

__all__ = ["OfflineAdapters"]
