"""Similar past incidents: the score (pure, generated signatures) and the index and lookup
on both store backends (the chore indexes ended incidents only; a lookup ranks by the
documented score and says how each past incident ended and what fixed it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.config.similar import SimilarConfig
from receiver.incidents import lifecycle, similar
from receiver.incidents.similar import (
    MAX_TERM,
    MAX_TERMS,
    decay,
    describe,
    similarity,
    terms_for,
)
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

CFG = SimilarConfig()
HOSTILE = [
    "x'; DROP TABLE incident_terms; --",
    "<script>alert(1)</script>",
    "a" * 5000,
    "%s %(x)s {0} :term ?",
    "ü\u202e\u200b日本",
]

_text = st.text(min_size=0, max_size=40)
_alerts = st.lists(
    st.tuples(st.sampled_from(["AppDown", "HighLatency", "DiskFull", "x'"]),
              st.dictionaries(st.sampled_from(["service", "job", "env", "team", "instance",
                                               "region"]), _text, max_size=5)),
    min_size=0, max_size=4)


# -- the score (pure) ---------------------------------------------------------------------


@given(_alerts, _alerts)
@example([("DiskFull", {"team": "", "env": ""})], [("DiskFull", {"env": "", "team": ""})])
def test_similarity_is_symmetric_and_bounded(a: list, b: list) -> None:  # type: ignore[type-arg]
    """Whatever two incidents' alerts, similarity(A, B) == similarity(B, A), in [0, 1]."""
    ta, tb = terms_for(a, CFG), terms_for(b, CFG)
    s = similarity(ta, tb)
    assert s == pytest.approx(similarity(tb, ta))
    assert 0.0 <= s <= 1.0


@given(_alerts)
def test_an_incident_is_fully_similar_to_itself(a: list) -> None:  # type: ignore[type-arg]
    """A non-empty signature scores 1 against itself; an empty one 0."""
    t = terms_for(a, CFG)
    assert similarity(t, t) == (pytest.approx(1.0) if t else 0.0)


@given(st.lists(st.tuples(_text, st.dictionaries(_text, st.text(max_size=3000), max_size=80)),
                max_size=6))
@settings(max_examples=50)
def test_terms_are_bounded_whatever_the_labels(a: list) -> None:  # type: ignore[type-arg]
    """However many and however long the labels, an incident has at most MAX_TERMS terms,
    each at most MAX_TERM characters, and each readable by describe()."""
    t = terms_for(a, CFG)
    assert len(t) <= MAX_TERMS
    assert all(len(term) <= MAX_TERM for term in t)
    assert all(isinstance(describe(term), str) for term in t)


def test_weights_rank_alertname_over_service_over_labels() -> None:
    """Same alert name beats same service, which beats a shared non-service label."""
    base = terms_for([("AppDown", {"service": "api", "env": "prod"})], CFG)
    same_name = terms_for([("AppDown", {"service": "db", "env": "dev"})], CFG)
    same_service = terms_for([("DiskFull", {"service": "api", "env": "dev"})], CFG)
    same_label = terms_for([("DiskFull", {"service": "db", "env": "prod"})], CFG)
    assert similarity(base, same_name) > similarity(base, same_service) > \
        similarity(base, same_label) > 0
    assert similarity(base, terms_for([("X", {"service": "y"})], CFG)) == 0


def test_ignored_labels_and_kinds_neither_has_do_not_count() -> None:
    """instance differs on every incident and is left out; with no service labels on
    either side, equal names and labels still score 1."""
    a = terms_for([("AppDown", {"instance": "h1:9100", "env": "prod"})], CFG)
    b = terms_for([("AppDown", {"instance": "h2:9100", "env": "prod"})], CFG)
    assert similarity(a, b) == pytest.approx(1.0)


def test_recency_halves_per_half_life() -> None:
    """decay is 1 now (and for a future opening), 1/2 after one half-life, 1/4 after two."""
    day = timedelta(days=1)
    assert decay(timedelta(0), 30 * day) == 1.0
    assert decay(-day, 30 * day) == 1.0
    assert decay(30 * day, 30 * day) == pytest.approx(0.5)
    assert decay(60 * day, 30 * day) == pytest.approx(0.25)


def test_long_values_are_hashed_and_still_match() -> None:
    """A 5,000-character value is kept as a hash: equal values still match, unequal don't."""
    a = terms_for([("AppDown", {"service": "v" * 5000})], CFG)
    b = terms_for([("AppDown", {"service": "v" * 5000})], CFG)
    c = terms_for([("AppDown", {"service": "v" * 4999 + "w"})], CFG)
    assert a == b and a != c
    assert "a long service label" in [describe(t) for t in a]


# -- the index and the lookup, on both backends -------------------------------------------


@pytest.fixture
def kit(store: Store, clock: Clock) -> Kit:
    return Kit(store, clock, [rule("poke", matchers=['alertname="AppDown"'],
                                   params={"target": "{{ labels.service }}"})],
               people={"users": {"alice": {}}})


def _open(kit: Kit, group: str, alertname: str = "AppDown", **labels: str) -> int:
    alert = make_alert(alertname=alertname, labels=labels, starts_at=kit.clock())
    return int(kit.fire(make_notification([alert], group_key=group)).incident_id)


def _resolve(kit: Kit, incident_id: int, user: str = "alice") -> None:
    lifecycle.act(kit.store, kit.config, incident_id, "resolve", user=user, now=kit.clock())


def test_lookup_ranks_by_score_and_says_how_each_ended(kit: Kit, clock: Clock) -> None:
    """Past incidents sharing the alert name and service rank first, with who resolved them,
    the job that fixed one (playbook, rule, run automatically) and the time to resolve; an
    unrelated or still-open incident is not listed, and nothing shows before the chore ran."""
    fixed = _open(kit, "g1", service="api", env="prod")
    kit.drain()  # the fake restart_container job succeeds
    clock.advance(minutes=12)
    _resolve(kit, fixed)
    clock.advance(days=1)
    by_hand = _open(kit, "g2", alertname="HighLatency", service="api", env="prod")
    clock.advance(minutes=30)
    _resolve(kit, by_hand)
    unrelated = _open(kit, "g3", alertname="DiskFull", service="db", env="dev")
    _resolve(kit, unrelated)
    _open(kit, "g4", service="api", env="prod")  # still open: not a past incident
    clock.advance(hours=1)
    now = _open(kit, "g5", service="api", env="prod")

    assert similar.find(kit.store, kit.config, now, now=clock()) == []
    assert similar.index_due(kit.store, kit.config, now=clock()) >= 4
    assert similar.index_due(kit.store, kit.config, now=clock()) >= 1  # read once more
    assert similar.index_due(kit.store, kit.config, now=clock()) == 0

    found = similar.find(kit.store, kit.config, now, now=clock())
    assert [f.id for f in found] == [fixed, by_hand]
    first, second = found
    assert first.similarity == pytest.approx(1.0) and first.score < 1.0
    assert "alertname=AppDown" in first.shared and "service=api" in first.shared
    assert first.fixed_by_playbook == "restart_container" and first.fixed_by_rule == "poke"
    assert first.approved_by is None and "automatically" in first.fixed_by
    assert first.time_to_resolve_s == 12 * 60
    assert first.resolved_by == "user:alice"
    assert second.fixed_by_playbook is None and second.fixed_by_person == "alice"
    assert second.time_to_resolve_s == 30 * 60
    body = first.as_json()
    assert body["postmortem"] == f"/api/v1/incidents/{fixed}/postmortem.md"


def test_an_event_is_read_again_once_settled(kit: Kit, clock: Clock) -> None:
    """A state event is read when new and once more when SETTLE old (so one whose
    transaction committed after a later event's is not missed), then never again."""
    _resolve(kit, _open(kit, "g1", alertname="DiskFull"))
    assert similar.index_due(kit.store, kit.config, now=clock()) >= 1
    assert similar.index_due(kit.store, kit.config, now=clock()) == 0
    later = clock() + similar.SETTLE
    assert similar.index_due(kit.store, kit.config, now=later) >= 1
    assert similar.index_due(kit.store, kit.config, now=later) == 0


def test_a_reopened_incident_leaves_the_index(kit: Kit, clock: Clock) -> None:
    """An ended incident that is active again is no longer listed as a past one."""
    past = _open(kit, "g1", alertname="DiskFull", service="api")
    _resolve(kit, past)
    similar.index_due(kit.store, kit.config, now=clock())
    clock.advance(minutes=5)
    current = _open(kit, "g2", alertname="DiskFull", service="api")
    assert [f.id for f in similar.find(kit.store, kit.config, current, now=clock())] == [past]
    _reopen(kit, past)
    similar.index_due(kit.store, kit.config, now=clock())
    assert similar.find(kit.store, kit.config, current, now=clock()) == []


def _reopen(kit: Kit, incident_id: int) -> None:
    """An incident reopens when its alerts fire again within the flap window."""
    with kit.store.unit(write=False) as uow:
        alerts = uow.similar.alerts_of([incident_id])
    labels = dict(alerts[0].labels)
    labels.pop("alertname")
    kit.clock.advance(seconds=1)
    kit.fire(make_notification([make_alert(alertname=alerts[0].alertname, labels=labels,
                                           starts_at=kit.clock())], group_key="g1"))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_label_values_are_only_bound_parameters(kit: Kit, clock: Clock,
                                                        value: str) -> None:
    """A label value made of SQL, markup or format syntax, or 5,000 characters long, is
    indexed and matched like any other (the index still works afterwards)."""
    past = _open(kit, "g1", alertname="DiskFull", service=value)
    _resolve(kit, past)
    similar.index_due(kit.store, kit.config, now=clock())
    clock.advance(minutes=5)
    current = _open(kit, "g2", alertname="DiskFull", service=value)
    found = similar.find(kit.store, kit.config, current, now=clock())
    assert [f.id for f in found] == [past]
    assert found[0].similarity == pytest.approx(1.0)


def test_disabled_finds_and_indexes_nothing(store: Store, clock: Clock) -> None:
    """incidents.similar.enabled: false turns the chore and the lookup off."""
    kit = Kit(store, clock, [], incidents={"similar": {"enabled": False}})
    past = _open(kit, "g1")
    _resolve(kit, past)
    assert similar.index_due(kit.store, kit.config, now=clock()) == 0
    assert similar.find(kit.store, kit.config, _open(kit, "g2"), now=clock()) == []


def test_chat_status_update_lists_similar_past_incidents(store: Store, clock: Clock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic status update posted in a P1's room names the similar past incidents,
    with what fixed them, as chat text."""
    from receiver.comms.chat import rooms
    from receiver.incidents import timers

    monkeypatch.setenv("RMTEST_SIMILAR_MATRIX_TOKEN", "syt_similar_0123456789")
    kit = Kit(store, clock, [], people={"users": {"alice": {}}}, chat={"matrix": {
        "homeserver": "https://matrix.example.org", "user_id": "@remediator:example.org",
        "access_token": "env:RMTEST_SIMILAR_MATRIX_TOKEN"}})
    past = _open(kit, "g1", alertname="DiskFull", service="db\n@room")
    clock.advance(minutes=20)
    _resolve(kit, past)
    similar.index_due(kit.store, kit.config, now=clock())
    clock.advance(hours=2)
    current = _open(kit, "g2", alertname="DiskFull", service="db\n@room")
    rooms.plan(kit.store, kit.config, "matrix", clock())
    assert timers.run_due(kit.store, kit.config, now=clock() + timedelta(minutes=31)) >= 1
    rooms.plan(kit.store, kit.config, "matrix", clock() + timedelta(minutes=31))
    with kit.store.unit(write=False) as uow:
        updates = [m.body for m in uow.chat.messages(current) if m.kind == "reminder"]
    assert len(updates) == 1
    assert "Similar past incidents:" in updates[0]
    assert f"- #{past} " in updates[0] and "by hand: alice" in updates[0]
    assert "20m to resolve" in updates[0]


@pytest.mark.slow
def test_the_best_match_survives_many_newer_partial_matches(kit: Kit, clock: Clock) -> None:
    """With more newer incidents sharing only the alert name than the lookup scores
    (MAX_CANDIDATES), an older one sharing name, service and labels still ranks first."""
    best = _open(kit, "best", alertname="QueueStuck", service="billing", env="prod")
    _resolve(kit, best)
    for i in range(similar.MAX_CANDIDATES + 5):
        clock.advance(minutes=1)
        _resolve(kit, _open(kit, f"noise{i}", alertname="QueueStuck", service=f"other{i}"))
    similar.index_due(kit.store, kit.config, now=clock())
    clock.advance(minutes=5)
    current = _open(kit, "now", alertname="QueueStuck", service="billing", env="prod")
    found = similar.find(kit.store, kit.config, current, now=clock())
    assert found[0].id == best and len(found) == kit.config.incidents.similar.limit
