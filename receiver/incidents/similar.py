"""Similar past incidents: which ended incidents look like this one, and how each ended.

**Signature.** An incident's signature is three sets of terms made from its alerts:

- ``N``: its alert names (``a:<alertname>``);
- ``S``: its service labels, the pairs ``key=value`` whose key is in
  ``incidents.similar.service_labels`` (default ``service``, ``job``, ``container``, ``app``),
  as ``s:<key>=<value>``;
- ``L``: its other label pairs (``l:<key>=<value>``), leaving out ``alertname`` and
  ``incidents.similar.ignore_labels`` (default ``instance``, ``pod``, ``severity``).

A term longer than :data:`MAX_TERM` characters is kept as a hash of itself (it still matches
an equal one); an incident keeps at most :data:`MAX_TERMS` terms (names first, then
services, then labels, each in sorted order).

**Score.** With ``J(X, Y) = |X ∩ Y| / |X ∪ Y|`` (Jaccard), and the kinds ``k`` in ``N, S, L``
weighted ``w_N = 0.5``, ``w_S = 0.3``, ``w_L = 0.2``::

    similarity(A, B) = sum(w_k * J(A_k, B_k)) / sum(w_k for k where A_k ∪ B_k is not empty)
    score(A, B)      = similarity(A, B) * 2 ** (-age / half_life)

where ``age`` is how long before ``now`` the past incident opened (never negative) and
``half_life`` is ``incidents.similar.half_life`` (default 30 days). ``similarity`` is
symmetric, in ``[0, 1]``, 1 for equal signatures and 0 for disjoint ones; kinds that
neither incident has do not count, so two incidents without service labels can still be
equal. Past incidents whose similarity is under ``min_score`` are not shown; the rest are
ranked by score (highest first), then by the newer opening, then by the higher id.

**Bounded cost.** A worker chore (:func:`index_due`) follows the timeline's state events
(``resolved``, ``reopened``, ``state_changed``) and writes the terms of each incident that
has ended into the store's index; the webhook writes nothing for it. A lookup
(:func:`find`) reads, for each term of the incident at hand, at most ``per_term`` of the
newest incidents carrying it, keeps the :data:`MAX_CANDIDATES` with the most shared
weight, reads their terms and scores them here: at most ``MAX_TERMS * per_term`` index
rows, however many incidents the store holds.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from receiver.config import Config
from receiver.config.similar import SimilarConfig
from receiver.durations import format_duration
from receiver.store import Store
from receiver.store.similar import ENDED, IndexCursor, PastIncident
from receiver.store.unit import UnitOfWork

WEIGHTS = {"a": 0.5, "s": 0.3, "l": 0.2}
"""The weight of each kind of term: alert names, services, other labels."""
MAX_TERM = 200
MAX_TERMS = 64
MAX_CANDIDATES = 60
INDEX_BATCH = 500
SETTLE = timedelta(minutes=2)
"""An event is read again once this old: longer than any transaction that could still
commit an event with a lower id."""


# -- signatures and the score (pure) ------------------------------------------------------


def _term(kind: str, text: str) -> str:
    term = f"{kind}:{text}"
    if len(term) <= MAX_TERM:
        return term
    return f"{kind}#{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


def terms_for(alerts: Iterable[tuple[str, Mapping[str, str]]],
              cfg: SimilarConfig) -> frozenset[str]:
    """The signature terms of an incident with these ``(alertname, labels)`` alerts."""
    services = set(cfg.service_labels)
    ignored = set(cfg.ignore_labels) | {"alertname"}
    names: set[str] = set()
    svc: set[str] = set()
    other: set[str] = set()
    for alertname, labels in alerts:
        names.add(_term("a", str(alertname)))
        for key, value in labels.items():
            if key in services:
                svc.add(_term("s", f"{key}={value}"))
            elif key not in ignored:
                other.add(_term("l", f"{key}={value}"))
    ordered = sorted(names) + sorted(svc) + sorted(other)
    return frozenset(ordered[:MAX_TERMS])


def kind_of(term: str) -> str:
    return term[0]


def _split(terms: Iterable[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {k: set() for k in WEIGHTS}
    for term in terms:
        if kind_of(term) in out:
            out[kind_of(term)].add(term)
    return out


def similarity(a: Iterable[str], b: Iterable[str]) -> float:
    """The weighted Jaccard similarity of two signatures (see the module docstring)."""
    return _similarity(_split(a), _split(b))


def _similarity(sa: Mapping[str, set[str]], sb: Mapping[str, set[str]]) -> float:
    total = weight = 0.0
    for kind, w in WEIGHTS.items():
        union = sa[kind] | sb[kind]
        if not union:
            continue
        weight += w
        total += w * len(sa[kind] & sb[kind]) / len(union)
    return min(total / weight, 1.0) if weight else 0.0  # 0.7 / 0.7 can be 1.0000000000000002


def decay(age: timedelta, half_life: timedelta) -> float:
    """``2 ** (-age / half_life)``; a past incident that opened "in the future" counts as now."""
    seconds = max(age.total_seconds(), 0.0)
    return float(2.0 ** (-seconds / half_life.total_seconds()))


def score(a: Iterable[str], b: Iterable[str], age: timedelta, half_life: timedelta) -> float:
    return similarity(a, b) * decay(age, half_life)


def describe(term: str) -> str:
    """A term as people read it (``alertname=X``, ``key=value``); hashed ones say so."""
    if len(term) > 1 and term[1] == "#":
        return {"a": "a long alert name", "s": "a long service label",
                "l": "a long label"}.get(term[0], "a long label")
    text = term[2:]
    return f"alertname={text}" if term[0] == "a" else text


# -- what a lookup returns ----------------------------------------------------------------


@dataclass(frozen=True)
class SimilarIncident:
    """A past incident like this one, how it ended and what fixed it."""

    id: int
    title: str
    severity: str
    state: str
    opened_at: datetime
    resolved_at: datetime | None
    score: float
    similarity: float
    shared: tuple[str, ...]
    """What the two share, as people read it (``alertname=X``, ``service=y``)."""
    resolved_by: str | None
    """Who ended it (``system`` when its alerts resolved on their own)."""
    fixed_by_job: int | None
    fixed_by_playbook: str | None
    fixed_by_rule: str | None
    approved_by: str | None
    fixed_by_person: str | None
    """When no job fixed it: the person who resolved it, if a person did."""
    time_to_resolve_s: int | None

    @property
    def time_to_resolve(self) -> str:
        if self.time_to_resolve_s is None:
            return "—"
        return format_duration(timedelta(seconds=self.time_to_resolve_s))

    @property
    def postmortem_path(self) -> str:
        return f"/api/v1/incidents/{self.id}/postmortem.md"

    @property
    def fixed_by(self) -> str:
        """What fixed it, in a few words."""
        if self.fixed_by_playbook is not None:
            who = f"approved by {self.approved_by}" if self.approved_by else "automatically"
            return (f"job #{self.fixed_by_job} {self.fixed_by_playbook} "
                    f"(rule {self.fixed_by_rule}), {who}")
        if self.fixed_by_person is not None:
            return f"by hand: {self.fixed_by_person}"
        return "nothing recorded (its alerts resolved)"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "severity": self.severity, "state": self.state,
            "opened_at": self.opened_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "score": round(self.score, 4), "similarity": round(self.similarity, 4),
            "shared": list(self.shared), "resolved_by": self.resolved_by,
            "fixed_by": {"job_id": self.fixed_by_job, "playbook": self.fixed_by_playbook,
                         "rule": self.fixed_by_rule, "approved_by": self.approved_by,
                         "person": self.fixed_by_person, "summary": self.fixed_by},
            "time_to_resolve_s": self.time_to_resolve_s,
            "postmortem": self.postmortem_path,
        }


def _person(actor: str | None) -> str | None:
    return actor[len("user:"):] if actor and actor.startswith("user:") else None


# -- the chore and the lookup -------------------------------------------------------------


def index_due(store: Store, config: Config, *, now: datetime,
              limit: int = INDEX_BATCH) -> int:
    """Index the incidents whose state changed since the last run (one transaction): an
    ended incident's terms are rewritten, any other's removed. The incidents come from the
    timeline's state events after the cursor, at most ``limit``; each event is read again
    once it is :data:`SETTLE` old, so one whose transaction committed after a later one's is
    not missed. Returns how many events were read; safe on any number of workers (the walk
    is serialised by an advisory lock)."""
    cfg = config.incidents.similar
    if not cfg.enabled:
        return 0
    with store.unit() as uow:
        uow.tx.advisory_lock("similar-incidents-index")
        cursor = uow.similar.cursor()
        fresh = uow.similar.events_after(cursor.seen_event_id, limit=limit)
        settling = uow.similar.events_after(cursor.settled_event_id,
                                            upto_id=cursor.seen_event_id, limit=limit)
        settled_to = cursor.settled_event_id
        for event in settling:
            if event.at > now - SETTLE:
                break
            settled_to = event.id
        again = [e for e in settling if e.id <= settled_to]
        ids = sorted({e.incident_id for e in fresh + again})
        if not ids:
            return 0
        states = {s.id: s.state for s in uow.similar.states(ids)}
        ended = [i for i in ids if states.get(i) in ENDED]
        ended_set = set(ended)
        alerts: dict[int, list[tuple[str, Mapping[str, str]]]] = defaultdict(list)
        for a in uow.similar.alerts_of(ended):
            alerts[a.incident_id].append((a.alertname, a.labels or {}))
        uow.similar.replace_terms({
            i: terms_for(alerts[i], cfg) if i in ended_set else frozenset() for i in ids})
        seen = fresh[-1].id if fresh else cursor.seen_event_id
        uow.similar.advance(IndexCursor(settled_to, seen))
    return len(fresh) + len(again)


def find(store: Store, config: Config, incident_id: int, *,
         now: datetime) -> list[SimilarIncident]:
    """The past incidents most like ``incident_id`` (see the module docstring), best first;
    one read transaction."""
    if not config.incidents.similar.enabled:
        return []
    with store.unit(write=False) as uow:
        return find_in(uow, config, incident_id, now=now)


def find_in(uow: UnitOfWork, config: Config, incident_id: int, *,
            now: datetime) -> list[SimilarIncident]:
    """:func:`find` inside a unit of work the caller holds."""
    cfg = config.incidents.similar
    if not cfg.enabled:
        return []
    mine = terms_for(((a.alertname, a.labels or {})
                      for a in uow.similar.alerts_of([incident_id])), cfg)
    if not mine:
        return []
    weight = _hit_weights(mine)
    shared_weight: dict[int, float] = defaultdict(float)
    for hit in uow.similar.hits(mine, per_term=cfg.per_term):
        if hit.incident_id != incident_id:
            shared_weight[hit.incident_id] += weight[hit.term]
    candidates = sorted(shared_weight, key=lambda i: (-shared_weight[i], -i))
    candidates = candidates[:MAX_CANDIDATES]
    theirs: dict[int, set[str]] = defaultdict(set)
    for hit in uow.similar.terms_of(candidates):
        theirs[hit.incident_id].add(hit.term)
    past = {p.id: p for p in uow.similar.past(candidates)}
    ranked = _rank(mine, theirs, past, cfg, now)[:cfg.limit]
    ids = [p.id for p, _, _ in ranked]
    endings = {e.incident_id: e for e in uow.similar.endings(ids)}  # the last one wins
    fixes = {j.incident_id: j for j in uow.similar.fixes(ids)}
    out = []
    for p, sim, total in ranked:
        ending, fix = endings.get(p.id), fixes.get(p.id)
        ended_at = p.resolved_at or p.closed_at
        out.append(SimilarIncident(
            id=p.id, title=p.title, severity=p.severity, state=p.state,
            opened_at=p.opened_at, resolved_at=p.resolved_at, score=total, similarity=sim,
            shared=tuple(describe(t) for t in sorted(mine & theirs[p.id])),
            resolved_by=ending.actor if ending else None,
            fixed_by_job=fix.id if fix else None,
            fixed_by_playbook=fix.playbook if fix else None,
            fixed_by_rule=fix.rule if fix else None,
            approved_by=fix.decided_by if fix else None,
            fixed_by_person=None if fix else _person(ending.actor if ending else None),
            time_to_resolve_s=(int((ended_at - p.opened_at).total_seconds())
                               if ended_at else None),
        ))
    return out


def _hit_weights(mine: frozenset[str]) -> dict[str, float]:
    by_kind = _split(mine)
    return {t: WEIGHTS[kind_of(t)] / max(len(by_kind[kind_of(t)]), 1) for t in mine}


def _rank(mine: frozenset[str], theirs: Mapping[int, set[str]],
          past: Mapping[int, PastIncident], cfg: SimilarConfig,
          now: datetime) -> list[tuple[PastIncident, float, float]]:
    scored = []
    split = _split(mine)
    for pid, p in past.items():
        if p.opened_at > now:
            continue  # opened after the moment asked about (a post-mortem of an old one)
        sim = _similarity(split, _split(theirs.get(pid, ())))
        if sim < cfg.min_score or sim <= 0:
            continue
        scored.append((p, sim, sim * decay(now - p.opened_at, cfg.half_life)))
    scored.sort(key=lambda x: (-x[2], -x[0].opened_at.timestamp(), -x[0].id))
    return scored

