"""Guards, re-checked by the worker at execution time, in a fixed order.

1. kill switch (global ``remediator pause`` or per rule) -> blocked
2. maintenance window covering the rule or a target       -> blocked
3. cooldown per rule and target                           -> blocked
4. rate budget, per rule and global                       -> blocked
5. blast radius, per job and per window                   -> blocked
6. dry-run / shadow mode (global, per rule, or runtime)   -> dry_run (plan recorded)
   game day: the incident is a game day's (see receiver.store.gamedays) and not every
   target is one of the scenario's live targets            -> dry_run (plan recorded)
7. circuit breaker open for the rule                      -> needs approval
8. approval policy (required, by severity, by risk, earned autonomy: see
   receiver.remediation.autonomy)                          -> needs approval

A job that a human approved skips 7 and 8, never 1-6: a pause or a maintenance window
still wins over an approval given earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from receiver.config import Config
from receiver.durations import format_duration
from receiver.intake.severity import Severity
from receiver.remediation.rules import RateBudget, RemediationRule
from receiver.store import UnitOfWork
from receiver.store.jobs import Job

PAUSED = "paused"
DRY_RUN = "dry_run"


def rule_paused(rule: str) -> str:
    return f"paused:rule:{rule}"


def breaker(rule: str) -> str:
    return f"breaker:rule:{rule}"


Outcome = Literal["pass", "block", "dry_run", "approval"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    guard: str = ""
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


PASS = Decision("pass")


def cooldown_block(
    uow: UnitOfWork, *, job: Job, rule: RemediationRule, targets: list[str], now: datetime
) -> Decision | None:
    """The cooldown guard alone; the worker checks it again while holding the targets' locks.
    A cooldown of 0 is off (clocks of two workers may differ by a little)."""
    cooldown = rule.guards.cooldown
    if cooldown <= timedelta(0) or job.undoes_job_id is not None:
        return None  # an undo takes an action back, it does not repeat it
    last = uow.targets.last_action(rule.name, targets, exclude_job=job.id)
    if last is not None and now - last < cooldown:
        return Decision("block", "cooldown",
                        f"rule {rule.name} acted on these targets at {last.isoformat()}; "
                        f"cooldown {format_duration(cooldown)}",
                        {"last_action_at": last.isoformat()})
    return None


def evaluate(
    uow: UnitOfWork,
    *,
    job: Job,
    rule: RemediationRule,
    config: Config,
    targets: list[str],
    high_risk: bool,
    always_approve: str | None,
    now: datetime,
    record: bool = True,
) -> Decision:
    """The first guard that stops or diverts the job, in the module's order, read in
    ``uow`` (the worker's claim transaction); :data:`PASS` when none does. ``record=False``:
    a read-only look (earned autonomy's promotions and setbacks are not written)."""
    controls = uow.controls.all()
    for name in (PAUSED, rule_paused(rule.name)):
        c = controls.get(name)
        if c is not None and c.value == "true":
            scope = "all remediation" if name == PAUSED else f"rule {rule.name}"
            return Decision("block", "kill_switch",
                            f"{scope} paused by {c.updated_by}: {c.reason}",
                            {"control": name})

    for window in config.remediation.maintenance_windows:
        if window.active(now) and window.covers(rule.name, targets):
            return Decision("block", "maintenance_window",
                            f"maintenance window {window.name!r} is active",
                            {"window": window.name})

    g = rule.guards
    blocked = cooldown_block(uow, job=job, rule=rule, targets=targets, now=now)
    if blocked is not None:
        return blocked

    budgets: list[tuple[RateBudget | None, str | None, str]] = [
        (g.rate, rule.name, f"rule {rule.name}")
    ]
    if config.remediation.rate_budget is not None:
        budgets.append((config.remediation.rate_budget, None, "global"))
    for budget, rule_name, label in budgets:
        if budget is None:
            continue
        used = uow.targets.actions_since(now - budget.per, rule_name)
        if used >= budget.max:
            return Decision("block", "rate_budget",
                            f"{label} rate budget spent: {used} actions in the last "
                            f"{format_duration(budget.per)} (max {budget.max})",
                            {"used": used, "max": budget.max})

    br = g.blast_radius
    if len(targets) > br.max_targets_per_job:
        return Decision("block", "blast_radius",
                        f"job would touch {len(targets)} targets (max {br.max_targets_per_job})",
                        {"targets": len(targets)})
    windows: list[tuple[int | None, timedelta, str | None]] = [
        (br.max_targets_per_window, br.window, rule.name)
    ]
    if config.remediation.max_targets_per_window is not None:
        windows.append((config.remediation.max_targets_per_window,
                        config.remediation.targets_window, None))
    for limit, span, only_rule in windows:
        if limit is None:
            continue
        label = f"rule {only_rule}" if only_rule else "global"
        touched = uow.targets.targets_since(now - span, only_rule)
        if touched + len(targets) > limit:
            return Decision("block", "blast_radius",
                            f"{label} blast radius: {touched} targets touched in the last "
                            f"{format_duration(span)}, {len(targets)} more would pass {limit}",
                            {"touched": touched, "max": limit})

    c = controls.get(DRY_RUN)
    if config.remediation.dry_run or g.dry_run or (c is not None and c.value == "true"):
        return Decision("dry_run", "dry_run", "dry-run: recording the plan, touching nothing")
    drill = uow.gamedays.for_incident(job.incident_id)
    if drill is not None and not (targets and set(targets) <= set(drill.targets)):
        return Decision("dry_run", "gameday",
                        f"game day {drill.id}: dry-run, not every target is a live target "
                        "of the scenario", {"gameday": drill.id})

    if job.approved_at is not None:
        return PASS
    b = controls.get(breaker(rule.name))
    if b is not None and b.value == "open":
        return Decision("approval", "circuit_breaker",
                        f"circuit breaker open for rule {rule.name}: {b.reason}")
    severity = Severity(job.severity)
    if always_approve:
        return Decision("approval", "approval_policy", f"needs approval: {always_approve}")
    if rule.approval.mode_for(severity) == "earned":  # receiver.remediation.autonomy
        from receiver.remediation import autonomy  # deferred: autonomy imports this module

        return autonomy.decide(uow, job=job, rule=rule, high_risk=high_risk, now=now,
                               record=record)
    if rule.approval.required_for(severity, high_risk=high_risk):
        mode = rule.approval.mode_for(severity)
        why = "high-risk action" if mode == "risk" else f"rule requires approval at {severity}"
        return Decision("approval", "approval_policy", why)
    return PASS
