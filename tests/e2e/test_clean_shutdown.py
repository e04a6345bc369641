"""A SIGTERM stops ``remediator serve`` gracefully with exit status 0, every time.

gunicorn reaps exited workers inside its SIGCHLD handler, which runs again, re-entrantly,
when two workers exit at the same moment (as they do when the master tells them to stop).
Anything that handler does must therefore be safe to interrupt by itself: an import started
there fails with "partially initialized module" when the second worker's SIGCHLD arrives in
the middle of it, and the master exits with status 1. A race like that shows once in a
handful of stops, so this starts and stops a real ``serve`` (2 gunicorn workers, the embedded
worker, SQLite) many times and requires a clean exit from each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import Stack, probe_ok, wait_for
from tests.support import free_port

pytestmark = pytest.mark.slow

STOPS = 50
SLOTS = 4  # serves at once; each slot runs its stops one after the other
GUNICORN_WORKERS = 2
START_TIMEOUT = 90.0  # a bound on waiting for start-up, not a figure: the suite shares 2 cores
STOP_TIMEOUT = 20.0  # gunicorn's graceful_timeout is 10 s; an idle stop takes well under 1 s


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _one_stop(i: int, config: Path, env: dict[str, str], cwd: Path) -> tuple[int, int | None,
                                                                          float, str]:
    """Start one ``serve``, wait until it is fully up, SIGTERM it: (i, exit code, s, stderr)."""
    port = free_port()
    log_path = cwd / f"serve-{i:02d}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "receiver", "serve", "-c", str(config),
             "--bind", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=cwd,
            start_new_session=True,
        )
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited early: {log_path.read_text()[-3000:]}")
            # Up and serving, both gunicorn workers forked, the embedded worker started.
            return (probe_ok(f"http://127.0.0.1:{port}/readyz")
                    and len(_children(proc.pid)) >= GUNICORN_WORKERS + 1
                    and " started (" in log_path.read_text(encoding="utf-8"))

        wait_for(ready, START_TIMEOUT, "serve's /readyz and its workers")
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return i, code, took, log_path.read_text(encoding="utf-8", errors="replace")


def test_sigterm_always_exits_0_without_a_traceback(stack: Stack, tmp_path: Path) -> None:
    """50 starts and SIGTERMs of a real serve (2 gunicorn workers, the embedded worker,
    SQLite), SLOTS at a time, each slot with its own data dir and database: every stop exits
    0 with no traceback and no gunicorn error in its log."""
    slots = []
    for k in range(SLOTS):
        slot = tmp_path / f"slot{k}"
        slot.mkdir()
        config = stack.receiver_config(f"sqlite:///{slot}/stop.db", rules=[], targets={},
                                       remediation={"poll_interval": "5s"})
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        cfg.setdefault("server", {})["workers"] = GUNICORN_WORKERS
        cfg["data_dir"] = str(slot / "data")
        config.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        slots.append((config, stack._env(config), slot))

    def run_slot(k: int) -> list[tuple[int, int | None, float, str]]:
        return [_one_stop(i, *slots[k]) for i in range(k, STOPS, SLOTS)]

    with ThreadPoolExecutor(SLOTS) as pool:
        results = [r for done in pool.map(run_slot, range(SLOTS)) for r in done]

    codes = [code for _, code, _, _ in results]
    print(f"\n{STOPS} stops: exit codes {sorted(set(codes), key=str)}; stop took "
          f"max {max(t for _, _, t, _ in results):.2f} s")
    bad = [(i, code, err[-2000:]) for i, code, _, err in results
           if code != 0 or "Traceback" in err or "[ERROR]" in err]
    assert not bad, "\n".join(f"stop #{i}: exit {code}\n{err}" for i, code, err in bad)
