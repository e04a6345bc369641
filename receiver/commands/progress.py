"""Progress of long command-line work, on the terminal only.

:func:`progress` draws a ``click.progressbar`` on stderr when stderr is a terminal and is
silent otherwise (a pipe, a file, cron, CI), so the command's output and logs stay clean.
:func:`working` does the same for work whose length is not known beforehand (one
``pg_dump``): the time it has taken so far, redrawn on one line.
"""

from __future__ import annotations

import sys
import threading
import time
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


@contextmanager
def working(label: str, interval: float = 0.5) -> Iterator[None]:
    """``label... 12s`` on stderr, redrawn every ``interval`` until the block ends; nothing
    off a terminal."""
    if not on_terminal():
        yield
        return
    started = time.monotonic()
    done = threading.Event()

    def draw() -> None:
        while not done.wait(interval):
            sys.stderr.write(f"\r{label}... {time.monotonic() - started:.0f}s")
            sys.stderr.flush()

    drawer = threading.Thread(target=draw, daemon=True)
    drawer.start()
    try:
        yield
    finally:
        done.set()
        drawer.join()
        sys.stderr.write(f"\r{label}: {time.monotonic() - started:.1f}s\n")
        sys.stderr.flush()
