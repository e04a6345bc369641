"""Chat rooms of incidents: one interface (:mod:`.base`), the Matrix backend (:mod:`.matrix`),
the Slack backend (:mod:`.slack`), what is written in a room (:mod:`.text`), the outgoing
side (:mod:`.rooms`: a room per incident, its timeline in order) and the incoming side
(:mod:`.inbound`: approvals decided in the room, bound to a person).

:class:`ChatService` runs both sides in a worker (two threads, started by
``Worker.run_forever`` when ``chat.matrix`` or ``chat.slack`` is configured; Slack has no
reading side: its buttons come to ``POST /slack/interactivity``, its messages to
``POST /slack/events``). All state lives in the
store (``receiver/store/chat.py``), so any number of workers can run it at once. A new
backend is one module implementing :class:`~receiver.comms.chat.base.ChatBackend` and one
branch in :func:`backend_for`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from receiver.comms.chat import inbound, rooms
from receiver.comms.chat.base import ChatBackend
from receiver.config import Config
from receiver.errors import DeliveryFailed, StoreError
from receiver.secrets import redactor_for
from receiver.store import Store

log = structlog.get_logger(__name__)

__all__ = ["ChatService", "backend_for"]


def backend_for(config: Config) -> ChatBackend | None:
    """The configured chat backend, or None when chat is off."""
    if config.chat.matrix is not None:
        from receiver.comms.chat.matrix import MatrixBackend

        return MatrixBackend(config.chat.matrix)
    if config.chat.slack is not None:
        from receiver.comms.chat.slack import SlackBackend

        return SlackBackend(config.chat.slack)
    return None


class ChatService:
    def __init__(self, config: Config, store: Store, *, clock: Callable[[], datetime],
                 worker_id: str, backend: ChatBackend | None = None) -> None:
        found = backend if backend is not None else backend_for(config)
        if found is None:
            raise ValueError("chat is not configured (chat.matrix or chat.slack)")
        self.backend: ChatBackend = found
        self.config = config
        self.store = store
        store.redact_with(redactor_for(config))  # no secret in the messages it queues
        self.clock = clock
        self.worker_id = worker_id

    def deliver(self) -> int:
        """Create due rooms and post due messages; how much was done (0: nothing to do)."""
        return rooms.deliver_due(self.store, self.config, self.backend, clock=self.clock,
                                 worker_id=self.worker_id)

    def sync(self, timeout: float | None = None) -> int | None:
        """Read the rooms once and act on the decisions found (None: another worker reads)."""
        wait = self.config.chat.sync_timeout.total_seconds() if timeout is None else timeout
        return inbound.sync_once(self.store, self.config, self.backend, clock=self.clock,
                                 worker_id=self.worker_id, timeout=wait)

    def run_forever(self, stop: threading.Event) -> None:
        reader: threading.Thread | None = None
        if getattr(self.backend, "reads_rooms", True):  # Slack posts to /slack/interactivity
            reader = threading.Thread(target=self._sync_loop, args=(stop,), daemon=True,
                                      name="chat-sync")
            reader.start()
        poll = self.config.chat.poll_interval.total_seconds()
        while not stop.is_set():
            busy = False
            try:
                busy = self.deliver() > 0  # work done: look again at once, it may have more
            except StoreError as exc:
                log.warning("chat_store_error", loop="deliver", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must survive any single failure
                log.exception("chat_loop_error", loop="deliver")
            if not busy:
                stop.wait(poll)
        if reader is not None:
            reader.join(timeout=5)

    def _sync_loop(self, stop: threading.Event) -> None:
        poll = self.config.chat.poll_interval.total_seconds()
        failures = 0
        while not stop.is_set():
            try:
                if self.sync() is None:
                    stop.wait(poll)  # another worker reads the rooms
                failures = 0
            except (DeliveryFailed, StoreError) as exc:
                failures += 1
                log.warning("chat_sync_failed", error=str(exc), failures=failures)
                stop.wait(min(30.0, poll * 2 ** min(failures, 5)))
            except Exception:  # noqa: BLE001 - the loop must survive any single failure
                log.exception("chat_loop_error", loop="sync")
                stop.wait(poll)
