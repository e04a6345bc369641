"""/metrics: the store's one-query summary gives the figures that the per-incident report
computes in Python, and the endpoint can require a bearer token."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.app import create_app
from receiver.incidents import report
from receiver.incidents.metrics import DURATION_BUCKETS
from receiver.store import Store
from receiver.store import reports as report_store
from tests.conftest import Clock, make_config

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOISE = timedelta(minutes=5)
AUTH = {"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}


def _seed(store: Store, n: int, seed: int) -> None:
    """``n`` incidents with random milestones (some missing, some before the deadline,
    some exactly on a bucket bound), human events and started jobs."""
    rnd = random.Random(seed)
    base = NOW - timedelta(days=3)
    with store.db.transaction() as tx:
        for i in range(1, n + 1):
            opened = base + timedelta(seconds=rnd.randrange(0, 200_000),
                                      microseconds=rnd.randrange(0, 1_000_000))

            def later(p: float, opened: datetime = opened) -> datetime | None:
                if rnd.random() > p:
                    return None
                if rnd.random() < 0.2:  # exactly on a histogram bound
                    return opened + timedelta(seconds=rnd.choice(DURATION_BUCKETS))
                return opened + timedelta(seconds=rnd.randrange(1, 300_000),
                                          microseconds=rnd.randrange(0, 1_000_000))

            acked, mitigated, resolved = later(0.6), later(0.4), later(0.7)
            closed = resolved + timedelta(minutes=1) if resolved and rnd.random() < 0.3 else None
            false_alarm = resolved if resolved and rnd.random() < 0.1 else None
            state = ("closed" if closed else "resolved" if resolved else
                     rnd.choice(["open", "acknowledged", "mitigating", "mitigated"]))
            active = state not in ("resolved", "closed", "false_alarm")
            tx.execute(
                "INSERT INTO incidents (id, key, open_key, state, severity, severity_reason,"
                " title, receiver, group_key, group_labels, opened_at, ack_due_at,"
                " acknowledged_at, mitigated_at, resolved_at, closed_at, last_seen_at,"
                " updated_at, change_tx, false_alarm_at) VALUES (:id, :k, :ok, :st, :sev, 'r',"
                " 't', 'r', :k, :gl, :op, :due, :ack, :mit, :res, :cl, :op, :op, 'tx', :fa)",
                {"id": i, "k": f"k{i}", "ok": f"k{i}" if active else None, "st": state,
                 "sev": rnd.choice(report.SEVERITIES), "gl": tx.json({}), "op": opened,
                 "due": opened + timedelta(minutes=rnd.choice([15, 60, 240])), "ack": acked,
                 "mit": mitigated, "res": resolved, "cl": closed, "fa": false_alarm},
            )
            for _ in range(rnd.randrange(0, 3)):
                tx.execute(
                    "INSERT INTO incident_events (incident_id, at, kind, actor, message, detail)"
                    " VALUES (:i, :at, 'note', :a, 'm', :d)",
                    {"i": i, "at": opened, "a": rnd.choice(["system", "user:alice", "worker"]),
                     "d": tx.json({})},
                )
            if rnd.random() < 0.3:
                tx.execute(
                    "INSERT INTO jobs (incident_id, rule, playbook, dedupe_key, params, state,"
                    " created_at, updated_at, started_at) VALUES (:i, 'r', :p, :d, :pa, :s,"
                    " :at, :at, :st)",
                    {"i": i, "p": rnd.choice(["restart_container", "flush_cache"]),
                     "d": f"d{i}", "pa": tx.json({}), "at": opened,
                     "s": rnd.choice(["succeeded", "failed", "escalated", "queued"]),
                     "st": opened if rnd.random() < 0.7 else None},
                )


@pytest.mark.parametrize("seed", [1, 2])
def test_summary_equals_the_per_incident_report(store: Store, seed: int) -> None:
    """Counts, breaches, false alarms, noise, histogram buckets and sums from the one-query
    summary are those that report.py computes incident by incident."""
    _seed(store, 400, seed)
    with store.db.transaction(write=False) as tx:
        summary = report_store.incident_summary(tx, now=NOW, noise_window=NOISE,
                                                bounds=DURATION_BUCKETS)
        facts = report_store.incident_facts(tx, None)
        jobs = report_store.job_facts(tx, None)
        outcomes = report_store.playbook_outcomes(tx)
    assert sum(s.incidents for s in summary.values()) == 400
    for sev in report.SEVERITIES:
        rows = [r for r in facts if r.severity == sev]
        s = summary[sev]
        assert s.incidents == len(rows)
        assert s.active == sum(1 for r in rows if r.state in report_store.ACTIVE_STATES)
        assert s.sla_breaches == sum(1 for r in rows if report.breached(r, NOW))
        assert s.false_alarms == sum(1 for r in rows if r.false_alarm_at is not None)
        assert s.noise == sum(1 for r in rows if report.is_noise(r, NOISE))
        for name in ("acknowledge", "mitigate", "resolve"):
            values = [v for r in rows if (v := report.durations(r)[name]) is not None]
            d = s.durations[name]
            assert d.count == len(values)
            assert d.total == pytest.approx(sum(values), abs=1e-3)
            assert d.buckets == tuple(sum(1 for v in values if v <= b) for b in DURATION_BUCKETS)
    built = report.build([], jobs, since=None, now=NOW, noise_window=NOISE)
    for name, p in built.playbooks.items():
        got = outcomes.get(name, {"succeeded": 0, "failed": 0, "escalated": 0})
        assert {k: p[k] for k in ("succeeded", "failed", "escalated")} == got


def test_metrics_endpoint_reports_every_seeded_incident(store: Store, tmp_path: Any) -> None:
    """The exposition's per-severity totals add up to the seeded incidents."""
    _seed(store, 120, 3)
    app = create_app(make_config(data_dir=str(tmp_path), auth=AUTH), store=store,
                     clock=Clock(NOW))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("remediator_incidents_total{"))
    assert total == 120


def test_metrics_token_is_required_when_configured(store: Store, tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With server.metrics_token set, /metrics answers 401 without the token or with a
    wrong one, and the metrics with it."""
    monkeypatch.setenv("REMEDIATOR_TEST_METRICS_TOKEN", "scrape-token-0123456789")
    cfg = make_config(data_dir=str(tmp_path), auth=AUTH,
                      server={"metrics_token": "env:REMEDIATOR_TEST_METRICS_TOKEN"})
    c = create_app(cfg, store=store, clock=Clock(NOW)).test_client()
    bare = c.get("/metrics")
    assert bare.status_code == 401 and bare.json["error"] == "unauthorized"
    assert "Bearer" in bare.headers["WWW-Authenticate"]
    assert c.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = c.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert ok.status_code == 200 and b"remediator_incidents_total" in ok.data
    assert c.get("/healthz").status_code == 200  # only /metrics is behind the token


def test_metrics_open_without_a_token(store: Store, tmp_path: Any) -> None:
    """Without server.metrics_token, /metrics needs no credentials (the default)."""
    c = create_app(make_config(data_dir=str(tmp_path), auth=AUTH), store=store,
                   clock=Clock(NOW)).test_client()
    assert c.get("/metrics").status_code == 200


def test_snapshot_round_trips_through_the_store(store: Store) -> None:
    """The stored snapshot reads back as the figures that were computed."""
    _seed(store, 150, 4)
    with store.db.transaction() as tx:
        snap = report_store.compute_snapshot(tx, now=NOW, noise_window=NOISE,
                                             bounds=DURATION_BUCKETS)
        report_store.save_snapshot(tx, snap)
    with store.db.transaction(write=False) as tx:
        back = report_store.load_snapshot(tx)
    assert back == snap


def test_scrape_serves_the_worker_snapshot_while_fresh(store: Store, tmp_path: Any) -> None:
    """A worker's chore stores the figures; scrapes read them (one row) until they are
    older than twice server.metrics_refresh, then compute afresh."""
    from receiver.incidents.metrics import refresh_snapshot_if_due

    _seed(store, 40, 5)
    clock = Clock(NOW)
    cfg = make_config(data_dir=str(tmp_path), auth=AUTH, server={"metrics_refresh": "15s"})
    assert refresh_snapshot_if_due(store, cfg, clock()) == 1
    assert refresh_snapshot_if_due(store, cfg, clock()) == 0  # fresh: nothing to do
    with store.db.transaction() as tx:  # incidents that arrive after the snapshot
        for i in range(1000, 1010):
            tx.execute(
                "INSERT INTO incidents (id, key, open_key, state, severity, severity_reason,"
                " title, receiver, group_key, group_labels, opened_at, ack_due_at,"
                " last_seen_at, updated_at, change_tx) VALUES (:id, :k, :k, 'open', 'P1',"
                " 'r', 't', 'r', :k, :gl, :at, :at, :at, :at, 'tx')",
                {"id": i, "k": f"late{i}", "gl": tx.json({}), "at": NOW})
    c = create_app(cfg, store=store, clock=clock).test_client()

    def total() -> float:
        text = c.get("/metrics").get_data(as_text=True)
        assert "remediator_incident_metrics_age_seconds" in text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("remediator_incidents_total{"))

    assert total() == 40  # the snapshot, as the worker computed it
    clock.advance(seconds=20)
    assert total() == 40  # still younger than 2 x 15 s
    assert refresh_snapshot_if_due(store, cfg, clock()) == 1  # older than 15 s: recomputed
    assert total() == 50
    clock.advance(seconds=31)
    with store.db.transaction() as tx:
        tx.execute("DELETE FROM incidents WHERE id = 1000")
    assert total() == 49  # no worker refreshed it: the scrape computed the figures itself
