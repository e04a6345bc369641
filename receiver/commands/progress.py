"""Progress of long command-line work, on the terminal only.

:func:`progress` draws a ``click.progressbar`` on stderr when stderr is a terminal and is
silent otherwise (a pipe, a file, cron, CI), so the command's output and logs stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click


def on_terminal() -> bool:
    return sys.stderr.isatty()


def _quiet(_n: int = 1) -> None:
    """Progress off a terminal: nothing."""


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A ``step(n)`` that advances the bar by ``n`` of ``length``; a no-op off a terminal."""
    if not on_terminal():
        yield _quiet
        return
    with click.progressbar(length=max(length, 0), label=label, file=sys.stderr,
                           show_pos=True) as bar:
        yield bar.update
