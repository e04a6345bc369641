"""The whole loop on real processes: a web server dies inside its container, the blackbox probe
fails, Prometheus fires, Alertmanager (from alertmanager.example.yml) delivers, remediator
restarts the container, verifies the URL, and the resolved notification resolves the incident."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.e2e.conftest import STAGES, Stack, probe_ok, run_cycle, start_real_loop

pytestmark = pytest.mark.slow


def test_probe_failure_is_remediated_verified_and_resolved(stack: Stack) -> None:
    """Killing httpd in the container leads, with no human, to one verified restart, a
    mitigated then resolved incident, with every stage in causal order."""
    loop = start_real_loop(stack)
    cycle = run_cycle(stack, loop, timeout=85)
    s = cycle.stages
    print(json.dumps({"stages_s": s, "mttr": cycle.mttr()}, indent=2))

    missing = [stage for stage in STAGES if stage not in s]
    assert not missing, f"stages never observed: {missing}; seen: {s}"
    assert 0 < s["prometheus_alert_active"] < s["webhook_received"]
    assert s["webhook_received"] <= s["job_claimed"] <= s["job_started"]
    assert s["job_started"] < s["container_restarted"] <= s["job_succeeded"]
    assert s["job_started"] < s["service_healthy"]
    # job_succeeded and mitigated_at are written in one transaction, from two clock reads.
    assert abs(s["incident_mitigated"] - s["job_succeeded"]) < 0.5
    assert max(s["job_succeeded"], s["incident_mitigated"]) < s["resolved_webhook_received"]
    assert s["resolved_webhook_received"] <= s["incident_resolved"]

    assert cycle.restarts == 1
    assert [(j["state"], j["attempts"]) for j in cycle.jobs] == [("succeeded", 1)]
    assert cycle.incident["state"] == "resolved"
    kinds = Counter(e["kind"] for e in cycle.incident["timeline"])
    assert kinds["job_succeeded"] == 1 and kinds["verification_passed"] == 1
    assert kinds["resolved"] == 1 and kinds["escalated"] == 0
    assert [n["status"] for n in cycle.notifications][:1] == ["firing"]
    assert cycle.notifications[-1]["status"] == "resolved"
    assert probe_ok(loop.probe_url)
    loop.container.reload()
    assert loop.container.status == "running"
    stack.assert_clean_logs()
