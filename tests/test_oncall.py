"""The on-call roster: rotations across hand-offs and DST changes, overrides, the backup
called after the timeout (a movable clock), the store's audited overrides, the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.cli import main
from receiver.commands.identity import os_account
from receiver.config import parse_config
from receiver.config.oncall import OncallConfig
from receiver.errors import ConfigError
from receiver.people import roster as r
from receiver.store import AuditFilter, Store
from receiver.store.oncall import Override
from tests.conftest import Clock

BERLIN_ROTATION: dict[str, Any] = {
    "rotation": {"people": ["alice", "bob", "carol"], "starts": "2026-01-05",
                 "handoff": {"day": "monday", "time": "09:00", "timezone": "Europe/Berlin"}},
    "backup": "dave",
}


def config(**roles: Any) -> OncallConfig:
    users = {n: {} for n in ("alice", "bob", "carol", "dave", "erin", "frank")}
    raw = {"people": {"users": users},
           "oncall": {"roles": roles or {"oncall-engineer": BERLIN_ROTATION}}}
    return parse_config(raw).oncall


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def override(role: str, user: str, start: datetime, end: datetime, *, id: int = 1,
             created: datetime | None = None, revoked: datetime | None = None) -> Override:
    return Override(id=id, role=role, user_name=user, starts_at=start, ends_at=end,
                    reason="swap", created_by="user:alice", created_at=created or start,
                    revoked_at=revoked, revoked_by=None)


def test_the_turn_changes_at_the_local_handoff_time() -> None:
    """2026-01-05 is a Monday: alice from 09:00 Berlin (08:00 UTC in winter), bob a week
    later, carol, then alice again."""
    cfg = config()
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 5, 8, 0)).primary == "alice"
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 12, 7, 59)).primary == "alice"
    duty = r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 12, 8, 0))
    assert (duty.primary, duty.backup, duty.source) == ("bob", "dave", "rotation")
    assert (duty.since, duty.until) == (utc(2026, 1, 12, 8), utc(2026, 1, 19, 8))
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 19, 8, 0)).primary == "carol"
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 26, 8, 0)).primary == "alice"
    # before the first hand-off the rotation runs backwards: carol's turn
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 1, 5, 7, 59)).primary == "carol"


def test_the_handoff_stays_at_nine_local_across_both_dst_changes() -> None:
    """Berlin leaves summer time on 2026-10-25: the Monday 09:00 hand-off moves from 07:00
    to 08:00 UTC and that turn lasts 169 hours; it enters summer time on 2026-03-29 and
    that turn lasts 167 hours."""
    cfg = config()
    autumn = r.on_duty(cfg, "oncall-engineer", utc(2026, 10, 20, 12))
    assert (autumn.since, autumn.until) == (utc(2026, 10, 19, 7), utc(2026, 10, 26, 8))
    assert autumn.until - autumn.since == timedelta(hours=169)
    after = r.on_duty(cfg, "oncall-engineer", utc(2026, 10, 26, 7, 30))
    assert after.primary == autumn.primary  # 08:30 Berlin: still the old turn
    assert r.on_duty(cfg, "oncall-engineer", utc(2026, 10, 26, 8)).primary != autumn.primary
    spring = r.on_duty(cfg, "oncall-engineer", utc(2026, 3, 25, 12))
    assert (spring.since, spring.until) == (utc(2026, 3, 23, 8), utc(2026, 3, 30, 7))
    assert spring.until - spring.since == timedelta(hours=167)


def test_a_handoff_time_that_spring_forward_skips_happens_shifted_by_the_gap() -> None:
    """Sunday 02:30 does not exist in Berlin on 2026-03-29: the hand-off is at 03:30 CEST
    (01:30 UTC), the wall-clock time shifted by the hour that was skipped."""
    role = {"rotation": {"people": ["alice", "bob"], "starts": "2026-03-01",
                         "handoff": {"day": "sunday", "time": "02:30",
                                     "timezone": "Europe/Berlin"}}}
    cfg = config(night=role)
    before = r.on_duty(cfg, "night", utc(2026, 3, 29, 1, 29))
    after = r.on_duty(cfg, "night", utc(2026, 3, 29, 1, 30))
    assert before.until == after.since == utc(2026, 3, 29, 1, 30)
    assert before.primary != after.primary


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                    timezones=st.just(UTC)),
       st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC",
                        "Asia/Kolkata"]),
       st.sampled_from(["monday", "friday", "sunday"]))
def test_every_moment_falls_in_exactly_one_turn_and_turns_follow_the_order(
        at: datetime, zone: str, day: str) -> None:
    people = ["alice", "bob", "carol"]
    role = {"rotation": {"people": people, "starts": "2026-01-05",
                         "handoff": {"day": day, "time": "09:00", "timezone": zone}}}
    cfg = config(x=role)
    duty = r.on_duty(cfg, "x", at)
    assert duty.since is not None and duty.until is not None
    assert duty.since <= at < duty.until
    assert timedelta(hours=166) <= duty.until - duty.since <= timedelta(hours=170)
    nxt = r.on_duty(cfg, "x", duty.until)
    assert nxt.since == duty.until
    assert people.index(nxt.primary) == (people.index(duty.primary) + 1) % len(people)
    assert r.next_duty(cfg, "x", at) == nxt


def test_an_override_takes_the_primary_seat_and_the_newest_one_wins() -> None:
    cfg = config(**{"tech-lead": {"primary": "erin", "backup": "frank"}})
    start, end = utc(2026, 12, 24, 18), utc(2026, 12, 26, 8)
    first = override("tech-lead", "alice", start, end, id=1, created=utc(2026, 12, 1))
    second = override("tech-lead", "bob", start + timedelta(hours=2), end, id=2,
                      created=utc(2026, 12, 2))
    revoked = override("tech-lead", "carol", start, end, id=3, created=utc(2026, 12, 3),
                       revoked=utc(2026, 12, 4))
    other_role = override("oncall-engineer", "dave", start, end, id=4, created=utc(2026, 12, 5))
    all_four = [first, second, revoked, other_role]
    assert r.on_duty(cfg, "tech-lead", start - timedelta(seconds=1), all_four).primary == "erin"
    at_start = r.on_duty(cfg, "tech-lead", start, all_four)
    assert (at_start.primary, at_start.source, at_start.override_id) == ("alice", "override", 1)
    assert at_start.backup == "frank"
    assert r.on_duty(cfg, "tech-lead", start + timedelta(hours=3), all_four).primary == "bob"
    assert r.on_duty(cfg, "tech-lead", end, all_four).primary == "erin"
    # a fixed primary's next change is the next override's start
    nxt = r.next_duty(cfg, "tech-lead", utc(2026, 12, 20), all_four)
    assert nxt is not None and (nxt.primary, nxt.since) == ("alice", start)
    assert r.next_duty(cfg, "tech-lead", utc(2026, 12, 27), all_four) is None
    assert r.role_groups(cfg, "bob", start + timedelta(hours=3), all_four) == {"oncall:tech-lead"}
    assert r.role_groups(cfg, "erin", start + timedelta(hours=3), all_four) == set()


def test_the_backup_is_called_when_the_primary_has_not_acknowledged_in_time() -> None:
    cfg = config()
    clock = Clock(utc(2026, 2, 3, 3, 0))
    opened = clock.now
    duty = r.on_duty(cfg, "oncall-engineer", opened)

    def called(acked: datetime | None = None) -> list[str]:
        return r.called(duty, opened_at=opened, acknowledged_at=acked, now=clock.now,
                        backup_after=cfg.backup_after)

    assert called() == [duty.primary]
    clock.advance(minutes=9, seconds=59)
    assert called() == [duty.primary]
    clock.advance(seconds=1)
    assert called() == [duty.primary, "dave"]
    assert called(acked=opened + timedelta(minutes=5)) == [duty.primary]
    assert called(acked=opened + timedelta(minutes=11)) == [duty.primary, "dave"]


def test_a_roster_naming_unknown_people_or_zones_is_refused_with_the_path() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_config({"people": {"users": {"alice": {}}},
                      "oncall": {"roles": {"lead": {"primary": "alice", "backup": "zed"}}}})
    assert "oncall.roles.lead.backup" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_config({"people": {"users": {"alice": {}}},
                      "oncall": {"roles": {"x": {"rotation": {
                          "people": ["alice"], "handoff": {"timezone": "Mars/Olympus"}}}}}})
    assert "oncall.roles.x.rotation.handoff.timezone" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_config({"people": {"users": {"alice": {}}},
                      "oncall": {"roles": {"x": {"primary": "alice",
                                                 "rotation": {"people": ["alice"]}}}}})
    assert "oncall.roles.x" in str(bad.value) and "either primary or rotation" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        parse_config({"oncall": {"roles": {"Bad Name!": {"primary": "alice"}}}})
    assert "oncall.roles" in str(bad.value)


def test_overrides_are_stored_audited_and_revoked(store: Store) -> None:
    now = utc(2026, 12, 1, 12)
    with store.unit() as uow:
        made = uow.oncall.add_override(role="tech-lead", user="bob", starts_at=now,
                                       ends_at=now + timedelta(hours=8), reason="swap",
                                       actor="user:alice", now=now)
    with store.unit(write=False) as uow:
        live = uow.oncall.overrides(live_at=now + timedelta(hours=1))
        assert [o.id for o in live] == [made.id] and live[0].covers(now + timedelta(hours=1))
        assert uow.oncall.overrides(live_at=now + timedelta(hours=8)) == []
    with store.unit() as uow:
        gone = uow.oncall.revoke_override(made.id, actor="user:carol", now=now + timedelta(hours=2))
        assert gone is not None and gone.revoked_by == "user:carol"
        assert uow.oncall.revoke_override(made.id, actor="user:carol", now=now) is None
    with store.unit(write=False) as uow:
        assert uow.oncall.overrides(live_at=now + timedelta(hours=3)) == []
        assert not uow.oncall.overrides()[0].covers(now + timedelta(hours=3))
        added = uow.audit.query(AuditFilter(action="oncall_override_added"))
        revoked = uow.audit.query(AuditFilter(action="oncall_override_revoked"))
    assert [(e.actor, e.subject, e.details["user"]) for e in added] == [
        ("user:alice", "oncall:tech-lead", "bob")]
    assert [(e.actor, e.details["override"]) for e in revoked] == [("user:carol", made.id)]
    assert store.verify_audit().ok


def test_the_cli_prints_the_roster_and_makes_an_override(store: Store, store_url: str,
                                                        tmp_path: Path) -> None:
    users: dict[str, Any] = {n: {} for n in ("alice", "bob", "carol", "dave")}
    users["alice"]["os_user"] = os_account()
    cfg = tmp_path / "r.yml"
    cfg.write_text(yaml.safe_dump({
        "store": {"url": store_url}, "data_dir": str(tmp_path), "people": {"users": users},
        "oncall": {"roles": {"oncall-engineer": BERLIN_ROTATION,
                             "tech-lead": {"primary": "carol"}}}}))
    run = CliRunner()
    shown = run.invoke(main, ["oncall", "-c", str(cfg), "--at", "2026-01-13T12:00:00+01:00"])
    assert shown.exit_code == 0, shown.output
    assert "oncall-engineer: bob (backup dave)" in shown.output
    assert "next carol from 2026-01-19 08:00 UTC" in shown.output
    assert "tech-lead: carol" in shown.output
    made = run.invoke(main, ["oncall", "override", "-c", str(cfg), "tech-lead", "dave",
                             "--until", "8h", "--reason", "carol is travelling"])
    assert made.exit_code == 0, made.output
    assert "dave is tech-lead" in made.output and "(by user:alice)" in made.output
    shown = run.invoke(main, ["oncall", "-c", str(cfg)])
    assert "tech-lead: dave" in shown.output and "[override #" in shown.output
    refused = run.invoke(main, ["oncall", "override", "-c", str(cfg), "nobody", "dave",
                                "--until", "8h", "--reason", "x"])
    assert refused.exit_code == 2 and "no role named 'nobody'" in refused.output
    naive = run.invoke(main, ["oncall", "override", "-c", str(cfg), "tech-lead", "dave",
                              "--until", "2026-12-31T10:00", "--reason", "x"])
    assert naive.exit_code == 2 and "UTC offset" in naive.output
    with store.unit(write=False) as uow:
        assert [o.user_name for o in uow.oncall.overrides()] == ["dave"]


# ---- roles where groups are named: approvals, chat invitations -------------------------

ROLE_RULE = {"name": "restart", "matchers": ['alertname="AppDown"'],
             "playbook": "restart_container", "params": {"target": "web1"},
             "approval": {"mode": "required", "groups": ["oncall:db-oncall"]}}
ROSTER = {"backup_after": "10m",
          "roles": {"db-oncall": {"primary": "carol", "backup": "bob"}}}


def _parked(store: Store, clock: Clock, **cfg: Any) -> tuple[Any, int]:
    from tests.engine_kit import Kit
    from tests.factories import make_alert, make_notification

    users = {"alice": {"groups": ["oncall"]}, "bob": {"groups": ["web"]},
             "carol": {"groups": ["web"]}, "dave": {"groups": ["web"]}}
    kit = Kit(store, clock, [ROLE_RULE], people={"users": users}, oncall=ROSTER, **cfg)
    kit.fire(make_notification([make_alert(labels={"container": "web1"})]))
    kit.drain()
    job_id = next(j["id"] for j in kit.jobs() if j["state"] == "awaiting_approval")
    return kit, job_id


def _decide(kit: Any, store: Store, job_id: int, user: str, clock: Clock) -> Any:
    from receiver.people.approvals import decide_job

    return decide_job(store, kit.config, job_id, approve=True, user=user, reason="ok",
                      now=clock.now)


def test_an_oncall_role_group_lets_whoever_is_on_duty_approve(store: Store) -> None:
    from receiver.errors import DecisionError

    clock = Clock(datetime.now(UTC))
    kit, job_id = _parked(store, clock)
    with pytest.raises(DecisionError, match="not in an approving group"):
        _decide(kit, store, job_id, "alice", clock)  # in other groups, not on duty
    with pytest.raises(DecisionError, match="not in an approving group"):
        _decide(kit, store, job_id, "bob", clock)  # the backup, before backup_after
    assert _decide(kit, store, job_id, "carol", clock).state == "queued"


def test_an_override_moves_the_right_to_approve(store: Store) -> None:
    from receiver.errors import DecisionError

    clock = Clock(datetime.now(UTC))
    kit, job_id = _parked(store, clock)
    with store.unit() as uow:
        uow.oncall.add_override(role="db-oncall", user="dave", starts_at=clock.now,
                                ends_at=clock.now + timedelta(hours=1), reason="swap",
                                actor="user:carol", now=clock.now)
    with pytest.raises(DecisionError, match="not in an approving group"):
        _decide(kit, store, job_id, "carol", clock)
    assert _decide(kit, store, job_id, "dave", clock).state == "queued"


def test_the_backup_may_approve_once_the_incident_went_unacknowledged(store: Store) -> None:
    clock = Clock(datetime.now(UTC))
    kit, job_id = _parked(store, clock)
    clock.advance(minutes=10)
    assert _decide(kit, store, job_id, "bob", clock).state == "queued"


def test_an_unknown_role_in_approval_or_chat_groups_is_refused_with_the_path() -> None:
    users = {"carol": {}}
    with pytest.raises(ConfigError) as bad:
        parse_config({"people": {"users": users}, "oncall": ROSTER | {"roles": {
            "db-oncall": {"primary": "carol"}}},
            "rules": [{**ROLE_RULE, "params": {"name": "web1"},
                       "approval": {"groups": ["dba", "oncall:nobody"]}}]})
    assert "rules[0].approval.groups[1]" in str(bad.value)
    assert "no on-call role 'nobody'" in str(bad.value)


def test_chat_invites_whoever_is_on_duty_for_a_role_group() -> None:
    from receiver.comms.chat.rooms import invitees

    users = {n: {"matrix": f"@{n}:example.org"} for n in ("alice", "bob", "carol")}
    cfg = parse_config({"people": {"users": users},
                        "oncall": {"roles": {"oncall-engineer": BERLIN_ROTATION | {
                            "rotation": {**BERLIN_ROTATION["rotation"],
                                         "people": ["alice", "bob"]},
                            "backup": "carol"}}},
                        "chat": {"invite_groups": ["oncall:oncall-engineer"]}})
    assert invitees(cfg, utc(2026, 1, 6, 12)) == ["@alice:example.org"]
    assert invitees(cfg, utc(2026, 1, 13, 12)) == ["@bob:example.org"]
    swap = override("oncall-engineer", "carol", utc(2026, 1, 13), utc(2026, 1, 14))
    assert invitees(cfg, utc(2026, 1, 13, 12), [swap]) == ["@carol:example.org"]


def test_the_backup_is_invited_to_the_room_once_the_primary_missed_the_ack(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A P1 incident's room is ready; nobody acknowledges: at backup_after the role's
    backup gets one invitation, however often the chat service plans again."""
    import json

    from receiver.comms.chat import rooms
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from tests.factories import make_alert, make_notification

    monkeypatch.setenv("REMEDIATOR_TEST_MATRIX_TOKEN", "matrix-test-token")
    users = {"carol": {"matrix": "@carol:example.org"}, "bob": {"matrix": "@bob:example.org"}}
    cfg = parse_config({
        "people": {"users": users}, "oncall": ROSTER,
        "chat": {"matrix": {"homeserver": "https://matrix.example.org",
                            "user_id": "@remediator:example.org",
                            "access_token": "env:REMEDIATOR_TEST_MATRIX_TOKEN"},
                 "invite_groups": ["oncall:db-oncall"]}})
    clock = Clock(datetime.now(UTC))
    body = json.dumps(make_notification([make_alert(labels={"severity": "critical"})]))
    incident = Intake(cfg, store, clock).accept(Notification.model_validate_json(body),
                                                body).incident_id
    assert incident is not None
    rooms.plan(store, cfg, "matrix", clock.now)
    with store.unit() as uow:
        room = uow.chat.claim_room(worker="w", now=clock.now, until=clock.advance(minutes=1))
        assert room is not None and room.incident_id == incident
        assert uow.chat.room_created(incident, "!room:example.org", worker="w")
        assert uow.chat.room_ready(incident, worker="w", now=clock.now)

    def invites() -> list[str]:
        with store.unit(write=False) as uow:
            return [m.body for m in uow.chat.messages(incident) if m.kind == rooms.INVITE]

    rooms.plan(store, cfg, "matrix", clock.advance(minutes=8))
    assert invites() == []
    assert rooms.plan(store, cfg, "matrix", clock.advance(minutes=2)) >= 1
    assert rooms.plan(store, cfg, "matrix", clock.advance(minutes=1)) == 0  # nothing new
    assert invites() == ["@bob:example.org"]


def test_links_the_post_mortem_and_the_page_name_who_was_on_duty(store: Store) -> None:
    """Approval links go to the role's holder (and follow an override); the post-mortem
    names who held each role when the incident opened."""
    from receiver.incidents import postmortem
    from receiver.people.tokens import eligible_approvers

    clock = Clock(datetime.now(UTC))
    kit, job_id = _parked(store, clock)
    assert eligible_approvers(kit.config, ["oncall:db-oncall"], clock.now) == ["carol"]
    swap = override("db-oncall", "dave", clock.now, clock.now + timedelta(hours=1))
    assert eligible_approvers(kit.config, ["oncall:db-oncall"], clock.now, [swap]) == ["dave"]
    assert eligible_approvers(kit.config, ["web", "oncall:db-oncall"], clock.now) == [
        "bob", "carol", "dave"]
    incident_id = kit.job(job_id)["incident_id"]
    text = postmortem.render(store, kit.config, incident_id)
    assert text is not None and "**On duty (db-oncall):** carol, backup bob" in text


def test_an_escalation_level_calls_the_holders_of_its_roles(store: Store) -> None:
    """A breach at level 1 names who holds the level's role; the next level, 30 minutes
    later, names its own role's holder as of then (an override in between included)."""
    from receiver.incidents import timers
    from tests.engine_kit import Kit
    from tests.factories import make_alert, make_notification

    chain = {"P1": [{"name": "first", "roles": ["db-oncall"]},
                    {"name": "second", "roles": ["lead"], "after": "30m"}]}
    roster_cfg = {"roles": {"db-oncall": {"primary": "carol", "backup": "bob"},
                            "lead": {"primary": "alice"}}}
    users = {n: {} for n in ("alice", "bob", "carol", "dave")}
    clock = Clock(datetime.now(UTC))
    kit = Kit(store, clock, [], people={"users": users}, oncall=roster_cfg,
              sla={"escalation": chain, "reminders": {}})
    incident = kit.fire(make_notification([make_alert()])).incident_id
    clock.advance(minutes=61)
    timers.run_due(store, kit.config, now=clock.now)
    with store.unit() as uow:
        uow.oncall.add_override(role="lead", user="dave", starts_at=clock.now,
                                ends_at=clock.now + timedelta(hours=2), reason="cover",
                                actor="user:alice", now=clock.now)
    clock.advance(minutes=31)
    timers.run_due(store, kit.config, now=clock.now)
    inc = store.get_incident(incident)
    assert inc is not None
    events = {e["kind"]: e for e in inc["timeline"] if e["kind"] in ("sla_breached",
                                                                     "escalated")}
    assert events["sla_breached"]["detail"]["oncall"] == {"db-oncall": "carol"}
    assert "calling db-oncall carol" in events["sla_breached"]["message"]
    assert events["escalated"]["detail"]["oncall"] == {"lead": "dave"}
    with pytest.raises(ConfigError) as bad:
        parse_config({"people": {"users": users}, "oncall": roster_cfg,
                      "sla": {"escalation": {"P1": [{"name": "x", "roles": ["nobody"]}]}}})
    assert "sla.escalation.P1[0].roles[0]" in str(bad.value)
