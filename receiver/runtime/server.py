"""gunicorn embedding for ``remediator serve``: the app factory runs in each worker."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from receiver.config import Config
from receiver.runtime.http_worker import worker_class


def _child_exit(_server: Any, worker: Any) -> None:
    # gunicorn calls this from its SIGCHLD handler, which runs again, re-entrantly, when two
    # workers exit at once: nothing here may run an import (run_gunicorn has imported this
    # module, so the statement below only looks it up).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class _Gunicorn(BaseApplication):
    def __init__(self, config: Config, options: dict[str, Any], insecure_no_auth: bool) -> None:
        self._config = config
        self._options = options
        self._insecure = insecure_no_auth
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from receiver.app import create_app
        from receiver.runtime.logs import configure_logging
        from receiver.secrets import redactor_for

        configure_logging(self._config.logging.level, self._config.logging.format,
                          redactor_for(self._config))
        return create_app(self._config, insecure_no_auth=self._insecure)


def run_gunicorn(
    config: Config, *, bind: str, workers: int, threads: int, insecure_no_auth: bool
) -> None:
    # In the master, before any worker is forked (and after serve set
    # PROMETHEUS_MULTIPROC_DIR): an import interrupted by a second SIGCHLD in _child_exit
    # fails ("partially initialized module") and the master exits with status 1.
    import prometheus_client.multiprocess  # noqa: F401

    options = {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        # gthread whose threads only ever get complete requests (see receiver.runtime.http_worker)
        "worker_class": worker_class(config),
        "timeout": config.server.timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "child_exit": _child_exit,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "remediator",
    }
    _Gunicorn(config, options, insecure_no_auth).run()
