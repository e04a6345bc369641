"""Game days: the scenario model, the evaluation of expected steps, and, on both store
backends, which incidents are game-day incidents (dry-run guard, report figures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.adapters.alertmanager import alerts_url
from receiver.errors import ConfigError, TargetNotAllowed
from receiver.gameday.drill import postable
from receiver.gameday.report import assemble, plain
from receiver.gameday.scenario import ExpectedStep, Scenario, load_scenario, parse_scenario
from receiver.gameday.steps import Happening, evaluate
from receiver.remediation.targets import HttpTargets
from receiver.store import Store
from tests.conftest import ROOT, Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification, unique_group

EXAMPLES = sorted((ROOT / "examples" / "gamedays").glob("*.yml"))
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def scenario(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "drill",
        "time_limit": "30m",
        "alerts": [{"labels": {"alertname": "AppDown", "container": "web1"}}],
        "expect": [{"step": "incident_opened", "within": "1m"}],
    }
    base.update(over)
    return base


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_scenario(data, "s.yml")
    return dict(err.value.problems)


# -- the scenario model --------------------------------------------------------------------

def test_the_shipped_examples_load_one_dry_run_one_live() -> None:
    """Both example scenarios validate; one names no live target, the other one."""
    loaded = [load_scenario(p) for p in EXAMPLES]
    assert len(loaded) == 2
    assert sorted(len(s.live_targets) for s in loaded) == [0, 1]


@pytest.mark.parametrize(("over", "path", "words"), [
    ({"alerts": []}, "alerts", "at least 1"),
    ({"alerts": [{"labels": {"container": "x"}}]}, "alerts[0]", "alertname is required"),
    ({"alerts": [{"labels": {"alertname": "A", "gameday": "x"}}]}, "alerts[0]",
     "set by remediator"),
    ({"alerts": [{"labels": {"alertname": "A", "bad-name": "x"}}]}, "alerts[0].labels.bad-name.[key]",
     "pattern"),
    ({"alerts": [{"labels": {"alertname": "A\x1b[2J"}}]}, "alerts[0].labels.alertname",
     "pattern"),
    ({"alerts": [{"lables": {"alertname": "A"}}]}, "alerts[0].lables", "Extra inputs"),
    ({"expect": [{"step": "job_dry_run"}]}, "expect[0]", "needs the rule"),
    ({"expect": [{"step": "acknowledged", "rule": "r"}]}, "expect[0]", "only for job steps"),
    ({"expect": [{"step": "paged"}]}, "expect[0].step", "Input should be"),
    ({"expect": [{"step": "resolved", "within": "1h"}]}, "(top level)", "expect[0].within"),
    ({"expect": [{"step": "resolved", "within": "soon"}]}, "expect[0].within",
     "invalid duration"),
    ({"time_limit": "2d"}, "(top level)", "time_limit"),
    ({"live": {"targets": []}}, "live.targets", "at least 1"),
    ({"live": {"targets": ["web1"]}}, "live.targets[0]", "pattern"),
])
def test_bad_scenarios_are_refused_with_the_field_path(over: dict[str, Any], path: str,
                                                       words: str) -> None:
    """Each bad field is named by its path in the file."""
    found = problems(scenario(**over))
    assert path in found, found
    assert words in found[path]


def test_a_file_that_is_not_yaml_or_not_a_mapping_is_refused(tmp_path: Path) -> None:
    """Broken YAML names its line; a list is refused at the top level."""
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_scenario(bad)
    assert err.value.problems[0][0].startswith("line ")
    assert problems(["a"]) == {"(top level)": "the file must hold a mapping"}


_VALUE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(value=_VALUE)
def test_label_values_reach_alertmanager_unchanged_or_are_refused(value: str) -> None:
    """A value with a control character is refused; any other is sent as exactly that JSON
    string, under its own label, and the game day's label cannot be overridden."""
    data = scenario(alerts=[{"labels": {"alertname": "A", "x": value},
                             "annotations": {"summary": value}}])
    if any(ord(c) < 32 and c not in "\t\n" or ord(c) == 127 for c in value):
        with pytest.raises(ConfigError):
            parse_scenario(data)
        return
    sc = parse_scenario(data)
    sent = [json.loads(json.dumps(a.as_json()))
            for a in postable(sc, "g1", started_at=START, deadline=START + sc.time_limit)]
    assert sent[0]["labels"] == {"alertname": "A", "x": value, "gameday": "g1"}
    assert sent[0]["annotations"] == {"summary": value}


def test_alerts_end_at_the_deadline_or_their_resolve_after() -> None:
    """Without resolve_after an alert lasts the time limit; ending early cuts it."""
    sc = parse_scenario(scenario(alerts=[
        {"labels": {"alertname": "A"}}, {"labels": {"alertname": "B"}, "resolve_after": "5m"}]))
    ends = [a.ends_at for a in postable(sc, "g", started_at=START,
                                        deadline=START + sc.time_limit)]
    assert ends == [START + timedelta(minutes=30), START + timedelta(minutes=5)]
    cut = START + timedelta(minutes=2)
    assert {a.ends_at for a in postable(sc, "g", started_at=START,
                                        deadline=START + sc.time_limit, resolved_at=cut)} == {cut}


@pytest.mark.parametrize("url", [
    "http://10.0.0.1:9093", "http://user:pw@127.0.0.1:9093", "http://127.0.0.1:9093/?x=1",
    "ftp://127.0.0.1:9093", "http://127.0.0.1:9093@10.0.0.1:80",
])
def test_an_alertmanager_outside_the_allowlist_is_refused(url: str) -> None:
    """Only an http(s) host:port of targets.http.hosts, without user, query or fragment."""
    hosts = HttpTargets(hosts=["127.0.0.1:9093"])
    with pytest.raises(TargetNotAllowed):
        alerts_url(url, hosts)
    assert alerts_url("http://127.0.0.1:9093/am/", hosts) == "http://127.0.0.1:9093/am/api/v2/alerts"


def test_terminal_text_loses_its_control_characters() -> None:
    """An alert title cannot send escape sequences to the operator's terminal."""
    assert plain("a\x1b[2Jb\x9bc\nd") == "a?[2Jb?c?d"


# -- the evaluation of expected steps ------------------------------------------------------

def _steps(*raw: dict[str, Any]) -> list[ExpectedStep]:
    return [ExpectedStep.model_validate(r) for r in raw]


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def test_a_step_that_happened_in_time_is_met_with_when_and_who() -> None:
    got = evaluate(_steps({"step": "acknowledged", "within": "5m"}),
                   [Happening("acknowledged", at(3), 7, "user:alice")],
                   started_at=START, deadline=at(30), ended_at=None, now=at(4))
    assert (got[0].status, got[0].at, got[0].actor, got[0].incident_id) == (
        "met", at(3), "user:alice", 7)
    assert got[0].after == timedelta(minutes=3)


def test_a_step_that_came_late_is_missed_and_says_by_how_much() -> None:
    got = evaluate(_steps({"step": "acknowledged", "within": "5m"}),
                   [Happening("acknowledged", at(7), 7, "user:bob")],
                   started_at=START, deadline=at(30), ended_at=None, now=at(8))
    assert got[0].status == "missed"
    assert "after 7m, past the 5m allowed" in got[0].note


def test_a_step_not_yet_happened_is_pending_until_its_time_is_up() -> None:
    steps = _steps({"step": "mitigated", "within": "10m"}, {"step": "resolved"})
    early = evaluate(steps, [], started_at=START, deadline=at(30), ended_at=None, now=at(5))
    assert [s.status for s in early] == ["pending", "pending"]
    late = evaluate(steps, [], started_at=START, deadline=at(30), ended_at=None, now=at(11))
    assert [s.status for s in late] == ["missed", "pending"]
    over = evaluate(steps, [], started_at=START, deadline=at(30), ended_at=None, now=at(31))
    assert [s.status for s in over] == ["missed", "missed"]


def test_ending_the_game_day_misses_every_step_still_pending() -> None:
    got = evaluate(_steps({"step": "resolved"}), [], started_at=START, deadline=at(30),
                   ended_at=at(4), now=at(5))
    assert (got[0].status, got[0].note) == ("missed", "not before the game day ended")


def test_job_steps_count_only_jobs_of_their_rule_and_the_earliest_wins() -> None:
    happened = [Happening("job_dry_run", at(2), 1, rule="other"),
                Happening("job_dry_run", at(4), 1, rule="restart-web"),
                Happening("job_dry_run", at(3), 2, rule="restart-web")]
    got = evaluate(_steps({"step": "job_dry_run", "rule": "restart-web", "within": "5m"},
                          {"step": "job_succeeded", "rule": "restart-web"}),
                   happened, started_at=START, deadline=at(30), ended_at=None, now=at(6))
    assert (got[0].status, got[0].at, got[0].incident_id) == ("met", at(3), 2)
    assert got[1].status == "pending"


# -- game-day incidents in the store (both backends) ---------------------------------------

SC = Scenario.model_validate(scenario(expect=[
    {"step": "incident_opened", "within": "1m"},
    {"step": "job_dry_run", "rule": "poke", "within": "2m"},
    {"step": "acknowledged", "within": "5m"}]))


def start_gameday(store: Store, clock: Clock, gid: str = "g-1",
                  sc: Scenario = SC) -> None:
    with store.unit() as uow:
        uow.gamedays.start(id=gid, name=sc.name, scenario=sc.model_dump_json(),
                           targets=sc.live_targets, details={}, actor="user:alice",
                           now=clock(), deadline=clock() + sc.time_limit)


def fire(kit: Kit, labels: dict[str, str], group: str | None = None) -> int:
    result = kit.fire(make_notification([make_alert(labels=labels)],
                                        group_key=group or unique_group()))
    return int(result.incident_id)


def test_a_game_day_job_runs_dry_and_says_so_on_the_timeline(store: Store, clock: Clock) -> None:
    """The incident of an alert carrying a started game day's id plans its job in dry run
    (guard "gameday"), and the playbook is never called."""
    kit = Kit(store, clock, [rule()])
    start_gameday(store, clock)
    clock.advance(seconds=5)
    inc = fire(kit, {"container": "web1", "gameday": "g-1"})
    kit.drain()
    assert kit.playbook.calls == []
    assert [j["state"] for j in kit.jobs()] == ["dry_run"]
    with store.unit(write=False) as uow:
        d = uow.incidents.detail(inc)
        assert uow.gamedays.for_incident(inc) is not None
        assert uow.gamedays.marks([inc]) == {inc: "g-1"}
    assert d is not None
    dry = [e for e in d.timeline if e.kind == "job_dry_run"]
    assert dry and dry[0].detail["guard"] == "gameday" and "game day g-1" in dry[0].message


@pytest.mark.parametrize("label", ["g-unknown", "g-1' OR '1'='1", ""])
def test_a_forged_or_unknown_gameday_label_is_an_ordinary_alert(
        store: Store, clock: Clock, label: str) -> None:
    """A label naming no game day changes nothing: the job really runs."""
    kit = Kit(store, clock, [rule()])
    start_gameday(store, clock)
    inc = fire(kit, {"container": "web1", "gameday": label})
    kit.drain()
    assert kit.playbook.calls == ["web1"]
    with store.unit(write=False) as uow:
        assert uow.gamedays.for_incident(inc) is None
        assert uow.gamedays.marks([inc]) == {}


def test_a_label_of_an_ended_game_day_is_ordinary(store: Store, clock: Clock) -> None:
    """After the game day ends (or before it starts), its id silences nothing."""
    kit = Kit(store, clock, [rule()])
    fire(kit, {"container": "early", "gameday": "g-1"})  # before the start
    clock.advance(seconds=1)
    start_gameday(store, clock)
    clock.advance(minutes=1)
    with store.unit() as uow:
        assert uow.gamedays.end("g-1", actor="user:alice", now=clock()) is not None
        assert uow.gamedays.end("g-1", actor="user:alice", now=clock()) is None
    clock.advance(seconds=1)
    fire(kit, {"container": "late", "gameday": "g-1"})
    kit.drain()
    assert sorted(kit.playbook.calls) == ["early", "late"]


def test_a_real_alert_joining_a_game_day_incident_makes_it_real(store: Store,
                                                                clock: Clock) -> None:
    """Grouped with an ordinary alert, the incident is real: its jobs run, it is counted."""
    kit = Kit(store, clock, [rule()])
    start_gameday(store, clock)
    group = unique_group()
    inc = fire(kit, {"container": "web1", "gameday": "g-1"}, group)
    assert fire(kit, {"container": "web2"}, group) == inc
    kit.drain()
    assert sorted(kit.playbook.calls) == ["web1", "web2"]
    with store.unit(write=False) as uow:
        assert uow.gamedays.for_incident(inc) is None
        assert [i.drill for i in uow.gamedays.incidents("g-1")] == [0]


def test_live_targets_act_for_real_and_others_stay_dry(store: Store, clock: Clock) -> None:
    """A live scenario's job runs when every target is live, and only then."""
    kit = Kit(store, clock, [rule()])
    live = Scenario.model_validate(scenario(live={"targets": ["fake:web1"]}))
    start_gameday(store, clock, "g-live", live)
    fire(kit, {"container": "web1", "gameday": "g-live"})
    fire(kit, {"container": "web2", "gameday": "g-live"})
    kit.drain()
    assert kit.playbook.calls == ["web1"]
    assert sorted(j["state"] for j in kit.jobs()) == ["dry_run", "succeeded"]


def test_game_day_incidents_are_left_out_of_the_figures(store: Store, clock: Clock) -> None:
    """The report's facts, the /metrics summary and the playbook outcomes count only the
    real incident and its job."""
    kit = Kit(store, clock, [rule()])
    live = Scenario.model_validate(scenario(live={"targets": ["fake:drill"]}))
    start_gameday(store, clock, "g-live", live)
    drill = fire(kit, {"container": "drill", "gameday": "g-live"})
    real = fire(kit, {"container": "web1", "gameday": "nope"})
    kit.drain()
    assert sorted(kit.playbook.calls) == ["drill", "web1"]
    with store.unit(write=False) as uow:
        facts = uow.reports.incident_facts(None)
        jobs = uow.reports.job_facts(None)
        summary = uow.reports.incident_summary(now=clock(), noise_window=timedelta(minutes=5),
                                               bounds=(60.0,))
        outcomes = uow.reports.playbook_outcomes()
    assert [f.id for f in facts] == [real]
    assert len(jobs) == 1
    assert sum(s.incidents for s in summary.values()) == 1
    assert outcomes == {"restart_container": {"succeeded": 1, "failed": 0, "escalated": 0}}
    assert drill != real


def test_the_report_shows_steps_times_and_who(store: Store, clock: Clock) -> None:
    """From the store: the dry-run step met, the acknowledgement by its person, the time
    to acknowledge, and what was missed."""
    from receiver.gameday.report import build
    from receiver.incidents import lifecycle

    kit = Kit(store, clock, [rule()], people={"users": {"alice": {}}})
    start_gameday(store, clock)
    clock.advance(seconds=10)
    inc = fire(kit, {"container": "web1", "gameday": "g-1"})
    kit.drain()
    clock.advance(minutes=6)  # too late for the 5m acknowledgement
    lifecycle.act(store, kit.config, inc, "acknowledge", user="alice", now=clock())
    r = build(store, "g-1", now=clock())
    assert r is not None
    got = {s.expected.step: s for s in r.steps}
    assert got["incident_opened"].status == "met"
    assert got["job_dry_run"].status == "met"
    assert (got["acknowledged"].status, got["acknowledged"].actor) == ("missed", "user:alice")
    fig = r.incidents[0]
    assert fig.drill and fig.acknowledged_by == "user:alice"
    assert fig.time_to_acknowledge == timedelta(minutes=6)
    assert any("acknowledged missed" in p for p in r.problems)
    assert r.as_json()["steps"][1]["status"] == "met"
    assert assemble(r.gameday, [], now=clock()).problems[0].startswith("no incident")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40))
@example(label="g-1")
@example(label="G-1")
@example(label="g-1 ")
@example(label="g-%")
@example(label="g-1' OR 1=1 --")
def test_only_the_exact_id_of_a_running_game_day_makes_a_drill(
        store: Store, clock: Clock, label: str) -> None:
    """Whatever the label's value, an incident is a drill exactly when the value is the id
    of a started game day."""
    kit = Kit(store, clock, [rule()])
    with store.unit(write=False) as uow:
        started = uow.gamedays.get("g-1") is not None
    if not started:
        start_gameday(store, clock)
    clock.advance(seconds=1)
    inc = fire(kit, {"container": "web1", "gameday": label})
    with store.unit(write=False) as uow:
        drill = uow.gamedays.for_incident(inc)
        marks = uow.gamedays.marks([inc])
    assert (drill is not None) == (label == "g-1")
    assert marks == ({inc: "g-1"} if label == "g-1" else {})
