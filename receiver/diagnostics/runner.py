"""Which checks apply to an incident (rendered with its alerts' labels), and running them in
parallel, each cut off at its own timeout. A check's failure never fails the others."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from receiver.config import DiagnosticCheck, DiagnosticsConfig, HttpProbe, PrometheusProbe
from receiver.diagnostics.findings import CheckResult, Finding
from receiver.diagnostics.probes import PROBES, ProbeEnv, target_of
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.intake.matchers import CompiledMatch
from receiver.remediation.promql import render_query
from receiver.remediation.rules import render_params
from receiver.remediation.targets import TargetsConfig
from receiver.remediation.urls import build_url
from receiver.store.evidence import IncidentAlert

log = structlog.get_logger(__name__)

MAX_INSTANCES = 5
"""A check templated on labels runs for at most this many distinct targets per incident."""
ADAPTER_GRACE_S = 1.0
"""Adapters get the check's timeout plus this, so the runner's cut-off is what ends a check,
and an abandoned thread still ends soon after it."""


@dataclass(frozen=True)
class Planned:
    """One check to run, its probe rendered with one alert's labels."""

    check: DiagnosticCheck
    probe: BaseModel

    @property
    def timeout_s(self) -> float:
        return self.check.timeout.total_seconds()


# -- which checks apply -------------------------------------------------------------------------


def plan(
    cfg: DiagnosticsConfig,
    alerts: list[IncidentAlert],
    *,
    clock: Callable[[], datetime],
    targets: TargetsConfig,
) -> tuple[list[Planned], list[CheckResult]]:
    """The check instances that apply to an incident with these alerts (firing first).

    A check applies when any alert matches its matchers, or always without matchers. Its
    probe is rendered with each matching alert's labels and annotations (:func:`render_probe`);
    distinct renderings run once each, at most :data:`MAX_INSTANCES`. A check that applies
    but that no alert can render comes back as a ``refused`` result instead, with the reason.
    """
    planned: list[Planned] = []
    refused: list[CheckResult] = []
    contexts = [(dict(a.labels or {}), dict(a.annotations or {})) for a in alerts]
    for check in cfg.checks:
        match = CompiledMatch(check)
        matching = [c for c in contexts if match(c[0])] if match.matchers else contexts
        if not matching and match.matchers:
            continue
        seen: set[str] = set()
        problems: list[str] = []
        for labels, notes in matching or [({}, {})]:
            try:
                probe = render_probe(check.probe, labels, notes, targets)
            except TargetNotAllowed as exc:
                problems.append(f"not allowed: {_short(exc)}")
                continue
            except (ValueError, ValidationError) as exc:
                problems.append(f"cannot render from the alert labels: {_short(exc)}")
                continue
            key = json.dumps(probe.model_dump(mode="json"), sort_keys=True)
            if key not in seen and len(seen) < MAX_INSTANCES:
                seen.add(key)
                planned.append(Planned(check, probe))
        if not seen:
            refused.append(CheckResult(
                check.name, check.kind,
                Finding("refused", problems[0],
                        {"outcome": "refused", "errors": problems[:MAX_INSTANCES]}),
                clock(), 0,
            ))
    return planned, refused


def render_probe(
    probe: BaseModel, labels: dict[str, str], notes: dict[str, str], targets: TargetsConfig
) -> BaseModel:
    """``probe`` with one alert's values in: URLs through
    :func:`~receiver.remediation.urls.build_url` (TargetNotAllowed when the allowlist or the
    URL's shape refuses), PromQL through :func:`~receiver.remediation.promql.render_query`,
    other fields validated by the probe's model."""
    if isinstance(probe, HttpProbe):
        return probe.model_copy(update={"url": build_url(probe.url, labels, notes, targets.http)})
    if isinstance(probe, PrometheusProbe):
        return probe.model_copy(update={
            "url": build_url(probe.url, labels, notes, targets.http),
            "queries": {k: render_query(q, labels, notes) for k, q in probe.queries.items()},
        })
    raw = render_params(probe.model_dump(mode="python"), labels, notes)
    return type(probe).model_validate(raw)


# -- running checks in parallel, each with its timeout --------------------------------------


def run_checks(
    planned: list[Planned],
    env: ProbeEnv,
    *,
    parallelism: int,
    clock: Callable[[], datetime],
) -> list[CheckResult]:
    """Run the checks on a thread pool; a check still running at its timeout is recorded as
    ``timeout`` and abandoned (its adapter's own timeout ends the thread soon after)."""
    if not planned:
        return []
    results: list[CheckResult | None] = [None] * len(planned)
    started: dict[int, tuple[float, datetime]] = {}
    lock = threading.Lock()

    def task(i: int) -> tuple[Finding, int]:
        with lock:
            started[i] = (time.monotonic(), clock())
        return _probe(planned[i], env)

    longest = max(p.timeout_s for p in planned) + ADAPTER_GRACE_S
    hard_stop = time.monotonic() + longest * math.ceil(len(planned) / parallelism) + 5
    pool = ThreadPoolExecutor(max_workers=min(parallelism, len(planned)),
                              thread_name_prefix="diagnostics")
    futures: dict[Future[tuple[Finding, int]], int] = {
        pool.submit(task, i): i for i in range(len(planned))
    }
    waiting = set(futures)
    try:
        while waiting:
            now = time.monotonic()
            deadlines = [hard_stop]
            for future in list(waiting):
                i = futures[future]
                item = planned[i]
                with lock:
                    began = started.get(i)
                if future.done():
                    finding, ms = future.result()
                    at = began[1] if began else clock()
                    results[i] = CheckResult(item.check.name, item.check.kind, finding, at, ms)
                elif began is not None and now >= began[0] + item.timeout_s:
                    results[i] = _timed_out(item, began[1])
                elif began is None and now >= hard_stop:
                    results[i] = _timed_out(item, clock(), started=False)
                else:
                    if began is not None:
                        deadlines.append(began[0] + item.timeout_s)
                    continue
                waiting.discard(future)
            if waiting:
                pause = min(deadlines) - time.monotonic()
                wait(waiting, timeout=min(max(pause, 0.005), 0.1), return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [r for r in results if r is not None]


def _timed_out(item: Planned, at: datetime, *, started: bool = True) -> CheckResult:
    seconds = f"{item.timeout_s:g}s"
    summary = (f"no answer within {seconds}" if started
               else "not started: every diagnostics thread was busy")
    finding = Finding("timeout", f"{_target_of(item)}: {summary}",
                      {"timeout_s": item.timeout_s, **_describe(item)})
    return CheckResult(item.check.name, item.check.kind, finding, at,
                       int(item.timeout_s * 1000) if started else 0)


def _probe(item: Planned, env: ProbeEnv) -> tuple[Finding, int]:
    begun = time.perf_counter()
    try:
        finding = PROBES[item.check.kind](item.probe, item.timeout_s + ADAPTER_GRACE_S, env)
    except TargetNotAllowed as exc:
        finding = Finding("refused", f"not allowed: {exc}", {})
    except ValidationError as exc:
        finding = Finding("refused", f"invalid value from the alert: {_short(exc)}", {})
    except PlaybookError as exc:  # AdapterError included: the system could not be asked
        finding = Finding("error", f"{_target_of(item)}: {exc}", {})
    except Exception as exc:  # noqa: BLE001 - one check's bug must not fail the others
        log.exception("diagnostic_check_crashed", check=item.check.name)
        finding = Finding("error", f"{_target_of(item)}: {type(exc).__name__}: {exc}", {})
    detail = {**_describe(item), **finding.detail}
    elapsed = int((time.perf_counter() - begun) * 1000)
    return Finding(finding.outcome, finding.summary, detail), elapsed


def _describe(item: Planned) -> dict[str, Any]:
    return {"target": _target_of(item)}


def _target_of(item: Planned) -> str:
    return target_of(item.probe, item.check.name)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        text = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errors
        )
    else:
        text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
