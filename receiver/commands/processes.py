"""The long-running processes: ``serve`` (gunicorn, with an embedded worker) and ``worker``.

Heavy modules are imported inside the commands: ``serve`` must set PROMETHEUS_MULTIPROC_DIR
before prometheus_client is first imported.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import click

from receiver.commands.options import CONFIG_OPTION, load_config_or_exit, store_for
from receiver.errors import StoreError


@click.command()
@CONFIG_OPTION
@click.option("--bind", help="host:port to listen on (overrides server.bind).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 64), help="threads per worker.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept unauthenticated webhook posts when no webhook auth is configured "
    "(the JSON API and pages still need an operator).",
)
@click.option("--no-worker", is_flag=True, help="Do not start the embedded remediation worker.")
def serve(
    config_path: str,
    bind: str | None,
    workers: int | None,
    threads: int | None,
    insecure_no_auth: bool,
    no_worker: bool,
) -> None:
    """Run the receiver under gunicorn, with one embedded remediation worker by default."""
    config = load_config_or_exit(config_path)
    if not config.auth.configured and not insecure_no_auth:
        click.echo(
            "refusing to start: no webhook auth configured (auth.bearer_token or auth.basic).\n"
            "Configure it, or pass --insecure-no-auth to accept unauthenticated requests.",
            err=True,
        )
        sys.exit(2)
    if not config.auth.configured:
        from receiver.app import INSECURE_NO_AUTH_WARNING

        click.echo(f"WARNING: {INSECURE_NO_AUTH_WARNING}", err=True)

    _check_data_dir(config.data_dir)
    metrics_dir = config.data_dir / "prometheus-multiproc"
    try:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        _exit_if_no_space(config.data_dir, exc)
        raise
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from receiver.runtime.logs import configure_logging
    from receiver.runtime.server import run_gunicorn
    from receiver.secrets import redactor_for

    configure_logging(config.logging.level, config.logging.format, redactor_for(config))
    if config.store.migrate_on_start:
        from receiver.audit.checkpoints import store_options
        from receiver.store import open_store

        store = open_store(config.store_url(), pool_min=0, pool_max=2, **store_options(config))
        try:
            store.migrate()
            _record_config(store, config_path, "serve")
        except StoreError as exc:
            _exit_if_no_space(config.data_dir, exc)
            click.echo(f"migration failed: {exc}", err=True)
            sys.exit(1)
        finally:
            store.close()
    # Until gunicorn installs its own handlers, a SIGTERM (a deploy stopping a process that
    # is still starting) unwinds through the finally below, so the stop checkpoint is kept.
    signal.signal(signal.SIGTERM, _stop_while_starting)
    embedded = None
    master = os.getpid()  # gunicorn's forked workers unwind through the finally below too
    try:
        _audit_checkpoint(config, "start", "serve")
        if config.server.embedded_worker and not no_worker:
            import subprocess

            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            embedded = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "receiver", "worker", "-c", config_path,
                 "--exit-with-parent"],
                env=env,
            )
        run_gunicorn(
            config,
            bind=bind or config.server.bind,
            workers=workers or config.server.workers,
            threads=threads or config.server.threads,
            insecure_no_auth=insecure_no_auth,
        )
    finally:
        if os.getpid() == master:  # not in a gunicorn worker that is exiting
            if embedded is not None:
                embedded.terminate()
                try:
                    embedded.wait(timeout=15)
                except Exception:  # noqa: BLE001 - last resort at shutdown
                    embedded.kill()
            _audit_checkpoint(config, "stop", "serve")


@click.command()
@CONFIG_OPTION
@click.option("--threads", type=click.IntRange(1, 32), default=2, show_default=True,
              help="jobs run at once by this process.")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="stop when the parent process goes away (used by serve).")
def worker(config_path: str, threads: int, exit_with_parent: bool) -> None:
    """Run a remediation worker (any number, on any hosts sharing the store)."""
    import signal
    import threading

    from receiver.remediation.worker import Worker
    from receiver.runtime.logs import configure_logging
    from receiver.secrets import redactor_for

    config = load_config_or_exit(config_path)
    configure_logging(config.logging.level, config.logging.format, redactor_for(config))
    store = store_for(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    w = Worker(config, store)
    try:
        _record_config(store, config_path, f"worker {w.id}")
    except StoreError as exc:
        click.echo(f"could not record the configuration in the audit log: {exc}", err=True)
    from receiver.audit.checkpoints import checkpoint_quietly

    checkpoint_quietly(store, config, reason="start", role=f"worker {w.id}")
    if exit_with_parent:
        parent = os.getppid()

        def watch() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    stop.set()

        threading.Thread(target=watch, daemon=True).start()
    click.echo(f"worker {w.id} started ({threads} threads, store {store.dialect})", err=True)
    try:
        w.run_forever(stop, threads=threads)
    finally:
        checkpoint_quietly(store, config, reason="stop", role=f"worker {w.id}")
        store.close()


MIN_FREE_BYTES = 1024 * 1024
"""Free space the data directory needs for serve to start (the SQLite store, its WAL, the
secret key, audit checkpoints and the metrics files of each gunicorn worker live there)."""


def _check_data_dir(data_dir: Path) -> None:
    """Create the data directory (0700) and refuse to start when it has no room."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        free = shutil.disk_usage(data_dir).free
    except OSError as exc:
        _exit_if_no_space(data_dir, exc)
        raise
    if free < MIN_FREE_BYTES:
        _no_space(data_dir, free)


def _exit_if_no_space(data_dir: Path, exc: BaseException) -> None:
    """Exit with the no-space message if ``exc`` came from a full data directory."""
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError:
        free = None
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or (free is not None and free < MIN_FREE_BYTES):
        _no_space(data_dir, free)


def _no_space(data_dir: Path, free: int | None) -> None:
    left = "no" if not free else f"only {free} bytes of"
    click.echo(
        f"no space left in DATA_DIR ({data_dir}): {left} free space, and remediator needs at"
        f" least {MIN_FREE_BYTES // 1024} KiB there to start.\n"
        "Free space on that filesystem (old logs, files of other programs) or point data_dir"
        " at a larger one, then start again. The SQLite store, its WAL, the secret key and"
        " the audit checkpoints live there; do not delete them to make room.",
        err=True,
    )
    sys.exit(1)


def _record_config(store: Any, config_path: str, process: str) -> None:
    from receiver.intake.engine import utcnow
    from receiver.remediation import controls

    controls.record_config_loaded(store, config_path, process=process, now=utcnow())


def _stop_while_starting(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _audit_checkpoint(config: Any, reason: str, role: str) -> None:
    """A signed checkpoint of the audit chain's head when ``serve`` starts and stops."""
    from receiver.audit.checkpoints import checkpoint_quietly

    try:
        store = store_for(config)
    except Exception as exc:  # noqa: BLE001 - reported; the process goes on
        click.echo(f"audit checkpoint ({reason}) not written: {exc}", err=True)
        return
    try:
        checkpoint_quietly(store, config, reason=reason, role=role)
    finally:
        store.close()
