"""A scripted incident, start to close: the post-mortem draft has its whole timeline in
order, and report and /metrics give the figures computed by hand."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from receiver.app import create_app
from receiver.incidents import lifecycle, postmortem, report
from receiver.people.approvals import decide_job
from receiver.store import Store
from receiver.store import reports as report_store
from tests.conftest import OP, Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification


@pytest.fixture
def scripted(store: Store, clock: Clock, tmp_path: Any) -> dict[str, Any]:
    """T0 alert starts; T0+2m received; +4m ack; +5m approved; +6m job runs; +8m note;
    +22m alert resolved. Severity P1 (critical)."""
    kit = Kit(store, clock, [rule(approval={"mode": "required"})], people=people(),
              data_dir=str(tmp_path), auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              server={"secure_cookies": False})
    t0 = clock()
    alert = make_alert(labels={"container": "web1", "service": "shop"}, starts_at=t0)
    clock.advance(minutes=2)
    inc = kit.fire(make_notification([alert], group_key="g-script")).incident_id
    kit.drain()  # job parks for approval
    with store.db.transaction() as tx:
        tx.execute(
            "INSERT INTO evidence (incident_id, check_name, kind, ok, summary, detail,"
            " started_at, duration_ms) VALUES (:i, 'web-health', 'http', 0,"
            " 'GET /healthz -> 503', :d, :at, 12)",
            {"i": inc, "d": tx.json({"status": 503}), "at": clock() + timedelta(seconds=5)},
        )
    clock.advance(minutes=2)
    lifecycle.act(store, kit.config, inc, "acknowledge", user="alice", now=clock())
    clock.advance(minutes=1)
    job_id = kit.jobs()[0]["id"]
    decide_job(store, kit.config, job_id, approve=True, user="bob", reason="go", now=clock())
    clock.advance(minutes=1)
    kit.drain()
    clock.advance(minutes=2)
    lifecycle.act(store, kit.config, inc, "note", user="alice", now=clock(),
                  text="deploy 1.2.3 leaked connections")
    clock.advance(minutes=14)
    kit.fire(make_notification([dict(alert, status="resolved", endsAt="2026-03-02T10:21:00Z")],
                               group_key="g-script"))
    return {"kit": kit, "inc": inc, "t0": t0}


def test_draft_has_every_section_and_an_ordered_timeline(scripted: dict[str, Any]) -> None:
    """The draft names severity, impact times, alerts, services, and lists events in order."""
    kit, inc = scripted["kit"], scripted["inc"]
    text = postmortem.render(kit.store, kit.config, inc)
    assert text is not None
    for heading in ("## Summary", "## Impact", "## Timeline", "## Remediation",
                    "## Diagnostics", "## Root cause", "## What went well",
                    "## What went wrong", "## Action items"):
        assert heading in text
    assert "Time to acknowledge: 2m" in text and "Time to resolve: 20m" in text
    assert "Time to detect: 2m" in text and "Time to mitigate: 4m" in text
    assert "service=shop" in text and "AppDown ×1" in text
    assert "bob approved" in text and "web-health" in text
    rows = re.findall(r"^\| (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC \| ([^|]+) \| (\w+) \|",
                      text, re.M)
    times = [r[0] for r in rows]
    assert times == sorted(times)
    order = [r[2] for r in rows]
    for a, b in [("opened", "job_awaiting_approval"), ("job_awaiting_approval", "acknowledged"),
                 ("acknowledged", "job_approved"), ("job_approved", "job_started"),
                 ("job_started", "job_succeeded"), ("job_succeeded", "note"),
                 ("note", "alerts_resolved"), ("alerts_resolved", "resolved")]:
        assert order.index(a) < order.index(b), (a, b, order)


def test_report_equals_the_hand_computed_figures(scripted: dict[str, Any]) -> None:
    """MTTD 120 s, MTTA 120 s, MTTM 240 s, MTTR 1200 s, no breach, 100 % playbook success."""
    kit = scripted["kit"]
    with kit.store.db.transaction(write=False) as tx:
        built = report.build(report_store.incident_facts(tx, None),
                             report_store.job_facts(tx, None), since=None, now=kit.clock(),
                             noise_window=timedelta(minutes=5))
    p1 = built.by_severity["P1"]
    assert (p1.incidents, p1.mttd, p1.mtta, p1.mttm, p1.mttr) == (1, 120.0, 120.0, 240.0, 1200.0)
    assert (p1.sla_breaches, p1.false_alarms, p1.noise) == (0, 0, 0)
    assert built.playbooks["restart_container"]["success_rate"] == 1.0
    assert built.by_severity["P0"].incidents == 0


def test_noise_and_false_alarms_are_counted_apart(store: Store, clock: Clock) -> None:
    """A 2-minute self-resolving untouched incident is noise; a marked one is a false alarm."""
    kit = Kit(store, clock, [], people=people())
    a = make_alert(labels={"severity": "warning", "instance": "n1"})
    kit.fire(make_notification([a], group_key="noise"))
    clock.advance(minutes=2)
    kit.fire(make_notification([dict(a, status="resolved", endsAt="2026-03-02T10:02:00Z")],
                               group_key="noise"))
    inc2 = kit.fire(make_notification([make_alert(labels={"severity": "warning",
                                                           "instance": "n2"})],
                                      group_key="fa")).incident_id
    lifecycle.act(store, kit.config, inc2, "false_alarm", user="alice", now=clock())
    with store.db.transaction(write=False) as tx:
        built = report.build(report_store.incident_facts(tx, None), [], since=None,
                             now=clock(), noise_window=timedelta(minutes=5))
    p2 = built.by_severity["P2"]
    assert (p2.incidents, p2.noise, p2.false_alarms) == (2, 1, 1)
    assert p2.false_alarm_rate == 0.5 and p2.noise_rate == 0.5


def test_metrics_endpoint_shows_the_same_figures(scripted: dict[str, Any]) -> None:
    """/metrics histograms and counters by severity match the scripted incident."""
    kit = scripted["kit"]
    client = create_app(kit.config, store=kit.store, clock=kit.clock).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'remediator_time_to_acknowledge_seconds_sum{severity="P1"} 120.0' in text
    assert 'remediator_time_to_resolve_seconds_sum{severity="P1"} 1200.0' in text
    assert 'remediator_time_to_mitigate_seconds_count{severity="P1"} 1.0' in text
    assert 'remediator_time_to_resolve_seconds_bucket{le="900.0",severity="P1"} 0.0' in text
    assert 'remediator_time_to_resolve_seconds_bucket{le="1800.0",severity="P1"} 1.0' in text
    assert 'remediator_incidents_total{severity="P1"} 1.0' in text
    assert 'remediator_sla_breaches_total{severity="P1"} 0.0' in text
    assert 'remediator_remediation_success_ratio{playbook="restart_container"} 1.0' in text


def test_cli_report_and_postmortem(scripted: dict[str, Any], tmp_path: Any) -> None:
    """report --json and postmortem print the same data as the functions."""
    import json

    import yaml
    from click.testing import CliRunner

    from receiver.cli import main

    kit = scripted["kit"]
    url = kit.store.db.url if kit.store.dialect == "postgres" else f"sqlite:///{kit.store.db.path}"
    cfg = tmp_path / "r.yml"
    cfg.write_text(yaml.safe_dump({"store": {"url": url}, "data_dir": str(tmp_path)}))
    runner = CliRunner()
    out = runner.invoke(main, ["report", "-c", str(cfg), "--since", "3650d", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["by_severity"]["P1"]["mttr_s"] == 1200.0
    table = runner.invoke(main, ["report", "-c", str(cfg), "--since", "3650d"]).output
    assert "P1" in table and "20.0m" in table
    pm = runner.invoke(main, ["postmortem", "-c", str(cfg), str(scripted["inc"])])
    assert pm.exit_code == 0 and "## Timeline" in pm.output


def test_api_postmortem_and_store_back(scripted: dict[str, Any]) -> None:
    """The draft is served as Markdown; the completed text can be stored on the incident."""
    kit, inc = scripted["kit"], scripted["inc"]
    client = create_app(kit.config, store=kit.store, clock=kit.clock).test_client()
    r = client.get(f"/api/v1/incidents/{inc}/postmortem.md", headers=OP)
    assert r.status_code == 200 and r.mimetype == "text/markdown"
    saved = client.post(f"/api/v1/incidents/{inc}/actions", headers=OP,
                        json={"action": "postmortem", "text": "# Final\nRoot cause: leak."})
    assert saved.status_code == 200
    assert kit.store.get_incident(inc)["postmortem"].startswith("# Final")
    closed = client.post(f"/api/v1/incidents/{inc}/actions", headers=OP, json={"action": "close"})
    assert closed.status_code == 200 and closed.json["state"] == "closed"
