"""What every adapter shares: used as a context manager, it closes its client on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosingAdapter:
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError
