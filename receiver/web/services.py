"""The objects a request handler needs, built once by create_app and kept on the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from receiver.config import Config
from receiver.engine import Intake
from receiver.metrics import Metrics
from receiver.store import Store
from receiver.web.auth import Authenticator


@dataclass
class Services:
    config: Config
    store: Store
    intake: Intake
    auth: Authenticator
    metrics: Metrics
    wakers: list[Callable[[], None]] = field(default_factory=list)

    def wake_workers(self) -> None:
        for wake in self.wakers:
            wake()


def services() -> Services:
    svc: Services = current_app.extensions["remediator"]
    return svc
