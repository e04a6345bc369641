"""``remediator serve`` with the intake's store transaction replaced by a constant result.

    python bench/stub_serve.py serve -c remediator.yml --bind ... --no-worker

Everything else of a webhook request runs as in production: the HTTP worker, Flask, auth,
validation, classification (``Intake.prepare``), metrics, the log line and the response.
``bench/floor.py --decompose`` runs it next to the floor and the real server, so that what
the store transaction costs under load is the difference. It stores nothing: never a
server to point Alertmanager at.
"""

from __future__ import annotations

from typing import Any

from receiver.cli import main
from receiver.intake import engine
from receiver.store.records import IngestResult


def _accept(self: engine.Intake, notification: Any, body: str) -> IngestResult:
    self.prepare(notification, body)
    return IngestResult(notification_id=1, duplicate_delivery=False, incident_id=1)


engine.Intake.accept = _accept  # type: ignore[method-assign, assignment]  # in the master, before the fork

if __name__ == "__main__":
    main(prog_name="remediator")
