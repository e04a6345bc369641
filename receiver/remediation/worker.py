"""The remediation worker: claim a job, re-check guards, plan, lock, run, verify, conclude.

Any number of worker processes, on any number of hosts, share one store. A job is leased to
one worker at a time; the lease is renewed while the playbook runs. A lease that runs out
(the worker died) makes the job ``interrupted``: it is re-run if its playbook is idempotent,
and escalated to a human otherwise. Every step is written with its timeline event and audit
entry in the same transaction as the state change.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from playbooks import load_registry
from playbooks.base import Playbook, PlaybookContext, Risk, RunResult
from receiver.adapters import AdapterFactory
from receiver.config import Config
from receiver.errors import PlaybookError, StoreError, TargetNotAllowed
from receiver.incidents.states import ACTIVE
from receiver.intake.engine import utcnow
from receiver.people import approvals
from receiver.remediation import guards
from receiver.remediation.rules import RemediationRule, params_from_alert
from receiver.remediation.verification import run_checks
from receiver.secrets import redactor_for
from receiver.store import Store, events
from receiver.store import incidents as incident_store
from receiver.store import jobs as job_store
from receiver.store.db import Listener, Row, Tx

log = structlog.get_logger(__name__)

LOCK_RETRY = timedelta(milliseconds=250)


def _msg(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[:limit] + "..."


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
        from receiver.incidents import metrics, timers

        # First: a failing timer or a hanging probe must not hold up the checkpoint.
        done = audit_checkpoints.checkpoint_if_due(self.store, self.config,
                                                   process=f"worker {self.id}")
        done += timers.run_due(self.store, self.config, now=self.clock())
        done += diagnostics.run_due(self.store, self.config, clock=self.clock,
                                    worker_id=self.id, adapters=self.adapters)
        done += self.store.db.maintain()  # SQLite: checkpoint and truncate the WAL, bounded
        done += metrics.refresh_snapshot_if_due(self.store, self.config, self.clock())
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
        with self.store.db.transaction(write=False) as tx:
            due = job_store.next_due(tx)
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))

    def _listen(self, stop: threading.Event) -> None:
        """Wake the claim loop as soon as a job may be runnable, so that it starts in
        milliseconds: the store's listener on the jobs channel (LISTEN on PostgreSQL; on
        SQLite any commit, seen within ~15 ms, see :class:`receiver.store.db.SqliteListener`),
        woken by the commit that queued a job or freed the target it waits for
        (:func:`receiver.store.jobs.wake_workers`). The poll interval stays the fallback."""
        listener: Listener | None = None
        while not stop.is_set():
            try:
                if listener is None:
                    listener = self.store.db.listen(job_store.CHANNEL)
                while not stop.is_set():
                    if listener.wait(listener.tick):
                        self._wake.set()
            except StoreError as exc:
                log.warning("worker_listen_error", error=str(exc))
                if listener is not None:
                    listener.close()
                    listener = None
                stop.wait(2)
        if listener is not None:
            listener.close()
        self._wake.set()  # stopping: the claim loops end now, not after their poll wait

    # -- one step -----------------------------------------------------------------------
    def sweep(self) -> list[int]:
        """Conclude jobs whose lease ran out (re-run idempotent ones, escalate the rest) and
        approvals past their expiry."""
        now = self.clock()
        handled = approvals.expire_due(self.store, now)
        with self.store.db.transaction(write=False) as tx:
            candidates = job_store.expired_leases(tx, now)
        for cand in candidates:
            with self.store.db.transaction() as tx:
                incident_store.lock(tx, cand["incident_id"])
                job = job_store.interrupt(tx, cand["id"], now)
                if job is None:
                    continue  # another worker swept it first
                handled.append(job["id"])
                self._event(tx, job, "job_interrupted", "system",
                            f"job #{job['id']} interrupted: its worker's lease ran out", {})
                playbook = self.registry.get(job["playbook"])
                idempotent = playbook is not None and playbook.idempotent
                # The row is ours since the conditional interrupt above: these moves are
                # made from exactly 'interrupted'.
                if idempotent and job["attempts"] < max(job["max_attempts"], 1) + 2:
                    if job_store.move(tx, job["id"], "queued", now=now,
                                      from_states=("interrupted",)):
                        self._event(tx, job, "job_requeued", "system",
                                    f"job #{job['id']} re-queued: {job['playbook']} is "
                                    "idempotent", {})
                elif job_store.move(tx, job["id"], "escalated", now=now,
                                    from_states=("interrupted",),
                                    reason="interrupted; not safe to re-run automatically"):
                    self._escalate(tx, job, "interrupted while running; "
                                   f"{job['playbook']} is not idempotent, a human must check")
        if handled:
            self.wake()
        return handled

    def run_once(self) -> bool:
        """Claim and process one job; False when there was nothing to claim."""
        now = self.clock()
        with self.store.db.transaction() as tx:
            job = job_store.claim(tx, worker=self.id, now=now, lease=self.lease)
            if job is None:
                return False
            self._event(tx, job, "job_claimed", "system",
                        f"job #{job['id']} claimed by {self.id} (attempt {job['attempts']})",
                        {"worker": self.id, "attempt": job["attempts"]})
        bound = log.bind(job_id=job["id"], incident_id=job["incident_id"], rule=job["rule"])
        try:
            self._process(job)
            self.wake()  # a job waiting for this one's targets may go now
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bug ends this job as failed, not the worker
            bound.exception("job_crashed")
            with self.store.db.transaction() as tx:
                incident_store.lock(tx, job["incident_id"])
                if job_store.move(tx, job["id"], "failed", now=self.clock(), owner=self.id,
                                  reason=_msg(exc)):
                    job_store.release_locks(tx, job["id"])
                    self._event(tx, job, "job_failed", "system",
                                f"job #{job['id']} failed: {_msg(exc)}", {})
                    self._escalate(tx, job, f"job crashed: {_msg(exc)}")
        return True

    def _process(self, job: Row) -> None:
        rule = self.config.rule(job["rule"])
        playbook = self.registry.get(job["playbook"])
        if rule is None or playbook is None:
            missing = "rule" if rule is None else "playbook"
            self._conclude(job, "refused", f"{missing} {job['rule']!r} is no longer configured")
            return
        ctx = PlaybookContext(targets=self.config.targets, clock=self.clock,
                              log=log.bind(job_id=job["id"]), adapters=self.adapters,
                              from_alert=params_from_alert(rule.params, job["params"]))
        try:
            params = playbook.parse_params(job["params"])
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            self._conclude(job, "refused", f"invalid params: {problems}")
            return
        try:
            playbook.check_allowed(params, ctx)
        except TargetNotAllowed as exc:
            self._conclude(job, "refused", f"target not allowed: {exc}")
            return
        targets = playbook.targets(params)
        risk = playbook.risk_for(params, ctx)
        always = playbook.approval_required(params, ctx)

        now = self.clock()
        with self.store.db.transaction() as tx:
            decision = guards.evaluate(tx, job=job, rule=rule, config=self.config,
                                       targets=targets, high_risk=risk is Risk.HIGH,
                                       always_approve=always, now=now)
            if decision.outcome == "block":
                moved = job_store.move(tx, job["id"], "blocked", now=now, owner=self.id,
                                       reason=decision.reason, targets=targets)
                if moved:
                    self._event(tx, job, "job_blocked", "system",
                                f"job #{job['id']} blocked by {decision.guard}: {decision.reason}",
                                {"guard": decision.guard, **decision.detail})
                return

        if decision.outcome in ("dry_run", "approval"):
            try:
                plan = playbook.plan(params, ctx)
            except (PlaybookError, OSError) as exc:
                self._fail(job, rule, f"plan failed: {_msg(exc)}", targets=targets)
                return
            now = self.clock()
            state = "dry_run" if decision.outcome == "dry_run" else "awaiting_approval"
            with self.store.db.transaction() as tx:
                moved = job_store.move(tx, job["id"], state, now=now, owner=self.id,
                                       reason=decision.reason, plan=plan.as_dict(),
                                       targets=targets, risk=risk.value,
                                       idempotent=int(playbook.idempotent))
                if moved and state == "awaiting_approval":
                    approvals.open_approval(tx, self.config, moved, now)
                if moved:
                    kind = "job_dry_run" if state == "dry_run" else "job_awaiting_approval"
                    self._event(tx, job, kind, "system",
                                f"job #{job['id']} {state.replace('_', ' ')}: {plan.summary}"
                                f" ({decision.reason})",
                                {"guard": decision.guard, "plan": plan.as_dict()})
            return

        # Take the targets' locks first: the plan is made (and the cooldown re-checked)
        # while no other job can act on them.
        if not self._lock_targets(job, rule, targets):
            return
        try:
            plan = playbook.plan(params, ctx)
        except (PlaybookError, OSError) as exc:
            self._fail(job, rule, f"plan failed: {_msg(exc)}", targets=targets)
            return
        now = self.clock()
        with self.store.db.transaction() as tx:
            incident_store.lock(tx, job["incident_id"])
            # The point of no return: act only while this worker still holds a live lease
            # (a sweep may have interrupted and re-queued the job while it was planned).
            started = job_store.start(
                tx, job["id"], self.id, now=now, until=now + self.lease,
                fields={"plan": plan.as_dict(), "targets": targets, "risk": risk.value,
                        "idempotent": int(playbook.idempotent),
                        "max_attempts": rule.on_failure.retries + 1
                        if rule.on_failure.action == "retry" else 1},
            )
            if started is None:
                current = job_store.get(tx, job["id"])
                if current is None or current["state"] != "running":
                    job_store.release_locks(tx, job["id"])
                log.warning("job_lease_lost", job_id=job["id"], worker=self.id,
                            state=current["state"] if current else None)
                return
            job_store.record_targets(tx, job["id"], rule.name, targets, now)
            self._event(tx, job, "job_started", "system",
                        f"job #{job['id']} running {playbook.name}: {plan.summary}",
                        {"plan": plan.as_dict(), "targets": targets}, at=now)
            incident_store.transition(tx, job["incident_id"], "mitigating", now=now,
                                      actor="system", reason=f"job #{job['id']} started",
                                      job_id=job["id"], only_from=frozenset({"open",
                                                                             "acknowledged"}))

        result, error = self._run_with_heartbeat(job, playbook, params, ctx)
        if error is not None or result is None or not result.ok:
            why = error or (result.summary if result else "no result")
            self._fail(job, rule, why, result=result, targets=targets)
            return

        checks: list[dict[str, Any]] = []
        ok = True
        try:
            own = playbook.verify(params, ctx, result)
        except (PlaybookError, OSError) as exc:
            own = None
            checks.append({"check": "playbook", "ok": False, "summary": _msg(exc)})
            ok = False
        if own is not None:
            checks.append({"check": "playbook", **own.as_dict()})
            ok = ok and own.ok
        if ok:
            labels = self._alert_labels(job)
            for c in run_checks(rule.verify, labels, lambda: self._resolved(job), self.sleep,
                                hosts=self.config.targets.http, adapters=self.adapters):
                checks.append(c.as_dict())
                ok = ok and c.ok
        self._finish(job, rule, result, checks, ok)

    # -- helpers ------------------------------------------------------------------------
    def _lock_targets(self, job: Row, rule: RemediationRule, targets: list[str]) -> bool:
        """Lock every target for this job. If another job holds one, put this job back in
        the queue until that lock is released (said once on the timeline). Under the lock,
        the cooldown is checked again, so two jobs cannot both pass it and act in turn."""
        now = self.clock()
        with self.store.db.transaction() as tx:
            busy = job_store.acquire_locks(tx, job["id"], targets, now=now,
                                           until=now + self.lease)
            if busy:
                # Woken when the holder releases the lock (job_store.release_locks); the timed
                # retry is only a fallback, like the poll interval everywhere else.
                fallback = max(LOCK_RETRY, self.config.remediation.poll_interval)
                delay = fallback * (1 + random.random())  # noqa: S311 - jitter, not security
                moved, holder, new = job_store.wait_for_target(
                    tx, job["id"], busy[0], owner=self.id, now=now, retry_at=now + delay,
                    attempts=job["attempts"] - 1)
                if moved is None:
                    return False  # the lease was lost meanwhile: the job is not ours to move
                if new:  # said once, not at every retry
                    how = "is promised to" if holder and holder.get("promised") else "is held by"
                    self._event(tx, job, "job_waiting", "system",
                                f"job #{job['id']} waits: {busy[0]} {how} job "
                                f"#{holder['job_id'] if holder else '?'}", {"targets": busy})
                return False
            blocked = guards.cooldown_block(tx, job=job, rule=rule, targets=targets, now=now)
            if blocked is not None:
                job_store.release_locks(tx, job["id"])
                if job_store.move(tx, job["id"], "blocked", now=now, owner=self.id,
                                  reason=blocked.reason, targets=targets):
                    self._event(tx, job, "job_blocked", "system",
                                f"job #{job['id']} blocked by cooldown: {blocked.reason}",
                                {"guard": "cooldown", **blocked.detail})
                return False
        return True


    def _run_with_heartbeat(
        self, job: Row, playbook: Playbook[Any], params: Any, ctx: PlaybookContext
    ) -> tuple[RunResult | None, str | None]:
        done = threading.Event()

        def beat() -> None:
            interval = max(self.lease.total_seconds() / 3, 0.2)
            while not done.wait(interval):
                try:
                    with self.store.db.transaction() as tx:
                        job_store.extend_lease(tx, job["id"], self.id, self.clock() + self.lease)
                except StoreError as exc:
                    log.warning("lease_renewal_failed", job_id=job["id"], error=str(exc))

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        try:
            return playbook.run(params, ctx), None
        except (PlaybookError, OSError, TimeoutError) as exc:
            return None, _msg(exc)
        finally:
            done.set()
            t.join()

    def _finish(self, job: Row, rule: RemediationRule, result: RunResult,
                checks: list[dict[str, Any]], ok: bool) -> None:
        now = self.clock()
        payload = {**result.as_dict(), "verification": checks}
        if not ok:
            failed = next((c for c in checks if not c["ok"]), {"summary": "verification failed"})
            self._fail(job, rule, f"verification failed: {failed['summary']}", result=result,
                       payload=payload,
                       first=("verification_failed",
                              f"job #{job['id']} verification failed: {failed['summary']}",
                              {"checks": checks}))
            return
        with self.store.db.transaction() as tx:
            incident_store.lock(tx, job["incident_id"])
            if not job_store.move(tx, job["id"], "succeeded", now=now, owner=self.id,
                                  result=payload):
                return
            job_store.release_locks(tx, job["id"])
            if checks:
                self._event(tx, job, "verification_passed", "system",
                            f"job #{job['id']} verified: "
                            + "; ".join(c["summary"] for c in checks), {"checks": checks},
                            at=now)
            self._event(tx, job, "job_succeeded", "system",
                        f"job #{job['id']} succeeded: {result.summary}", {"result": payload},
                        at=now)
            incident_store.transition(tx, job["incident_id"], "mitigated", now=now,
                                      actor="system", reason=f"job #{job['id']} succeeded",
                                      job_id=job["id"], only_from=ACTIVE)

    def _fail(self, job: Row, rule: RemediationRule, why: str, *,
              result: RunResult | None = None, targets: list[str] | None = None,
              payload: dict[str, Any] | None = None,
              first: tuple[str, str, dict[str, Any]] | None = None) -> None:
        """Conclude a failed attempt (retry, fail, next rule, escalate), only while this worker
        still owns the job; ``first`` is an event recorded just before, on the same terms."""
        now = self.clock()
        on = rule.on_failure
        nxt = self.config.rule(on.next_rule) if on.action == "next" and on.next_rule else None
        next_params = self._params_for(job, nxt) if nxt is not None else {}
        with self.store.db.transaction() as tx:
            incident_store.lock(tx, job["incident_id"])
            fields: dict[str, Any] = {"reason": why[:1000]}
            if payload is not None or result is not None:
                fields["result"] = payload or (result.as_dict() if result else None)
            if targets is not None:
                fields["targets"] = targets
            retry = on.action == "retry" and job["attempts"] <= on.retries
            if retry:
                delay = on.backoff * (2 ** (job["attempts"] - 1))
                moved = job_store.move(tx, job["id"], "queued", now=now, owner=self.id,
                                       not_before=now + delay, **fields)
                if moved:
                    job_store.release_locks(tx, job["id"])
                    if first is not None:
                        self._event(tx, job, first[0], "system", first[1], first[2])
                    self._event(tx, job, "job_retry_scheduled", "system",
                                f"job #{job['id']} failed ({why}); retry {job['attempts']}/"
                                f"{on.retries} in {int(delay.total_seconds())}s", {"error": why})
                return
            if not job_store.move(tx, job["id"], "failed", now=now, owner=self.id, **fields):
                return
            job_store.release_locks(tx, job["id"])
            if first is not None:
                self._event(tx, job, first[0], "system", first[1], first[2])
            self._event(tx, job, "job_failed", "system", f"job #{job['id']} failed: {why}",
                        {"error": why})
            self._maybe_trip_breaker(tx, job, rule, now)
            if nxt is not None and job["chain_depth"] < self.config.remediation.max_chain_depth:
                follow = job_store.enqueue_followup(tx, job, rule=nxt.name, playbook=nxt.playbook,
                                                    params=next_params, now=now)
                if follow is not None:
                    self._event(tx, follow, "job_enqueued", "system",
                                f"job #{follow['id']} queued after job #{job['id']} failed:"
                                f" rule {nxt.name} -> {nxt.playbook}",
                                {"parent_job_id": job["id"]})
                    job_store.wake_workers(tx)
                    return
            self._escalate(tx, job, f"remediation failed: {why}")

    def _params_for(self, job: Row, rule: RemediationRule) -> dict[str, Any]:
        from receiver.remediation.rules import TemplateError, render_rule_params

        labels, annotations = self._alert_labels(job), self._alert_annotations(job)
        try:
            params: dict[str, Any] = render_rule_params(rule, labels, annotations)
        except TemplateError:
            params = dict(rule.params)  # the follow-up job is then refused with the reason
        return params

    def _maybe_trip_breaker(self, tx: Tx, job: Row, rule: RemediationRule,
                            now: datetime) -> None:
        """K failures of a rule within its window open its breaker: further jobs of the rule
        need approval until someone resets it."""
        cb = rule.guards.circuit_breaker
        failures = job_store.failures_since(tx, rule.name, now - cb.window)
        if failures < cb.failures:
            return
        reason = f"{failures} failures within {cb.window}"
        # One conditional upsert: of several workers failing jobs of this rule at once, the
        # one that opens the breaker says so.
        if job_store.set_control_unless(tx, guards.breaker(rule.name), "open", reason=reason,
                                        actor="system", now=now):
            self._event(tx, job, "circuit_opened", "system",
                        f"circuit breaker opened for rule {rule.name}: {reason}; further "
                        "jobs of this rule need approval until it is reset",
                        {"rule": rule.name, "failures": failures})

    def _escalate(self, tx: Tx, job: Row, why: str) -> None:
        """Hand the incident back to people: the event (notified), and an incident that
        automation was mitigating returns to open, or to acknowledged if someone had."""
        now = self.clock()
        self._event(tx, job, "escalated", "system", f"escalated to a human: {why}",
                    {"job_id": job["id"]}, as_job=False, at=now)
        row = tx.fetchone("SELECT acknowledged_at FROM incidents WHERE id = :id",
                          {"id": job["incident_id"]})
        back = "acknowledged" if row and row["acknowledged_at"] else "open"
        incident_store.transition(tx, job["incident_id"], back, now=now, actor="system",
                                  reason=f"remediation by job #{job['id']} did not succeed",
                                  job_id=job["id"], only_from=frozenset({"mitigating"}))

    def _event(self, tx: Tx, job: Row, kind: str, actor: str, message: str,
               detail: dict[str, Any], *, as_job: bool = True,
               at: datetime | None = None) -> None:
        events.record(tx, incident_id=job["incident_id"], at=at or self.clock(), kind=kind,
                      actor=actor, message=message, detail=detail,
                      job_id=job["id"] if as_job else None)

    def _conclude(self, job: Row, state: str, reason: str) -> None:
        with self.store.db.transaction() as tx:
            if job_store.move(tx, job["id"], state, now=self.clock(), owner=self.id,
                              reason=reason[:1000]):
                kind = "job_refused" if state == "refused" else f"job_{state}"
                self._event(tx, job, kind, "system", f"job #{job['id']} {state}: {reason}",
                            {"reason": reason})

    def _alert_row(self, job: Row) -> Row | None:
        if job["alert_id"] is None:
            return None
        with self.store.db.transaction(write=False) as tx:
            return tx.fetchone("SELECT labels, annotations, status FROM alerts WHERE id = :id",
                               {"id": job["alert_id"]})

    def _alert_labels(self, job: Row) -> dict[str, str]:
        row = self._alert_row(job)
        return dict(row["labels"]) if row else {}

    def _alert_annotations(self, job: Row) -> dict[str, str]:
        row = self._alert_row(job)
        return dict(row["annotations"]) if row else {}

    def _resolved(self, job: Row) -> bool:
        with self.store.db.transaction(write=False) as tx:
            if job["alert_id"] is not None:
                row = tx.fetchone("SELECT status FROM alerts WHERE id = :id",
                                  {"id": job["alert_id"]})
                return row is not None and row["status"] == "resolved"
            row = tx.fetchone(
                "SELECT COUNT(*) AS n FROM alerts WHERE incident_id = :id AND status = 'firing'",
                {"id": job["incident_id"]},
            )
            return row is not None and int(row["n"]) == 0
