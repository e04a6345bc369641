"""Monitoring remediator itself and running it with Compose: the gauges /metrics reads from
the store, the alerting rules in deploy/prometheus (promtool check and unit tests), the
Grafana dashboard's queries against a real Prometheus scraping a real ``remediator serve``,
and deploy/compose.yml's wiring.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.app import create_app
from receiver.config import Config, load_config
from receiver.remediation import controls, guards
from receiver.runtime.health import AuditVerifier
from receiver.store import Store, open_store
from tests.conftest import ROOT, Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.integration.conftest import Receiver, receiver  # noqa: F401 - a fixture
from tests.support import free_port, http

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "remediator-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "remediator-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "remediator.json"
COMPOSE = DEPLOY / "compose.yml"
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
AMTOOL = "/usr/bin/amtool"
TOKEN = "test-token-0123456789"  # tests/conftest.py's web_config token
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                  "$job": "remediator"}

METRIC = re.compile(r"\b(remediator_[a-z0-9_]+|up)\b")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's macros and variables filled in) for each target."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for macro, value in GRAFANA_MACROS.items():
                expr = expr.replace(macro, value)
            out.append((panel["title"], expr))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def metric_names(exprs: list[tuple[str, str]]) -> set[str]:
    return {m for _, e in exprs for m in METRIC.findall(e)} - {"up"}


def exported_names(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def gauge(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        key, _, value = line.rpartition(" ")
        base, _, rest = key.partition("{")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if base == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


# -- the alerting rules --------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    """promtool accepts every rule (syntax, PromQL, templates)."""
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


def test_rules_unit_tests_pass() -> None:
    """The shipped promtool unit tests of the rules pass."""
    out = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_rule_has_a_unit_test() -> None:
    """Each alert of the rules file is expected to fire in at least one unit test."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert fired == {name for name, _ in rule_exprs()}


@pytest.mark.parametrize("change", [
    ("> 4 * 3600", "> 6 * 3600"),  # the kill-switch threshold
    ('reason="store_unavailable"}[5m])) > 0', 'reason="store_unavailable"}[5m])) > 1'),
    ("remediator_jobs_past_lease) > 0", "remediator_jobs_past_lease) > 5"),
])
def test_rules_unit_tests_catch_a_weakened_rule(tmp_path: Path, change: tuple[str, str]) -> None:
    """The unit tests fail when a rule's threshold is loosened (they test something)."""
    text = RULES.read_text(encoding="utf-8")
    assert change[0] in text
    (tmp_path / RULES.name).write_text(text.replace(change[0], change[1]), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    out = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


# -- the gauges behind them ----------------------------------------------------------------


def _scrape(store: Store, clock: Clock, web_config: Config) -> str:
    client = create_app(web_config, store=store, clock=clock).test_client()
    resp = client.get("/metrics")
    assert resp.status_code == 200
    return str(resp.get_data(as_text=True))


def _fire(kit: Kit, name: str) -> None:
    kit.fire(make_notification([make_alert(alertname=name, labels={"container": name.lower()})],
                               group_key=f"g-{name}"))


def test_health_gauges_follow_the_store(store: Store, clock: Clock, web_config: Config) -> None:
    """/metrics counts undelivered deliveries, jobs past their lease and approvals past their
    expiry, and shows kill switches and breakers, each from the store's current state."""
    kit = Kit(store, clock, [
        rule("auto", matchers=['alertname="AutoDown"']),
        rule("gated", matchers=['alertname="GatedDown"'], approval={"mode": "required"}),
        rule("stuck", matchers=['alertname="StuckDown"']),
    ])
    healthy = _scrape(store, clock, web_config)
    for name in ("remediator_outbox_undelivered", "remediator_jobs_past_lease",
                 "remediator_approvals_past_expiry", "remediator_circuit_breakers_open",
                 "remediator_outbox_oldest_undelivered_age_seconds"):
        assert gauge(healthy, name) == 0, name
    assert gauge(healthy, "remediator_kill_switch_engaged", scope="global") == 0

    _fire(kit, "AutoDown")
    _fire(kit, "GatedDown")
    kit.drain()
    _fire(kit, "StuckDown")
    now = clock()
    with store.db.transaction() as tx:  # a worker that claimed "stuck" and died
        tx.execute("UPDATE jobs SET state = 'running', lease_owner = 'gone',"
                   " lease_expires_at = :at WHERE rule = 'stuck'", {"at": now})
        incident = tx.fetchone("SELECT min(id) AS id FROM incidents")
        tx.execute("INSERT INTO outbox (kind, incident_id, message, detail, created_at)"
                   " VALUES ('opened', :i, 'm', :d, :at)",
                   {"i": incident["id"] if incident else 1, "d": tx.json({}),
                    "at": now - timedelta(minutes=10)})
        outbox = tx.fetchone("SELECT max(id) AS id FROM outbox")
        for channel, state in (("mail", "pending"), ("chat", "sending"), ("page", "delivered")):
            tx.execute("INSERT INTO outbox_deliveries (outbox_id, channel, state,"
                       " next_attempt_at) VALUES (:o, :c, :s, :at)",
                       {"o": outbox["id"], "c": channel, "s": state, "at": now})
    controls.pause(store, actor="alice", reason="maintenance", now=now - timedelta(hours=2))
    controls.pause(store, actor="alice", reason="flaky", now=now - timedelta(minutes=5),
                   rule="gated")
    controls.set_control(store, guards.breaker("auto"), "open", actor="system",
                         reason="3 failures", now=now)
    controls.set_control(store, guards.breaker("stuck"), "closed", actor="alice",
                         reason="reset", now=now)
    clock.advance(days=30)  # past the lease and the approval's expiry

    text = _scrape(store, clock, web_config)
    assert gauge(text, "remediator_jobs_past_lease") == 1
    assert gauge(text, "remediator_approvals_past_expiry") == 1
    undelivered = gauge(text, "remediator_outbox_undelivered")
    assert undelivered is not None and undelivered >= 2
    age = gauge(text, "remediator_outbox_oldest_undelivered_age_seconds")
    assert age is not None and age >= timedelta(days=30, minutes=10).total_seconds()
    assert gauge(text, "remediator_kill_switch_engaged", scope="global") == 1
    assert gauge(text, "remediator_kill_switch_engaged", scope="rule", rule="gated") == 1
    assert gauge(text, "remediator_kill_switch_engaged_seconds", scope="global") == \
        timedelta(days=30, hours=2).total_seconds()
    assert gauge(text, "remediator_circuit_breaker_open", rule="auto") == 1
    assert gauge(text, "remediator_circuit_breaker_open", rule="stuck") == 0
    assert gauge(text, "remediator_circuit_breakers_open") == 1

    controls.resume(store, actor="alice", reason="done", now=clock())
    after = _scrape(store, clock, web_config)
    assert gauge(after, "remediator_kill_switch_engaged", scope="global") == 0
    assert gauge(after, "remediator_kill_switch_engaged_seconds", scope="global") is None


def test_rule_and_dashboard_metrics_are_exported(store: Store, clock: Clock,
                                                 web_config: Config) -> None:
    """Every metric name the rules and the dashboard read is one /metrics exports (once
    there is something to show: a finished job, an engaged rule switch, a breaker)."""
    kit = Kit(store, clock, [rule("auto", matchers=['alertname="AutoDown"'])])
    _fire(kit, "AutoDown")
    kit.drain()
    controls.pause(store, actor="alice", reason="r", now=clock(), rule="auto")
    controls.set_control(store, guards.breaker("auto"), "open", actor="system", reason="r",
                         now=clock())
    client = create_app(web_config, store=store, clock=clock).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/v1/alerts", json={"nope": 1}, headers=auth).status_code == 400
    accepted = client.post("/api/v1/alerts", headers=auth, json=make_notification(
        [make_alert(alertname="OtherDown")], group_key="g-other"))
    assert accepted.status_code == 200
    exported = exported_names(client.get("/metrics").get_data(as_text=True))
    wanted = metric_names(rule_exprs()) | metric_names(dashboard_exprs())
    assert wanted - exported == set()


def test_audit_gauge_turns_to_zero_when_the_chain_is_unprotected(store: Store, clock: Clock) -> None:
    """The audit gauge is 1 on an intact chain and 0 once its append-only trigger is gone;
    a verification is reused until it is older than the interval."""
    controls.pause(store, actor="alice", reason="r", now=clock())  # one audit entry
    fresh = AuditVerifier(store, every=0)
    result = fresh.result()
    assert result is not None and result.ok and result.entries >= 1
    cached = AuditVerifier(store, every=3600)
    first = cached.result()
    assert first is not None and first.ok
    drop = ("DROP TRIGGER audit_log_no_update ON audit_log" if store.dialect == "postgres"
            else "DROP TRIGGER audit_log_no_update")
    with store.db.transaction() as tx:
        tx.execute(drop)
    assert cached.result() == first  # not verified again within the hour
    broken = fresh.result()
    assert broken is not None and not broken.ok


# -- the dashboard -------------------------------------------------------------------------


def test_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    """Every panel but the rows has at least one query, on the templated data source."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "remediator" and dash["schemaVersion"] >= 36
    names = {v["name"] for v in dash["templating"]["list"]}
    assert names == {"datasource", "job"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert '{job="$job"' in target["expr"], (panel["title"], target["expr"])


@pytest.fixture
def backend() -> str:
    """The integration ``receiver`` fixture on PostgreSQL (the store compose runs)."""
    return "postgres"


@pytest.fixture
def prometheus(receiver: Receiver, tmp_path: Path) -> Iterator[str]:  # noqa: F811 - the fixture
    """A real Prometheus scraping ``receiver`` every second as job "remediator" and
    evaluating the shipped rules every second; its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "remediator", "static_configs": [
            {"targets": [receiver.url.removeprefix("http://")]}]}],
    }), encoding="utf-8")
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited:\n{log_path.read_text(errors='replace')}")
            return http("GET", url + "/-/ready", timeout=1)[0] == 200

        _until(ready, 30, "prometheus /-/ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _get(url: str) -> Any:
    status, body = http("GET", url, timeout=10)
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", (url, status, data)
    return data["data"]


def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = check()
        except (OSError, AssertionError, ValueError):
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow
def test_dashboard_and_rule_queries_run_on_a_real_prometheus(
        receiver: Receiver, prometheus: str) -> None:  # noqa: F811 - the fixture
    """A real Prometheus scraping a real ``remediator serve`` (PostgreSQL) loads the rules
    and runs every dashboard query, instant and over a range, without an error; the
    gauges the rules read arrive with data."""
    status, _ = http("POST", receiver.webhook_url, body={"nope": 1},
                     headers={"Authorization": f"Bearer {receiver.token}"})
    assert status == 400
    status, _ = http("POST", receiver.webhook_url, headers={
        "Authorization": f"Bearer {receiver.token}"}, body=make_notification(
        [make_alert(alertname="DashboardTestDown")], group_key="g-dashboard"))
    assert status == 200
    store = open_store(receiver.store_url)
    try:
        controls.pause(store, actor="ops", reason="drill", now=datetime.now(UTC),
                       rule="restart-web")
        controls.set_control(store, guards.breaker("restart-web"), "open", actor="system",
                             reason="drill", now=datetime.now(UTC))
    finally:
        store.close()
    prom = prometheus

    def scraped() -> bool:
        q = urllib.parse.quote('count_over_time(up{job="remediator"}[1m])')
        result = _get(f"{prom}/api/v1/query?query={q}")["result"]
        return bool(result) and float(result[0]["value"][1]) >= 3

    _until(scraped, 45, "three scrapes of the receiver")
    names = set(_get(f"{prom}/api/v1/label/__name__/values"))
    wanted = metric_names(rule_exprs()) | metric_names(dashboard_exprs())
    # only with a concluded job; tests/test_deploy_monitoring.py checks it in-process
    assert wanted - names <= {"remediator_remediation_success_ratio"}

    end = time.time()
    for _title, expr in dashboard_exprs() + rule_exprs():
        q = urllib.parse.quote(expr)
        _get(f"{prom}/api/v1/query?query={q}")
        _get(f"{prom}/api/v1/query_range?query={q}&start={end - 300}&end={end}&step=15")

    def query(expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _get(
            f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")["result"]
        return result

    assert float(query('sum(up{job="remediator"})')[0]["value"][1]) == 1
    breaker = query('max by (rule) (remediator_circuit_breaker_open{job="remediator"}) == 1')
    assert [r["metric"]["rule"] for r in breaker] == ["restart-web"]

    def rules_evaluated() -> list[dict[str, Any]]:
        groups = _get(f"{prom}/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        never = "0001-01-01T00:00:00Z"  # lastEvaluation of a rule not evaluated yet
        return rules if rules and all(r.get("lastEvaluation", never) != never
                                      for r in rules) else []

    rules = _until(rules_evaluated, 20, "an evaluation of every rule")
    assert len(rules) == len(rule_exprs())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError"))
                                                     for r in rules if r["health"] != "ok"]


# -- compose ------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_runs_two_receivers_and_a_worker_on_postgres() -> None:
    """Two receivers (no embedded worker) and one worker, from one image, config, data
    volume and secrets, after a one-shot migration on a healthy PostgreSQL."""
    services = _compose()["services"]
    assert {"postgres", "migrate", "receiver-1", "receiver-2", "worker", "prometheus",
            "alertmanager"} <= set(services)
    roles = {name: s["command"] for name, s in services.items()
             if s.get("image", "").startswith("${REMEDIATOR_IMAGE")}
    assert roles["receiver-1"][:3] == roles["receiver-2"][:3] == \
        ["remediator", "serve", "--no-worker"]
    assert roles["worker"] == ["remediator", "worker"]
    assert roles["migrate"] == ["remediator", "migrate"]
    for name in ("receiver-1", "receiver-2", "worker"):
        s = services[name]
        assert "./remediator.yml:/etc/remediator/remediator.yml:ro" in s["volumes"]
        assert "remediator-data:/var/lib/remediator" in s["volumes"]
        assert set(s["secrets"]) == {"webhook_token", "db_url"}
        assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["worker"]["volumes"]
    assert not any("docker.sock" in v for n in ("receiver-1", "receiver-2")
                   for v in services[n]["volumes"])
    published = {p.rsplit(":", 1)[0] for n in ("receiver-1", "receiver-2")
                 for p in services[n]["ports"]}
    assert all(p.startswith("127.0.0.1:") for p in published)
    files = {name: (DEPLOY / s["file"]).resolve()
             for name, s in _compose()["secrets"].items()}
    assert all(f.parent == (DEPLOY / "secrets").resolve() for f in files.values())
    mounted = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
               if v.startswith("./")]
    assert all((DEPLOY / m).exists() for m in mounted), mounted


def test_compose_config_is_a_valid_remediator_config(tmp_path: Path) -> None:
    """deploy/remediator.yml validates with its secret files in place, uses PostgreSQL
    from the db_url secret, leaves the acting to the worker and migrations to `migrate`."""
    (tmp_path / "webhook_token").write_text("w" * 40 + "\n", encoding="utf-8")
    (tmp_path / "db_url").write_text("postgresql://remediator:pw-0123456789@postgres:5432/"
                                     "remediator\n", encoding="utf-8")
    text = (DEPLOY / "remediator.yml").read_text(encoding="utf-8")
    assert text.count("file:/run/secrets/") == 2
    config_path = tmp_path / "remediator.yml"
    config_path.write_text(text.replace("file:/run/secrets/", f"file:{tmp_path}/"),
                           encoding="utf-8")
    config = load_config(config_path)
    assert config.store.url.reveal().startswith("postgresql://")
    assert config.server.embedded_worker is False
    assert config.store.migrate_on_start is False
    assert str(config.data_dir) == "/var/lib/remediator/data"


def test_compose_prometheus_and_alertmanager_point_at_remediator(tmp_path: Path) -> None:
    """Prometheus scrapes both receivers as job "remediator" with the shipped rules and
    sends to Alertmanager; Alertmanager delivers to both receivers with the token file and
    routes remediator's own alerts elsewhere. promtool and amtool accept both files."""
    services = _compose()["services"]
    prom_cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    scrape = next(j for j in prom_cfg["scrape_configs"] if j["job_name"] == "remediator")
    receivers = [n for n in services if n.startswith("receiver-")]
    assert scrape["static_configs"][0]["targets"] == [f"{n}:9095" for n in receivers]
    mounts = dict(v.rsplit(":", 2)[:2] for v in services["prometheus"]["volumes"]
                  if v.startswith("./"))
    assert mounts["./prometheus/remediator-rules.yml"] in prom_cfg["rule_files"]
    assert prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        ["alertmanager:9093"]
    local = dict(prom_cfg, rule_files=[str(RULES)])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local), encoding="utf-8")
    out = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr

    am_path = DEPLOY / "alertmanager" / "alertmanager.yml"
    am = yaml.safe_load(am_path.read_text(encoding="utf-8"))
    hooks = next(r for r in am["receivers"] if r["name"] == am["route"]["receiver"])
    assert [h["url"] for h in hooks["webhook_configs"]] == \
        [f"http://{n}:9095/api/v1/alerts" for n in receivers]
    assert all(h["http_config"]["authorization"]["credentials_file"] ==
               "/run/secrets/webhook_token" and h["send_resolved"]
               for h in hooks["webhook_configs"])
    own = [r for r in am["route"]["routes"] if 'alertname=~"Remediator.*"' in r["matchers"]]
    assert own and own[0]["receiver"] != am["route"]["receiver"]
    assert "webhook_token" in services["alertmanager"]["secrets"]
    out = subprocess.run([AMTOOL, "check-config", str(am_path)], capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
