"""The objects a request handler needs, built once by create_app and kept on the app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from receiver.config import Config
from receiver.incidents.metrics import Metrics
from receiver.intake.engine import Intake
from receiver.store import Store
from receiver.web.auth import Authenticator


@dataclass
class Services:
    config: Config
    store: Store
    intake: Intake
    auth: Authenticator
    metrics: Metrics


def services() -> Services:
    svc: Services = current_app.extensions["remediator"]
    return svc
