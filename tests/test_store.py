"""The intake transaction on both backends: episodes, incidents, duplicates, races."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from receiver.intake.alertmanager import Notification
from receiver.intake.engine import Intake
from receiver.store import IncidentFilter, Store, open_store
from tests.conftest import Clock, make_config
from tests.factories import later, make_alert, make_notification


def accept(store: Store, clock: Clock, body: dict, **cfg: object):
    intake = Intake(make_config(**cfg), store, clock)
    raw = json.dumps(body)
    return intake.accept(Notification.model_validate_json(raw), raw)


def count(store: Store, table: str) -> int:
    with store.db.transaction(write=False) as tx:
        row = tx.fetchone(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608 - test tables only
    return int(row["n"])


def test_firing_notification_opens_an_incident_with_deadline(store: Store, clock: Clock) -> None:
    """A first firing notification opens one incident with its severity and ack deadline."""
    r = accept(store, clock, make_notification([make_alert()]))
    inc = store.get_incident(r.incident_id)
    assert r.incident_opened and inc["state"] == "open" and inc["severity"] == "P1"
    assert inc["ack_due_at"] - inc["opened_at"] == timedelta(hours=1)
    assert [a["status"] for a in inc["alerts"]] == ["firing"]
    assert [e["kind"] for e in inc["timeline"]] == ["opened", "alerts_firing"]


def test_a_new_alert_joining_moves_last_seen_and_only_that(store: Store, clock: Clock) -> None:
    """A new alert of the group joins the active incident in the same statement that locks
    it, and moves its last_seen_at; a repeat of the first alert alone moves it again; the
    other incident's last_seen_at stays."""
    first = accept(store, clock, make_notification([make_alert()]))
    other = accept(store, clock, make_notification([make_alert(alertname="DiskFull")]))
    assert other.incident_id != first.incident_id
    before_other = store.get_incident(other.incident_id)["last_seen_at"]
    clock.advance(minutes=2)
    joined = accept(store, clock, make_notification(
        [make_alert(), make_alert(labels={"instance": "web2:9100"})]))
    inc = store.get_incident(first.incident_id)
    assert joined.incident_id == first.incident_id and joined.new_alerts == 1
    assert inc["last_seen_at"] == clock.now
    assert [e["kind"] for e in inc["timeline"]] == ["opened", "alerts_firing", "alerts_firing"]
    clock.advance(minutes=2)
    accept(store, clock, make_notification([make_alert()], external_url="http://am-2:9093"))
    assert store.get_incident(first.incident_id)["last_seen_at"] == clock.now
    assert store.get_incident(other.incident_id)["last_seen_at"] == before_other


def test_duplicates_change_only_last_seen(store: Store, clock: Clock) -> None:
    """The same group re-sent (retry, repeat, another HA peer) changes only last-seen times."""
    body = make_notification([make_alert(), make_alert(labels={"instance": "web2:9100"})])
    first = accept(store, clock, body)
    before = store.get_incident(first.incident_id)
    clock.advance(minutes=5)
    peer = dict(body, externalURL="http://alertmanager-2:9093")
    second = accept(store, clock, peer)
    after = store.get_incident(first.incident_id)
    assert second.incident_id == first.incident_id and not second.incident_opened
    assert second.duplicate_delivery and second.new_alerts == 0
    assert after["last_seen_at"] == clock.now > before["last_seen_at"]
    strip = ("last_seen_at", "alerts", "timeline")
    assert {k: v for k, v in after.items() if k not in strip} == {
        k: v for k, v in before.items() if k not in strip
    }
    assert len(after["timeline"]) == len(before["timeline"])
    assert [a["deliveries"] for a in after["alerts"]] == [2, 2]
    assert count(store, "notifications") == 1 and count(store, "alerts") == 2


def test_all_alerts_resolved_resolves_the_incident(store: Store, clock: Clock) -> None:
    """The incident resolves only when its last firing alert resolves."""
    a1, a2 = make_alert(), make_alert(labels={"instance": "web2:9100"})
    r = accept(store, clock, make_notification([a1, a2]))
    clock.advance(minutes=3)
    part = accept(store, clock, make_notification([dict(a1, status="resolved", endsAt="2026-01-01T12:03:00Z"), a2]))
    assert not part.incident_resolved
    assert store.get_incident(r.incident_id)["state"] == "open"
    clock.advance(minutes=3)
    done = accept(store, clock, make_notification([
        dict(a1, status="resolved", endsAt="2026-01-01T12:03:00Z"),
        dict(a2, status="resolved", endsAt="2026-01-01T12:06:00Z"),
    ]))
    inc = store.get_incident(r.incident_id)
    assert done.incident_resolved and inc["state"] == "resolved" and inc["resolved_at"] == clock.now
    assert done.resolved_alerts == 1


def test_firing_again_within_flap_window_reopens(store: Store, clock: Clock) -> None:
    """A new episode of the group within the flap window reopens the same incident."""
    a = make_alert()
    r = accept(store, clock, make_notification([a]))
    accept(store, clock, make_notification([dict(a, status="resolved", endsAt="2026-01-01T12:01:00Z")]))
    clock.advance(minutes=10)
    again = accept(store, clock, make_notification([make_alert(starts_at=later(12))]))
    inc = store.get_incident(r.incident_id)
    assert again.incident_id == r.incident_id and again.incident_reopened
    assert inc["state"] == "open" and inc["reopened_count"] == 1 and inc["resolved_at"] is None


def test_firing_after_flap_window_opens_a_new_incident(store: Store, clock: Clock) -> None:
    """Past the flap window a new episode opens a new incident with the same key."""
    a = make_alert()
    r = accept(store, clock, make_notification([a]))
    accept(store, clock, make_notification([dict(a, status="resolved", endsAt="2026-01-01T12:01:00Z")]))
    clock.advance(minutes=16)
    again = accept(store, clock, make_notification([make_alert(starts_at=later(30))]))
    assert again.incident_opened and again.incident_id != r.incident_id
    assert store.get_incident(r.incident_id)["state"] == "resolved"


def test_flap_window_is_configurable(store: Store, clock: Clock) -> None:
    """With a 1-minute flap window, a return after 10 minutes is a new incident."""
    a = make_alert()
    r = accept(store, clock, make_notification([a]), incidents={"flap_window": "1m"})
    accept(store, clock, make_notification([dict(a, status="resolved", endsAt="2026-01-01T12:01:00Z")]),
           incidents={"flap_window": "1m"})
    clock.advance(minutes=10)
    again = accept(store, clock, make_notification([make_alert(starts_at=later(12))]),
                   incidents={"flap_window": "1m"})
    assert again.incident_id != r.incident_id


def test_late_firing_copy_of_a_resolved_episode_reopens_nothing(store: Store, clock: Clock) -> None:
    """A stale firing notification delivered after the resolution changes no state."""
    a = make_alert()
    r = accept(store, clock, make_notification([a]))
    accept(store, clock, make_notification([dict(a, status="resolved", endsAt="2026-01-01T12:01:00Z")]))
    clock.advance(minutes=1)
    stale = accept(store, clock, make_notification([a]))
    inc = store.get_incident(r.incident_id)
    assert not stale.incident_reopened and not stale.incident_opened
    assert inc["state"] == "resolved" and inc["alerts"][0]["status"] == "resolved"


def test_severity_rises_with_a_more_severe_alert_and_never_falls(store: Store, clock: Clock) -> None:
    """A P1 alert joining a P2 incident raises it and tightens its deadline; a P3 does not lower it."""
    r = accept(store, clock, make_notification([make_alert(labels={"severity": "warning"})],
                                               group_key="g"))
    inc = store.get_incident(r.incident_id)
    assert inc["severity"] == "P2" and inc["ack_due_at"] - inc["opened_at"] == timedelta(hours=4)
    clock.advance(minutes=5)
    accept(store, clock, make_notification([make_alert(labels={"instance": "b"})], group_key="g"))
    accept(store, clock, make_notification([make_alert(labels={"instance": "c", "severity": "info"})],
                                           group_key="g"))
    inc = store.get_incident(r.incident_id)
    assert inc["severity"] == "P1" and inc["ack_due_at"] - inc["opened_at"] == timedelta(hours=1)
    assert "severity_changed" in [e["kind"] for e in inc["timeline"]]


def test_incident_key_by_labels(store: Store, clock: Clock) -> None:
    """Keyed by chosen labels, two groups with the same cluster share one incident."""
    cfg = {"incidents": {"key": {"by": "labels", "labels": ["cluster"]}}}
    one = accept(store, clock, make_notification([make_alert(alertname="A", labels={"cluster": "eu"})],
                                                 group_key="g1"), **cfg)
    two = accept(store, clock, make_notification([make_alert(alertname="B", labels={"cluster": "eu"})],
                                                 group_key="g2"), **cfg)
    assert one.incident_id == two.incident_id


def test_breadth_bump_raises_the_incident(store: Store, clock: Clock) -> None:
    """Five instances of a warning firing in one group open a P1 instead of a P2."""
    alerts = [make_alert(labels={"severity": "warning", "instance": f"h{i}"}) for i in range(5)]
    r = accept(store, clock, make_notification(alerts), severity={"breadth": {"min_instances": 5}})
    assert store.get_incident(r.incident_id)["severity"] == "P1"


def test_concurrent_duplicates_give_one_incident_and_no_error(store_url: str, clock: Clock) -> None:
    """The same group posted by 8 threads at once converges on one incident and one episode each."""
    stores = [open_store(store_url, pool_min=0, pool_max=2) for _ in range(8)]
    body = make_notification([make_alert(labels={"instance": f"h{i}"}) for i in range(20)])
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def post(s: Store, peer: int) -> None:
        barrier.wait()
        try:
            accept(s, clock, dict(body, externalURL=f"http://am-{peer}:9093"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    check = open_store(store_url)
    try:
        assert errors == []
        assert count(check, "incidents") == 1 and count(check, "alerts") == 20
        with check.db.transaction(write=False) as tx:
            kinds = [r["kind"] for r in tx.fetchall("SELECT kind FROM incident_events")]
            deliveries = tx.fetchone("SELECT deliveries FROM notifications")["deliveries"]
        assert sorted(kinds) == ["alerts_firing", "opened"] and deliveries == 8
    finally:
        check.close()


def test_list_filters_and_paging(store: Store, clock: Clock) -> None:
    """Incidents filter by state and severity and page backwards by id."""
    for i in range(5):
        sev = "critical" if i % 2 else "warning"
        accept(store, clock, make_notification([make_alert(labels={"severity": sev, "instance": f"h{i}"})],
                                               group_key=f"g{i}"))
        clock.advance(minutes=1)
    page1 = store.list_incidents(IncidentFilter(limit=2))
    page2 = store.list_incidents(IncidentFilter(limit=2, before_id=page1[-1]["id"]))
    assert [r["id"] for r in page1] == [5, 4] and [r["id"] for r in page2] == [3, 2]
    p1 = store.list_incidents(IncidentFilter(severity=["P1"]))
    assert {r["severity"] for r in p1} == {"P1"} and len(p1) == 2
    assert store.list_incidents(IncidentFilter(state=["resolved"])) == []
    assert len(store.list_incidents(IncidentFilter(since=clock.now - timedelta(minutes=2)))) == 2
    assert page1[0]["alerts_firing"] == 1


def test_jobs_are_unique_per_rule_and_episode(store: Store, clock: Clock) -> None:
    """A rule selecting a job for an episode enqueues it once, however often the alert arrives."""
    from receiver.store.records import JobDraft

    body = make_notification([make_alert()])
    raw = json.dumps(body)
    intake = Intake(make_config(), store, clock)
    n = Notification.model_validate_json(raw)
    batch = intake.prepare(n, raw)
    job = JobDraft("restart-web", "restart_container", {"container": "web1"},
                   n.alerts[0].fingerprint, n.alerts[0].starts_at)
    first = store.ingest(batch.__class__(**{**batch.__dict__, "jobs": [job]}))
    second = store.ingest(batch.__class__(**{**batch.__dict__, "jobs": [job]}))
    assert (first.jobs_enqueued, second.jobs_enqueued) == (1, 0)
    assert count(store, "jobs") == 1


def test_migrations_from_two_processes_apply_once(store_url: str) -> None:
    """Migrating an up-to-date store concurrently applies nothing and fails nothing."""
    results: list[list[str]] = []

    def run() -> None:
        s = open_store(store_url, pool_min=0, pool_max=1)
        results.append(s.migrate())
        s.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[], [], [], []]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fresh_store_migrates_once_under_concurrency(backend: str, tmp_path, request) -> None:
    """Four processes' worth of migrators on an empty store: one applies, the others see it done."""
    from tests.conftest import drop_pg_database, new_pg_database, pg_url

    if backend == "sqlite":
        url, name = f"sqlite:///{tmp_path}/fresh.db", None
    else:
        name = new_pg_database(None)
        url = pg_url(name)
    results: list[list[str]] = []

    def run() -> None:
        s = open_store(url, pool_min=0, pool_max=1)
        results.append(s.migrate())
        s.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if name:
        drop_pg_database(name)
    from receiver.store.migrations import available

    total = len(available("sqlite" if backend == "sqlite" else "postgres"))
    assert total >= 2 and sorted(len(r) for r in results) == [0, 0, 0, total]


def test_same_episode_twice_in_one_payload_is_one_alert(store: Store, clock: Clock) -> None:
    """A notification listing one alert twice stores it once, without an error."""
    a = make_alert()
    r = accept(store, clock, make_notification([a, dict(a)]))
    assert r.incident_opened and count(store, "alerts") == 1


def test_fifty_alerts_in_one_notification(store: Store, clock: Clock) -> None:
    """A 50-alert notification stores 50 episodes attached to one incident; a second one
    with 50 new episodes joins the same incident."""
    first = [make_alert(labels={"instance": f"h{i}"}) for i in range(50)]
    r1 = accept(store, clock, make_notification(first, group_key="big"))
    second = [make_alert(labels={"instance": f"k{i}"}) for i in range(50)]
    r2 = accept(store, clock, make_notification(second, group_key="big"))
    inc = store.get_incident(r1.incident_id)
    assert r2.incident_id == r1.incident_id and r2.new_alerts == 50
    assert len(inc["alerts"]) == 100 and {a["status"] for a in inc["alerts"]} == {"firing"}
    assert [e["kind"] for e in inc["timeline"]].count("alerts_firing") == 2
