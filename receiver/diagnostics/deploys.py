"""The ``deploys`` probe: what changed recently on the containers and Swarm services an
incident names, and in a local git repository (checklist phase 2, "check recent
deployments").

For each Swarm service (it must be in ``targets.swarm_services``): when its spec was last
updated, its image and its previous image (the engine keeps the previous spec). For each
container (it must pass ``targets.containers``): when it was created, its image, and the
previous image its deploy recorded in ``previous_image_label``. With ``git``: the last
commits of that repository (:mod:`receiver.adapters.git`). The evidence carries
``deploy_window_s``; :func:`recent` tells which deploys fall within it before a time (the
post-mortem and the incident page flag those).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter

from receiver.adapters.deploys import parse_time
from receiver.adapters.git import GitLog
from receiver.config.deploys import DeploysProbe
from receiver.diagnostics.findings import Finding, Outcome
from receiver.errors import PlaybookError
from receiver.remediation.targets import ContainerName, ServiceName

if TYPE_CHECKING:
    from receiver.diagnostics.probes import ProbeEnv

_container_name: TypeAdapter[str] = TypeAdapter(ContainerName)
_service_name: TypeAdapter[str] = TypeAdapter(ServiceName)


def target_of(probe: DeploysProbe) -> str:
    names = [f"service {s}" for s in probe.services] + [f"container {c}" for c in probe.containers]
    if probe.git is not None:
        names.append(f"git {probe.git.path}")
    return "deploys of " + ", ".join(names)


def probe_deploys(probe: BaseModel, timeout_s: float, env: ProbeEnv) -> Finding:
    assert isinstance(probe, DeploysProbe)  # noqa: S101 - dispatched by kind
    deploys: list[dict[str, Any]] = []
    problems: list[str] = []
    services = [_service_name.validate_python(s) for s in dict.fromkeys(probe.services)]
    containers = [_container_name.validate_python(c) for c in dict.fromkeys(probe.containers)]
    for name in services:
        env.targets.swarm_service(name)  # TargetNotAllowed: the whole check is refused
    if services or containers:
        endpoint = env.targets.docker.model_copy(
            update={"timeout_s": max(1, math.ceil(timeout_s))})
        with env.adapters.deploys(endpoint) as docker:
            for name in services:
                revision = docker.revision(name)
                if revision is None:
                    problems.append(f"service {name}: not found")
                    continue
                deploys.append({
                    "kind": "service", "name": revision.name, "image": revision.image,
                    "previous_image": revision.previous_image,
                    "updated_at": revision.updated_at.isoformat() if revision.updated_at
                    else None,
                    "update_state": revision.update_state, "version": revision.version,
                })
            for name in containers:
                allowed = env.targets.container_allowed(name)
                if not allowed and not env.targets.containers.labels:
                    env.targets.check_container(name)
                found = docker.details(name)
                if found is None:
                    if not allowed:
                        env.targets.check_container(name)
                    problems.append(f"container {name}: not found")
                    continue
                if not allowed:
                    env.targets.check_container(found.name, found.labels)
                created = parse_time(found.created)
                deploys.append({
                    "kind": "container", "name": found.name, "image": found.image,
                    "previous_image": found.labels.get(probe.previous_image_label) or None,
                    "updated_at": created.isoformat() if created else None,
                    "update_state": found.status,
                })
    detail: dict[str, Any] = {"deploys": deploys,
                              "deploy_window_s": int(probe.deploy_window.total_seconds())}
    parts = [_describe(d) for d in deploys] + problems
    if probe.git is not None:
        try:
            commits = GitLog(probe.git.path, timeout_s=timeout_s).commits(probe.git.commits)
        except PlaybookError as exc:
            problems.append(str(exc))
            parts.append(str(exc))
            detail["git"] = {"path": probe.git.path, "error": str(exc)}
        else:
            detail["git"] = {"path": probe.git.path,
                             "commits": [c.as_dict() for c in commits]}
            head = f"; last {commits[0].sha} {commits[0].subject}" if commits else ""
            parts.append(f"git: {len(commits)} commit(s){head}")
    if problems:
        detail["problems"] = problems
    nothing = not deploys and "commits" not in detail.get("git", {})
    outcome: Outcome = "error" if problems and nothing else "ok"
    return Finding(outcome, "; ".join(parts) or "nothing to report", detail)


def _describe(d: Mapping[str, Any]) -> str:
    prev = f" (previous {d['previous_image']})" if d.get("previous_image") else ""
    return f"{d['kind']} {d['name']}: image {d['image']}{prev}, updated {d['updated_at'] or '?'}"


# -- which deploys were recent -----------------------------------------------------------

SLACK = timedelta(minutes=5)
"""A deploy up to this long after the alert's start still counts as just before it (clocks
differ, and a deploy that lands as the alert fires is the likeliest cause)."""


@dataclass(frozen=True)
class RecentDeploy:
    """A deploy (or a commit) that happened within the window before the alert started."""

    kind: str
    name: str
    image: str
    previous_image: str | None
    at: datetime
    before: timedelta
    """How long before the alert's start it happened."""


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _entries(detail: Mapping[str, Any]) -> Iterable[tuple[str, str, str, str | None, Any,
                                                          timedelta]]:
    """``(kind, name, image, previous image, time, window)`` of each deploy and commit in one
    piece of ``deploys`` evidence; entries of an unexpected shape (evidence cut at its size
    cap, say) are skipped."""
    raw = detail.get("deploy_window_s")
    window = timedelta(seconds=raw if isinstance(raw, int) and 0 <= raw < 10**7 else 0)
    for d in _list(detail.get("deploys")):
        previous = d.get("previous_image")
        yield (str(d.get("kind", "?")), str(d.get("name", "?")), str(d.get("image", "")),
               str(previous) if previous else None, d.get("updated_at"), window)
    git = detail.get("git")
    for c in _list(git.get("commits") if isinstance(git, Mapping) else None):
        yield ("commit", str(c.get("sha", "")), str(c.get("subject", "")), None, c.get("at"),
               window)


def recent(evidence_details: Iterable[Mapping[str, Any]],
           started: datetime | None) -> list[RecentDeploy]:
    """The deploys and commits of ``deploys`` evidence within its ``deploy_window_s`` before
    ``started`` (up to the start itself, and a few minutes after it: a deploy that lands as
    the alert fires is the likeliest cause), newest first, each once."""
    if started is None:
        return []
    out: dict[tuple[str, str, str], RecentDeploy] = {}
    for detail in evidence_details:
        if not isinstance(detail, Mapping):
            continue
        for kind, name, image, previous, at, window in _entries(detail):
            when = parse_time(at)
            if when is None:
                continue
            before = started - when
            if -SLACK <= before <= window:
                out[(kind, name, str(at))] = RecentDeploy(kind, name, image, previous, when,
                                                          before)
    return sorted(out.values(), key=lambda d: d.at, reverse=True)
