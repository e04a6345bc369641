"""SLA breach, escalation chain and reminders: fired from the store, once, by any worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from receiver.incidents import lifecycle, timers
from receiver.store import Store
from tests.conftest import Clock, drop_pg_database, new_pg_database, people, pg_url
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification

CHAIN = {"P1": [{"name": "secondary-oncall", "channels": ["pager"]},
                {"name": "engineering-manager", "channels": ["mgr"], "after": "30m"}]}


def kinds(kit: Kit, inc: int, kind: str) -> list[dict]:
    return [e for e in kit.store.get_incident(inc)["timeline"] if e["kind"] == kind]


def run_concurrently(kit: Kit, n: int = 2) -> None:
    barrier = threading.Barrier(n)

    def go() -> None:
        barrier.wait()
        timers.run_due(kit.store, kit.config, now=kit.clock())

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_breach_fires_once_at_the_deadline_then_the_chain(store: Store, clock: Clock) -> None:
    """Nothing before the deadline; at it, one breach (level 1) from two racing workers;
    30 minutes later, one escalation to level 2; after that, nothing more."""
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN, "reminders": {}})
    inc = kit.fire(make_notification([make_alert()])).incident_id  # P1: due in 1h
    clock.advance(minutes=59)
    run_concurrently(kit)
    assert kinds(kit, inc, "sla_breached") == []
    clock.advance(minutes=1, seconds=1)
    run_concurrently(kit)
    breach = kinds(kit, inc, "sla_breached")
    assert len(breach) == 1 and breach[0]["detail"]["escalate_to"] == "secondary-oncall"
    clock.advance(minutes=29)
    run_concurrently(kit)
    assert kinds(kit, inc, "escalated") == []
    clock.advance(minutes=2)
    run_concurrently(kit)
    esc = kinds(kit, inc, "escalated")
    assert len(esc) == 1 and esc[0]["detail"]["escalate_to"] == "engineering-manager"
    clock.advance(hours=5)
    run_concurrently(kit)
    assert len(kinds(kit, inc, "escalated")) == 1 and len(kinds(kit, inc, "sla_breached")) == 1
    assert kit.store.get_incident(inc)["sla_breached_at"] is not None


def test_acknowledgement_stops_the_chain(store: Store, clock: Clock) -> None:
    """Acknowledged after the breach, the next level is never paged."""
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN, "reminders": {}})
    inc = kit.fire(make_notification([make_alert()])).incident_id
    clock.advance(minutes=61)
    timers.run_due(kit.store, kit.config, now=clock())
    lifecycle.act(kit.store, kit.config, inc, "acknowledge", user="alice", now=clock())
    clock.advance(minutes=45)
    timers.run_due(kit.store, kit.config, now=clock())
    assert kinds(kit, inc, "escalated") == []


def test_acknowledged_in_time_never_breaches(store: Store, clock: Clock) -> None:
    """An incident acknowledged before its deadline is not a breach."""
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN})
    inc = kit.fire(make_notification([make_alert()])).incident_id
    clock.advance(minutes=10)
    lifecycle.act(kit.store, kit.config, inc, "acknowledge", user="alice", now=clock())
    clock.advance(hours=3)
    timers.run_due(kit.store, kit.config, now=clock())
    assert kinds(kit, inc, "sla_breached") == []


def test_reminders_repeat_for_p1_and_stop_on_resolution(store: Store, clock: Clock) -> None:
    """A P1 gets an update every 30 minutes with state and next steps, until resolved."""
    kit = Kit(store, clock, [], people=people(), sla={"reminders": {"P1": "30m"}})
    inc = kit.fire(make_notification([make_alert()])).incident_id
    for _ in range(4):
        clock.advance(minutes=15)
        run_concurrently(kit)
    reminders = kinds(kit, inc, "reminder")
    assert len(reminders) == 2
    assert "acknowledge the incident" in reminders[0]["message"]
    lifecycle.act(kit.store, kit.config, inc, "resolve", user="alice", now=clock())
    clock.advance(hours=2)
    timers.run_due(kit.store, kit.config, now=clock())
    assert len(kinds(kit, inc, "reminder")) == 2


def test_chat_update_interval_sets_the_p1_status_updates(store: Store, clock: Clock) -> None:
    """With chat.update_interval 20m, a P1 (30m in sla.reminders) gets an update every 20m."""
    kit = Kit(store, clock, [], people=people(), sla={"reminders": {"P1": "30m"}},
              chat={"update_interval": "20m"})
    inc = kit.fire(make_notification([make_alert()])).incident_id
    for _ in range(6):
        clock.advance(minutes=10)
        run_concurrently(kit)
    assert len(kinds(kit, inc, "reminder")) == 3


def test_no_reminders_for_p2(store: Store, clock: Clock) -> None:
    """Reminders are for the configured severities only (P0/P1 by default)."""
    kit = Kit(store, clock, [], people=people())
    inc = kit.fire(make_notification([make_alert(labels={"severity": "warning"})])).incident_id
    clock.advance(hours=3)
    timers.run_due(kit.store, kit.config, now=clock())
    assert kinds(kit, inc, "reminder") == []


def test_breach_and_reminder_reach_the_outbox(store: Store, clock: Clock) -> None:
    """Timer events are queued for notification in their own transaction."""
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN})
    kit.fire(make_notification([make_alert()]))
    clock.advance(minutes=61)
    timers.run_due(kit.store, kit.config, now=clock())
    with store.db.transaction(write=False) as tx:
        queued = [r["kind"] for r in tx.fetchall("SELECT kind FROM outbox ORDER BY id")]
    assert "sla_breached" in queued and "reminder" in queued


@pytest.mark.slow
def test_two_worker_processes_escalate_once(pg_template: str, tmp_path: Path) -> None:
    """Two real `remediator worker` processes on one PostgreSQL fire a P0 breach exactly once."""
    name = new_pg_database(pg_template)
    url = pg_url(name)
    cfg = {"store": {"url": url}, "data_dir": str(tmp_path), "people": {"users": {}},
           "sla": {"P0": "2s", "reminders": {}}, "remediation": {"poll_interval": "0.2s"},
           "severity": {"rules": [{"match": {"severity": "critical"}, "severity": "P0"}]},
           "logging": {"level": "warning"}}
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(cfg))
    from receiver.config import load_config
    from receiver.intake.engine import Intake
    from receiver.store import open_store

    store = open_store(url)
    try:
        import json

        from receiver.intake.alertmanager import Notification

        body = json.dumps(make_notification([make_alert()]))
        Intake(load_config(path), store).accept(Notification.model_validate_json(body), body)
        procs = [subprocess.Popen([sys.executable, "-m", "receiver", "worker", "-c", str(path)],
                                  env=dict(os.environ), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        try:
            deadline = time.monotonic() + 20
            count = 0
            while time.monotonic() < deadline:
                with psycopg.connect(url) as conn:
                    count = conn.execute("SELECT count(*) FROM incident_events"
                                         " WHERE kind = 'sla_breached'").fetchone()[0]
                if count:
                    break
                time.sleep(0.2)
            time.sleep(1.5)  # both workers keep looping meanwhile
            with psycopg.connect(url) as conn:
                count = conn.execute("SELECT count(*) FROM incident_events"
                                     " WHERE kind = 'sla_breached'").fetchone()[0]
            assert count == 1
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=15)
    finally:
        store.close()
        drop_pg_database(name)


def test_escalation_levels_reach_their_own_channels(store: Store, clock: Clock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A breach is delivered to the level's channel even when that channel filters it out."""
    from receiver.comms import notify

    monkeypatch.setenv("PAGER_URL", "json://127.0.0.1:9/p")
    monkeypatch.setenv("CHAT_URL", "json://127.0.0.1:9/c")
    channels = {"pager": {"url": "env:PAGER_URL", "events": ["opened"]},
                "chat": {"url": "env:CHAT_URL", "events": ["opened"]}}
    kit = Kit(store, clock, [], people=people(), sla={"escalation": CHAIN, "reminders": {}},
              notifications={"channels": channels})
    kit.fire(make_notification([make_alert()]))
    clock.advance(minutes=61)
    timers.run_due(kit.store, kit.config, now=clock())
    sent: list[tuple[str, str]] = []
    notify.deliver_due(kit.store, kit.config, clock=clock, worker_id="w",
                       send=lambda name, ch, msg: sent.append((name, msg.title)))
    breach = [name for name, title in sent if "sla breached" in title]
    assert breach == ["pager"]
