"""The named extension points: the event kind table, the state tables, playbook policy read
from the class, the playbook registry given to config validation, and the adapter factory
with one protocol per kind of adapter."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from playbooks import REGISTRY
from playbooks.restore_database import RestoreDatabase
from receiver.adapters import (
    AdapterFactory,
    DockerApi,
    HttpApi,
    PgToolsApi,
    PostgresApi,
    PrometheusApi,
    RedisApi,
)
from receiver.comms.notify import NOTIFY_TYPES
from receiver.config import HttpProbe, load_config, parse_config
from receiver.diagnostics.probes import PROBES, ProbeEnv
from receiver.errors import ConfigError
from receiver.incidents import event_kinds
from receiver.incidents import states as incidents
from receiver.incidents.event_kinds import EventKind
from receiver.people.approvals import required_approvers
from receiver.remediation import job_states
from receiver.remediation.rules import HttpCheck, Verification
from receiver.remediation.targets import HttpTargets, TargetsConfig
from receiver.remediation.verification import run_checks
from receiver.store import Store, events
from receiver.store import ingest as ingest_store
from receiver.store import jobs as job_store
from receiver.store import reports as report_store
from tests.conftest import PG_DSN, Clock, people
from tests.engine_kit import FakeAction, Kit, rule
from tests.factories import make_alert, make_notification
from tests.test_diagnostics import LocalHttp, http  # noqa: F401 - fixture

# What the kinds did before they were one table (the frozensets and NOTIFY_TYPES).
AUDITED_BEFORE = {
    "opened", "reopened", "resolved", "severity_changed", "state_changed",
    "job_enqueued", "job_claimed", "job_blocked", "job_refused", "job_awaiting_approval",
    "job_approved", "job_denied", "job_expired", "job_started", "job_succeeded",
    "job_failed", "job_dry_run", "job_interrupted", "job_requeued", "job_escalated",
    "job_retry_scheduled", "verification_passed", "verification_failed",
    "circuit_opened", "escalated", "job_waiting", "acknowledged", "assigned", "note",
    "sla_breached", "reminder", "diagnostics_requested", "postmortem_saved",
}
# Kinds added since, with what they do: Alertmanager silences and earned autonomy
# (audited, not notified).
AUDITED_SINCE = {"silence_created", "silence_expired", "silence_failed",
                 "autonomy_promoted", "autonomy_demoted", "autonomy_set_back",
                 "undo_requested", "undo_refused"}
NOTIFY_TYPES_BEFORE = {
    "opened": "warning", "reopened": "warning", "severity_changed": "warning",
    "job_awaiting_approval": "warning", "reminder": "warning", "job_started": "info",
    "resolved": "success", "job_succeeded": "success", "job_failed": "failure",
    "verification_failed": "failure", "escalated": "failure", "sla_breached": "failure",
}
# Since audiences: every state change is in the outbox (a channel hears it only on request).
NOTIFY_TYPES_BEFORE["state_changed"] = "info"
# Since undo: a person's request to take an action back is announced.
NOTIFY_TYPES_BEFORE["undo_requested"] = "info"
NO_SLEEP = lambda _s: None  # noqa: E731 - checks that do not wait
KNOWN = {k.value for k in EventKind}


# -- event kinds ----------------------------------------------------------------------------
def test_the_table_has_one_row_per_event_kind() -> None:
    """Every EventKind has its row, and each label is the kind as people read it."""
    assert set(event_kinds.TABLE) == set(EventKind)
    assert all(EventKind(k.value) is k for k in EventKind)
    assert {k: s.label for k, s in event_kinds.TABLE.items()} == {
        k: k.value.replace("_", " ") for k in EventKind
    }


def test_the_kind_sets_are_read_from_the_table_and_unchanged() -> None:
    """Audited, notified (with its apprise type) and diagnosed kinds are what they were."""
    assert events.AUDITED == AUDITED_BEFORE | AUDITED_SINCE
    assert events.NOTIFY == set(NOTIFY_TYPES_BEFORE)
    assert events.DIAGNOSE == {"opened", "reopened"}
    assert NOTIFY_TYPES == NOTIFY_TYPES_BEFORE
    assert event_kinds.notified_kinds() == sorted(NOTIFY_TYPES_BEFORE)
    assert event_kinds.notify_type("note") == "info"
    assert event_kinds.notify_type("gone_from_this_version") == "info"
    assert event_kinds.label_of("gone_from_this_version") == "gone from this version"


def test_every_kind_recorded_does_what_its_row_says(store: Store, clock: Clock) -> None:
    """Each kind recorded through events.record is stored as its string, and writes an
    outbox row, a diagnostics request and an audit entry exactly when its row says so."""
    kit = Kit(store, clock, [], people=people())
    inc = kit.fire(make_notification([make_alert()], group_key="g-kinds")).incident_id

    def counts() -> dict[str, int]:
        with store.db.transaction(write=False) as tx:
            return {t: int(tx.fetchone(f"SELECT COUNT(*) AS n FROM {t}")["n"])  # noqa: S608 - fixed names
                    for t in ("incident_events", "outbox", "diagnostic_requests", "audit_log")}

    for kind in EventKind:
        spec = kind.spec
        before = counts()
        with store.db.transaction() as tx:
            events.record(tx, incident_id=inc, at=clock(), kind=kind, actor="system",
                          message=f"a {kind.label}")
        after = counts()
        grew = {t: after[t] - before[t] for t in after}
        assert grew == {"incident_events": 1, "outbox": int(spec.notified),
                        "diagnostic_requests": int(spec.diagnose),
                        "audit_log": int(spec.audited)}, kind
        with store.db.transaction(write=False) as tx:
            last = tx.fetchone("SELECT kind FROM incident_events ORDER BY id DESC LIMIT 1")
        assert last is not None and last["kind"] == kind.value and type(last["kind"]) is str


def test_an_unknown_kind_is_refused_and_nothing_is_written(store: Store, clock: Clock) -> None:
    """events.record refuses a kind outside the table, before it writes anything."""
    kit = Kit(store, clock, [], people=people())
    inc = kit.fire(make_notification([make_alert()], group_key="g-unknown")).incident_id
    with store.db.transaction(write=False) as tx:
        before = tx.fetchone("SELECT COUNT(*) AS n FROM incident_events")["n"]
    with pytest.raises(ValueError, match="unknown event kind 'job_exploded'"):
        with store.db.transaction() as tx:
            events.record(tx, incident_id=inc, at=clock(), kind="job_exploded",
                          actor="system", message="x")
    with store.db.transaction(write=False) as tx:
        assert tx.fetchone("SELECT COUNT(*) AS n FROM incident_events")["n"] == before


@given(st.text(max_size=40).filter(lambda s: s not in KNOWN))
def test_any_other_string_names_no_kind(value: str) -> None:
    """No string outside the table parses as a kind (case, spaces and prefixes included)."""
    with pytest.raises(ValueError, match="unknown event kind"):
        EventKind.parse(value)


@pytest.mark.parametrize("value", ["OPENED", "Opened", " opened", "job_", "opened\x00"])
def test_near_misses_name_no_kind(value: str) -> None:
    """A kind's name, other case, padding or a NUL does not pass for it."""
    with pytest.raises(ValueError):
        EventKind.parse(value)


def test_every_final_job_state_has_its_event_kind() -> None:
    """The worker records ``job_<state>`` when a job ends; each such kind is in the table."""
    for state in job_states.FINAL:
        assert EventKind.parse(f"job_{state}").spec.audited


# -- states ---------------------------------------------------------------------------------
def test_active_incident_states_are_derived_from_the_table() -> None:
    """Active: has a way out and cannot be closed yet; the store's lists are the same one."""
    assert incidents.ACTIVE == {"open", "acknowledged", "mitigating", "mitigated"}
    assert incidents.ACTIVE_STATES == ("open", "acknowledged", "mitigating", "mitigated")
    assert incidents.FINAL == {"closed"}
    assert ingest_store.ACTIVE_STATES is incidents.ACTIVE_STATES
    assert report_store.ACTIVE_STATES is incidents.ACTIVE_STATES
    assert set(incidents.TRANSITIONS) == set(incidents.IncidentState)
    assert all(s in incidents.IncidentState for nxt in incidents.TRANSITIONS.values()
               for s in nxt)
    # every active state can still be resolved or marked a false alarm; no other can
    for state, nxt in incidents.TRANSITIONS.items():
        assert (state in incidents.ACTIVE) == ({"resolved", "false_alarm"} <= nxt)


def test_job_states_are_defined_once() -> None:
    """The store applies the one job table; final states are those with no way out."""
    assert job_store.JOB_TRANSITIONS is job_states.JOB_TRANSITIONS
    assert job_store.FINAL is job_states.FINAL
    assert set(job_states.JOB_TRANSITIONS) == set(job_states.JobState)
    assert job_states.FINAL == {"succeeded", "failed", "blocked", "refused", "denied",
                                "expired", "dry_run", "escalated"}
    assert sorted(job_states.sources("queued")) == ["awaiting_approval", "interrupted",
                                                    "running"]
    assert all(type(s) is str for s in job_states.sources("queued"))


# -- playbook policy and the registry -------------------------------------------------------
@dataclass
class FourEyes(FakeAction):
    """A fake playbook whose class asks for three approvers by default."""

    name = "four_eyes"
    default_approvers = 3


def test_default_approvers_come_from_the_playbook_class() -> None:
    """restore_database's two-person rule is its class attribute; any playbook's class can
    set its own default; a count in the rule wins."""
    assert RestoreDatabase.default_approvers == 2
    assert {n: pb.default_approvers for n, pb in REGISTRY.items()} == {
        "restart_container": 1, "scale_service": 1, "kill_query": 1, "flush_cache": 1,
        "restore_database": 2, "maintenance_mode": 1, "rollback_deployment": 1,
    }
    registry: dict[str, Any] = {"four_eyes": FourEyes()}
    cfg = parse_config({"rules": [
        {"name": "a", "playbook": "four_eyes", "params": {"target": "x"}},
        {"name": "b", "playbook": "four_eyes", "params": {"target": "x"},
         "approval": {"approvers": 1}},
    ]}, registry=registry)
    assert required_approvers(cfg, "a", "four_eyes", registry)[0] == 3
    assert required_approvers(cfg, "b", "four_eyes", registry)[0] == 1
    # not in the built-in registry: no default beyond the rule's
    assert required_approvers(cfg, "a", "four_eyes")[0] == 1


def test_config_validates_rules_against_the_registry_it_is_given() -> None:
    """A rule naming a fake playbook is refused by the built-in registry, accepted by one
    that holds it, and the built-in names are then unknown."""
    data = {"rules": [rule("poke", playbook="fake_action")]}
    with pytest.raises(ConfigError) as refused:
        parse_config(data)
    assert "rules[0].playbook" in str(refused.value)
    config = parse_config(data, registry={"fake_action": FakeAction()})
    assert config.rules[0].playbook == "fake_action"
    with pytest.raises(ConfigError, match="known: fake_action"):
        parse_config({"rules": [rule("poke")]}, registry={"fake_action": FakeAction()})


def test_load_config_takes_the_registry_too(tmp_path: Any) -> None:
    """load_config passes its registry on to validation."""
    path = tmp_path / "remediator.yml"
    path.write_text("rules:\n  - name: poke\n    matchers: ['alertname=\"AppDown\"']\n"
                    "    playbook: fake_action\n    params: {target: web1}\n")
    with pytest.raises(ConfigError):
        load_config(path)
    assert load_config(path, registry={"fake_action": FakeAction()}).rules[0].name == "poke"


def test_a_fake_playbook_under_its_own_name_runs_end_to_end(store: Store, clock: Clock) -> None:
    """The engine kit registers its fake as fake_action: the rule validates, the job runs it
    and succeeds, and the job names it."""
    fake = FakeAction()
    kit = Kit(store, clock, [rule(playbook="fake_action")], playbook=fake)
    inc = kit.fire(make_notification([make_alert(labels={"container": "web1"})],
                                     group_key="g-fake")).incident_id
    kit.drain()
    job = kit.job(kit.jobs()[0]["id"])
    assert (job["playbook"], job["state"]) == ("fake_action", "succeeded")
    assert fake.calls == ["web1"]
    assert "job_succeeded" in kit.kinds(inc)


# -- adapters -------------------------------------------------------------------------------
class CountingFactory(AdapterFactory):
    """The real factory, noting which kinds of adapter it built."""

    def __init__(self) -> None:
        self.built: list[str] = []

    def http(self, **kw: Any) -> HttpApi:
        self.built.append("http")
        return super().http(**kw)

    def prometheus(self, base_url: str, **kw: Any) -> PrometheusApi:
        self.built.append("prometheus")
        return super().prometheus(base_url, **kw)


def test_the_factory_builds_each_adapter_with_its_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each factory method returns an adapter of its protocol, which works against the real
    PostgreSQL, Redis and dockerd (read-only calls)."""
    monkeypatch.setenv("RMTEST_EXT_PG", PG_DSN)
    monkeypatch.setenv("RMTEST_EXT_REDIS",
                       os.environ.get("REMEDIATOR_TEST_REDIS_URL", "redis://127.0.0.1:63790/0"))
    targets = TargetsConfig.model_validate({
        "postgres": {"main": {"dsn": "env:RMTEST_EXT_PG", "databases": ["postgres"]}},
        "redis": {"cache": {"url": "env:RMTEST_EXT_REDIS", "dbs": [13]}},
        "http": {"hosts": ["127.0.0.1:*"]},
    })
    factory = AdapterFactory()
    hosts = targets.http
    assert isinstance(factory.http(timeout_s=1, hosts=hosts), HttpApi)
    assert isinstance(factory.prometheus("http://127.0.0.1:9", timeout_s=1, hosts=hosts),
                      PrometheusApi)
    assert isinstance(factory.pg_tools(targets.postgres["main"]), PgToolsApi)
    with factory.postgres(targets.postgres["main"]) as pg:
        assert isinstance(pg, PostgresApi) and pg.select_one_ms() >= 0
    with factory.redis(targets.redis["cache"], db=13) as cache:
        assert isinstance(cache, RedisApi) and cache.ping_ms() >= 0
    with factory.docker(targets.docker) as docker:
        assert isinstance(docker, DockerApi)
        assert docker.details("rmtest-no-such-container-7f3a") is None


def test_verification_and_diagnostics_build_adapters_through_the_factory(
    http: LocalHttp,  # noqa: F811
) -> None:
    """An HTTP verification check and an HTTP diagnostics probe ask the given factory for
    their adapter, and reach the real local server through it."""
    hosts = HttpTargets(hosts=["127.0.0.1:*"])
    factory = CountingFactory()
    checks = run_checks(Verification(http=HttpCheck(url=f"{http.url}/health", within="0s")),
                        {}, lambda: False, NO_SLEEP, hosts=hosts, adapters=factory)
    assert [c.ok for c in checks] == [True] and factory.built == ["http"]
    env = ProbeEnv(targets=TargetsConfig(http=hosts), adapters=factory)
    finding = PROBES["http"](HttpProbe(url=f"{http.url}/ready"), 2.0, env)
    assert finding.outcome == "failed" and "503" in finding.summary
    assert factory.built == ["http", "http"]
