"""The remediation worker: the loop around the steps of a job.

Any number of worker processes, on any number of hosts, share one store. A job is leased to
one worker at a time; the lease is renewed while the playbook runs. A lease that runs out
(the worker died) makes the job ``interrupted``: it is re-run if its playbook is idempotent,
and escalated to a human otherwise. Every step is written with its timeline event and audit
entry in the same transaction as the state change.

This module is the loop: threads, wake-ups (the store's listener), lease sweeps, chores.
The steps of one job are in :mod:`receiver.remediation.steps` (claim, check, lock, plan,
start, run, verify, conclude), what a job shares between them in
:mod:`receiver.remediation.session`, and what a failure leads to (retry, next rule, breaker,
escalation) in :mod:`receiver.remediation.failure`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from typing import Any

import structlog

from playbooks import load_registry
from playbooks.base import Playbook
from receiver.adapters import AdapterFactory
from receiver.config import Config
from receiver.errors import PlaybookError, StoreError
from receiver.intake.engine import utcnow
from receiver.people import approvals
from receiver.remediation import autonomy, failure, silences, steps, undo
from receiver.remediation.failure import Failure
from receiver.remediation.guards import Decision
from receiver.remediation.session import JobSession, Refused, open_session, short
from receiver.secrets import redactor_for
from receiver.store import Store, UnitOfWork
from receiver.store.jobs import Job
from receiver.store.locks import CHANNEL

log = structlog.get_logger(__name__)


class Worker:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        adapters: AdapterFactory | None = None,
        registry: dict[str, Playbook[Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.store = store
        store.redact_with(redactor_for(config))  # no secret in the events and audit it writes
        self.clock = clock
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.adapters = adapters or AdapterFactory()
        self.registry = registry if registry is not None else load_registry()
        self.sleep = sleep
        self.lease = config.remediation.lease
        self._wake = threading.Event()
        self._last_sweep = 0.0

    # -- the loop ---------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def run_forever(self, stop: threading.Event, threads: int = 2) -> None:
        # Import the client libraries now, not during the first job (about 0.3 s).
        import receiver.adapters.docker  # noqa: F401
        import receiver.adapters.postgres  # noqa: F401
        import receiver.adapters.redis  # noqa: F401

        listener = threading.Thread(target=self._listen, args=(stop,), daemon=True)
        listener.start()
        pool = [threading.Thread(target=self._loop, args=(stop,), daemon=True)
                for _ in range(threads)]
        pool.append(threading.Thread(target=self._chore_loop,
                                     args=(stop, "notify", self.deliver), daemon=True))
        pool.append(threading.Thread(target=self._chore_loop,
                                     args=(stop, "chores", self.chores), daemon=True))
        if self.config.chat.enabled:  # incident rooms: receiver.comms.chat
            from receiver.comms.chat import ChatService

            chat = ChatService(self.config, self.store, clock=self.clock, worker_id=self.id)
            pool.append(threading.Thread(target=chat.run_forever, args=(stop,), daemon=True))
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def chores(self) -> int:
        """The store-driven chores besides jobs: SLA timers, diagnostics and the audit
        chain's periodic signed checkpoint. Safe to run from any number of workers at once
        (each step is a conditional update; a checkpoint is a file of its own)."""
        from receiver import diagnostics
        from receiver.audit import checkpoints as audit_checkpoints
        from receiver.incidents import metrics, similar, timers

        # First: a failing timer or a hanging probe must not hold up the checkpoint.
        done = audit_checkpoints.checkpoint_if_due(self.store, self.config,
                                                   process=f"worker {self.id}")
        done += timers.run_due(self.store, self.config, now=self.clock())
        done += diagnostics.run_due(self.store, self.config, clock=self.clock,
                                    worker_id=self.id, adapters=self.adapters)
        done += self.store.maintain()  # SQLite: checkpoint and truncate the WAL, bounded
        done += metrics.refresh_snapshot_if_due(self.store, self.config, self.clock())
        done += undo.run_due(self.store, self.config, now=self.clock())
        done += silences.expire_orphans(self.store, self.config, adapters=self.adapters,
                                        clock=self.clock)
        done += autonomy.refresh(self.store, self.config.rules, self.clock())
        done += similar.index_due(self.store, self.config, now=self.clock())
        return done

    def deliver(self) -> int:
        from receiver.comms import notify

        return notify.deliver_due(self.store, self.config, clock=self.clock, worker_id=self.id)

    def _chore_loop(self, stop: threading.Event, name: str, fn: Callable[[], int]) -> None:
        """Notifications and chores run in threads of their own: a channel that is down or
        a diagnostic that hangs never holds up a remediation job."""
        poll = self.config.remediation.poll_interval.total_seconds()
        while not stop.is_set():
            try:
                fn()
            except StoreError as exc:
                log.warning("worker_store_error", loop=name, error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must survive any single failure
                log.exception("worker_loop_error", loop=name)
            stop.wait(poll)

    def _loop(self, stop: threading.Event) -> None:
        poll = self.config.remediation.poll_interval.total_seconds()
        while not stop.is_set():
            self._wake.clear()  # before the work: a wake-up during it is not lost
            wait = poll
            try:
                if time.monotonic() - self._last_sweep >= poll:
                    self._last_sweep = time.monotonic()
                    self.sweep()
                while not stop.is_set() and self.run_once():
                    pass
                wait = self._until_next_due(poll)
            except StoreError as exc:
                log.warning("worker_store_error", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must survive any single job's bug
                log.exception("worker_loop_error")
            self._wake.wait(wait)

    def _until_next_due(self, poll: float) -> float:
        """Seconds until the earliest queued job becomes runnable (a retry, a lock wait),
        capped at the poll interval."""
        with self.store.unit(write=False) as uow:
            due = uow.jobs.next_due()
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))

    def _listen(self, stop: threading.Event) -> None:
        """Wake the claim loop as soon as a job may be runnable, so that it starts in
        milliseconds: the store's listener on the jobs channel (LISTEN on PostgreSQL; on
        SQLite any commit, seen within ~15 ms, see :class:`receiver.store.sqlite.SqliteListener`),
        woken by the commit that queued a job or freed the target it waits for
        (:func:`receiver.store.jobs.wake_workers`). The poll interval stays the fallback."""
        while not stop.is_set():
            try:
                with closing(self.store.listen(CHANNEL)) as listener:
                    while not stop.is_set():
                        if listener.wait(listener.tick):
                            self._wake.set()
            except StoreError as exc:
                log.warning("worker_listen_error", error=str(exc))
                stop.wait(2)
        self._wake.set()  # stopping: the claim loops end now, not after their poll wait

    # -- jobs -------------------------------------------------------------------------
    def sweep(self) -> list[int]:
        """Conclude jobs whose lease ran out (re-run idempotent ones, escalate the rest) and
        approvals past their expiry."""
        now = self.clock()
        handled = approvals.expire_due(self.store, now)
        with self.store.unit(write=False) as uow:
            candidates = uow.jobs.expired_leases(now)
        for cand in candidates:
            with self.store.unit() as uow:
                if failure.interrupted(uow, cand, registry=self.registry, now=now):
                    handled.append(cand.id)
        if handled:
            self.wake()
        return handled

    def run_once(self) -> bool:
        """Claim and process one job; False when there was nothing to claim.

        The claim, the guards and the target locks are one transaction; then the plan, the
        start (a transaction), the run, the verification and the conclusion (a transaction).
        """
        now = self.clock()
        session: JobSession | None = None
        crash: Exception | None = None
        with self.store.unit() as uow:
            job = steps.claim(uow, worker=self.id, now=now, lease=self.lease)
            if job is None:
                return False
            try:
                session, decision = self._admit(uow, job, now)
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - concluded below, after the claim commits
                crash = exc
        bound = log.bind(job_id=job.id, incident_id=job.incident_id, rule=job.rule)
        try:
            if crash is not None:
                raise crash
            if session is not None and decision is not None:
                self._carry(session, decision)
            self.wake()  # a job waiting for this one's targets may go now
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bug ends this job as failed, not the worker
            bound.exception("job_crashed")
            if session is not None:
                silences.end(session, why="the job crashed", config=self.config,
                             clock=self.clock)
            with self.store.unit() as uow:
                failure.crashed(uow, job, short(exc), owner=self.id, now=self.clock())
        finally:
            if session is not None:
                session.close()
        return True

    def _process(self, job: Job) -> None:
        """Handle a job this worker has claimed (check, lock, then the rest)."""
        with self.store.unit() as uow:
            session, decision = self._admit(uow, job, self.clock())
        if session is None:
            return
        try:
            if decision is not None:
                self._carry(session, decision)
        finally:
            session.close()

    def _admit(self, uow: UnitOfWork, job: Job,
               now: datetime) -> tuple[JobSession | None, Decision | None]:
        """In the claim's unit of work: the job's session, its guards and (when it may act
        now) its target locks. The decision to carry on with, or None when the job ended
        here (refused, blocked) or waits for a target."""
        try:
            session = open_session(job, config=self.config, registry=self.registry,
                                   store=self.store, adapters=self.adapters, clock=self.clock)
        except Refused as exc:
            steps.refuse(uow, job, str(exc), owner=self.id, now=now)
            return None, None
        try:
            decision = steps.check(uow, session, owner=self.id, now=now, config=self.config)
            if decision is not None and decision.outcome == "pass" and not steps.lock(
                    uow, session, owner=self.id, now=now, lease=self.lease,
                    poll_interval=self.config.remediation.poll_interval):
                decision = None
        except BaseException:
            session.close()
            raise
        return session, decision

    def _carry(self, s: JobSession, decision: Decision) -> None:
        """Plan, then park the job (dry run, approval) or start, run, verify, conclude."""
        if s.job.undoes_job_id is not None:  # an undo job: receiver.remediation.undo
            undo.carry(self, s, decision)
            return
        try:
            plan = steps.plan(s)
        except (PlaybookError, OSError) as exc:
            targets = s.targets
            self._fail(s, Failure(f"plan failed: {short(exc)}", targets=targets))
            return
        if decision.outcome in ("dry_run", "approval"):
            with self.store.unit() as uow:
                steps.park(uow, s, decision, plan, owner=self.id, now=self.clock(),
                           config=self.config)
            return
        with self.store.unit() as uow:
            if not steps.start(uow, s, plan, owner=self.id, now=self.clock(),
                               lease=self.lease):
                return
        silences.begin(s, config=self.config, clock=self.clock)  # the rule's `silence`
        result, error = steps.run(s, store=self.store, owner=self.id, lease=self.lease,
                                  clock=self.clock)
        if error is not None or result is None or not result.ok:
            why = error or (result.summary if result else "no result")
            silences.end(s, why="the job failed", config=self.config, clock=self.clock)
            self._fail(s, Failure(why, result=result, targets=s.targets))
            return
        checks, ok = steps.verify(s, result, config=self.config, sleep=self.sleep)
        silences.end(s, why="verification " + ("passed" if ok else "failed"),
                     config=self.config, clock=self.clock)
        if not ok:
            undo.after_verification_failed(self.store, s, now=self.clock())  # rule's `undo`
            failed = next((c for c in checks if not c["ok"]), {"summary": "verification failed"})
            self._fail(s, Failure(
                f"verification failed: {failed['summary']}", result=result,
                payload={**result.as_dict(), "verification": checks},
                first=("verification_failed",
                       f"job #{s.job.id} verification failed: {failed['summary']}",
                       {"checks": checks})))
            return
        with self.store.unit() as uow:
            steps.conclude(uow, s, result, checks, owner=self.id, now=self.clock())

    def _fail(self, s: JobSession, f: Failure) -> None:
        chain = failure.next_rule(self.config, s)
        with self.store.unit() as uow:
            failure.fail(uow, s, f, owner=self.id, now=self.clock(), config=self.config,
                         chain=chain)
