"""A rule's ``silence``: real Alertmanager 0.25 processes, silenced while a job acts and
unsilenced after, on both store backends.

The worker runs in-process (tests/engine_kit.py's fake playbook, so that a test can hold
the job while it acts); the Alertmanagers are real, and everything is checked through
their API v2 (``GET /api/v2/silences``, ``GET /api/v2/alerts``).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from playbooks.base import PlaybookContext, RunResult, Verification
from receiver.adapters import AdapterFactory
from receiver.adapters.silences import SilencesAdapter
from receiver.errors import PlaybookError
from receiver.remediation import silences
from receiver.remediation.targets import HttpTargets
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import FakeAction, FakeParams, Kit, rule
from tests.factories import make_alert, make_notification
from tests.integration.conftest import Alertmanager, _stop
from tests.support import free_port, http, wait_until

pytestmark = pytest.mark.slow

DEAD_WEBHOOK = "http://127.0.0.1:9/api/v1/alerts"  # nothing listens: nothing is delivered
HOSTS = {"http": {"hosts": ["127.0.0.1:*"]}}


@dataclass
class VerifyingAction(FakeAction):
    """The fake playbook, with its own verification passing or failing as a test says."""

    verified: bool = True

    def verify(self, params: FakeParams, ctx: PlaybookContext,
               result: RunResult) -> Verification | None:
        return Verification(self.verified, "checked" if self.verified else "still down")


def am_silences(am: Alertmanager) -> list[dict[str, Any]]:
    code, body = http("GET", am.url + "/api/v2/silences")
    assert code == 200, body
    found: list[dict[str, Any]] = json.loads(body)
    return found


def active(am: Alertmanager) -> list[dict[str, Any]]:
    return [s for s in am_silences(am) if s["status"]["state"] == "active"]


def matchers_of(labels: dict[str, str]) -> list[dict[str, Any]]:
    return sorted(({"name": k, "value": v, "isRegex": False, "isEqual": True}
                   for k, v in labels.items()), key=lambda m: m["name"])


def silenced_by(am: Alertmanager, labels: dict[str, str]) -> list[str]:
    """The silences Alertmanager says mute the alert with exactly ``labels``."""
    code, body = http("GET", am.url + "/api/v2/alerts")
    assert code == 200, body
    for alert in json.loads(body):
        if alert["labels"] == labels:
            return list(alert["status"]["silencedBy"])
    raise AssertionError(f"Alertmanager has no alert {labels}")


def post_alert(am: Alertmanager, labels: dict[str, str]) -> None:
    now = datetime.now(UTC)
    am.post_alerts([{"labels": labels,
                     "startsAt": (now - timedelta(minutes=1)).isoformat(),
                     "endsAt": (now + timedelta(hours=1)).isoformat()}])


def silence_rule(urls: str | list[str], **over: Any) -> dict[str, Any]:
    return rule(playbook="fake_action",
                silence={"alertmanager": urls, "for": "15m", "comment": "fixing it"},
                approval={"mode": "auto"}, **over)


def make_kit(store: Store, urls: str | list[str], *, playbook: FakeAction | None = None,
             **over: Any) -> Kit:
    return Kit(store, Clock(datetime.now(UTC)), [silence_rule(urls, **over)],
               playbook=playbook if playbook is not None else VerifyingAction(),
               targets=HOSTS, server={"public_url": "https://remediator.example"})


ALERT = {"alertname": "AppDown", "severity": "critical", "instance": "web1:9100",
         "container": "web-1"}


def fire(kit: Kit, labels: dict[str, str] | None = None) -> int:
    labels = labels or ALERT
    extra = {k: v for k, v in labels.items() if k != "alertname"}
    result = kit.fire(make_notification([make_alert(labels=extra)]))
    return int(result.incident_id)


def run_held(kit: Kit, check: Callable[[], None]) -> None:
    """Run one job, calling ``check`` while its playbook acts."""
    kit.playbook.block = threading.Event()
    worker = threading.Thread(target=kit.worker.run_once)
    worker.start()
    try:
        assert kit.playbook.started.wait(20), "the job did not start"
        check()
    finally:
        kit.playbook.block.set()
        worker.join(30)
    assert not worker.is_alive()


def timeline(kit: Kit, incident_id: int) -> list[dict[str, Any]]:
    inc = kit.store.get_incident(incident_id)
    assert inc is not None
    events: list[dict[str, Any]] = inc["timeline"]
    return events


def kinds(kit: Kit, incident_id: int) -> list[str]:
    return [e["kind"] for e in timeline(kit, incident_id)]


@pytest.fixture
def am(start_alertmanager: Callable[..., Alertmanager]) -> Alertmanager:
    return start_alertmanager(DEAD_WEBHOOK)


@pytest.mark.parametrize("verified", [True, False])
def test_the_alert_is_silenced_while_the_job_acts_and_unsilenced_after(
        store: Store, am: Alertmanager, verified: bool) -> None:
    """During the job, Alertmanager holds one active silence by remediator whose matchers
    are exactly the alert's labels, muting that alert and not one whose label differs; once
    verification finishes (passed or failed) the silence is expired."""
    kit = make_kit(store, am.url, playbook=VerifyingAction(verified=verified))
    incident = fire(kit)
    other = {**ALERT, "container": "web-2"}
    post_alert(am, ALERT)
    post_alert(am, other)

    def during() -> None:
        now = active(am)
        assert len(now) == 1, now
        silence = now[0]
        assert sorted(silence["matchers"], key=lambda m: m["name"]) == matchers_of(ALERT)
        assert silence["createdBy"] == "remediator"
        assert f"https://remediator.example/incidents/{incident}" in silence["comment"]
        assert "fixing it" in silence["comment"]
        ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
        assert timedelta(minutes=14) < ends - datetime.now(UTC) <= timedelta(minutes=15)
        wait_until(lambda: silenced_by(am, ALERT) == [silence["id"]], 10, "the alert muted")
        assert silenced_by(am, other) == []
        assert "silence_created" in kinds(kit, incident)

    run_held(kit, during)
    assert active(am) == []
    [silence] = am_silences(am)
    assert silence["status"]["state"] == "expired"
    wait_until(lambda: silenced_by(am, ALERT) == [], 10, "the alert unmuted")
    events = kinds(kit, incident)
    assert events.index("silence_created") < events.index("silence_expired")
    assert kit.jobs()[0]["state"] == ("succeeded" if verified else "failed")
    expired = next(e for e in timeline(kit, incident) if e["kind"] == "silence_expired")
    assert ("verification passed" if verified else "verification failed") in expired["message"]


def test_a_job_that_fails_expires_its_silence(store: Store, am: Alertmanager) -> None:
    """A playbook that fails ends the silence too (the job failed: people are paged)."""
    kit = make_kit(store, am.url, params={"target": "{{ labels.container }}", "fail": True})
    incident = fire(kit)
    kit.drain()
    assert kit.jobs()[0]["state"] == "failed"
    [silence] = am_silences(am)
    assert silence["status"]["state"] == "expired"
    assert "silence_expired" in kinds(kit, incident)


def test_every_alertmanager_of_an_ha_pair_is_silenced_and_unsilenced(
        store: Store, start_alertmanager: Callable[..., Alertmanager]) -> None:
    """With two Alertmanager URLs, each gets its silence during the job, each is expired
    after, and the store records both."""
    pair = [start_alertmanager(DEAD_WEBHOOK), start_alertmanager(DEAD_WEBHOOK)]
    kit = make_kit(store, [a.url for a in pair])
    incident = fire(kit)

    def during() -> None:
        for a in pair:
            assert [s["createdBy"] for s in active(a)] == ["remediator"]

    run_held(kit, during)
    for a in pair:
        assert [s["status"]["state"] for s in am_silences(a)] == ["expired"]
    events = kinds(kit, incident)
    assert events.count("silence_created") == 2 and events.count("silence_expired") == 2
    job_id = kit.jobs()[0]["id"]
    with store.unit(write=False) as uow:
        rows = uow.silences.of_job(job_id)
    assert sorted(r.alertmanager for r in rows) == sorted(a.url for a in pair)
    assert all(r.expired_at is not None for r in rows)


def test_an_alertmanager_that_is_down_does_not_stop_the_job(
        store: Store, am: Alertmanager) -> None:
    """One Alertmanager answers nothing: the job still runs and succeeds, the other one is
    silenced and unsilenced, and the timeline says the silence failed."""
    down = f"http://127.0.0.1:{free_port()}"
    kit = make_kit(store, [down, am.url])
    incident = fire(kit)
    kit.drain()
    assert kit.jobs()[0]["state"] == "succeeded"
    assert kit.playbook.calls == ["web-1"]
    failed = [e for e in timeline(kit, incident) if e["kind"] == "silence_failed"]
    assert len(failed) == 1 and down in failed[0]["message"]
    assert [s["status"]["state"] for s in am_silences(am)] == ["expired"]


def test_a_dry_run_job_silences_nothing(store: Store, am: Alertmanager) -> None:
    """A rule in dry-run mode records its plan and never creates a silence."""
    kit = make_kit(store, am.url, guards={"dry_run": True})
    incident = fire(kit)
    kit.drain()
    assert kit.jobs()[0]["state"] == "dry_run"
    assert am_silences(am) == []
    assert not [k for k in kinds(kit, incident) if k.startswith("silence_")]


def test_an_alertmanager_that_refuses_does_not_stop_the_job(
        store: Store, am: Alertmanager) -> None:
    """Alertmanager 0.25 refuses a matcher on a label name it does not accept: the job
    runs, and the timeline has Alertmanager's refusal."""
    kit = make_kit(store, am.url)
    incident = fire(kit, {**ALERT, "odd-name": "x"})
    kit.drain()
    assert kit.jobs()[0]["state"] == "succeeded"
    [failed] = [e for e in timeline(kit, incident) if e["kind"] == "silence_failed"]
    assert "HTTP 400" in failed["message"]
    assert am_silences(am) == []


def test_a_silence_whose_expiry_failed_is_expired_by_the_chores(
        store: Store, am: Alertmanager) -> None:
    """Alertmanager is down when the job ends: the timeline says the expiry failed, and once
    it is back the workers' chores expire the silence (not before the retry is due)."""
    kit = make_kit(store, am.url)
    incident = fire(kit)

    def during() -> None:
        assert len(active(am)) == 1
        _stop(am.proc)  # it keeps its silences on disk

    run_held(kit, during)
    assert kit.jobs()[0]["state"] == "succeeded"
    [failed] = [e for e in timeline(kit, incident) if e["kind"] == "silence_failed"]
    assert "could not expire" in failed["message"]
    again = subprocess.Popen(am.proc.args, stdout=subprocess.DEVNULL,  # noqa: S603 - the test's own argv
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: _ready(am), 30, "the Alertmanager back")
        assert len(active(am)) == 1

        def chore() -> int:
            return silences.expire_orphans(store, kit.config, adapters=AdapterFactory(),
                                           clock=kit.clock)

        assert chore() == 0  # the retry is not due yet
        assert len(active(am)) == 1
        kit.clock.advance(minutes=2)
        assert chore() == 1
        assert active(am) == []
        assert chore() == 0
        assert kinds(kit, incident).count("silence_expired") == 1
    finally:
        _stop(again)


def _ready(am: Alertmanager) -> bool:
    try:
        return http("GET", am.url + "/-/ready", timeout=1)[0] == 200
    except OSError:
        return False


# -- hostile label values -------------------------------------------------------------------

LABEL_NAME = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,20}\Z")
HOSTILE = st.one_of(
    st.text(min_size=1, max_size=60),
    st.text(alphabet=".*+?()[]{}|^$\\\"'`\n\r\t =~!,", min_size=1, max_size=30),
    st.sampled_from([".*", ".+", "web-.*", "(a|b)", '"', "'", "\n", "a\nb", "\\", "}", "=~",
                     'x",alertname=~".*']),
)


@pytest.fixture
def shared_am(am: Alertmanager) -> Alertmanager:
    return am


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.dictionaries(LABEL_NAME, HOSTILE, min_size=1, max_size=5))
@example(labels={"instance": ".*"})
@example(labels={"alertname": 'x",alertname=~".*', "job": "a\nb"})
def test_hostile_label_values_are_literal_equality_matchers(
        shared_am: Alertmanager, labels: dict[str, str]) -> None:
    """Whatever an alert's labels hold (regex metacharacters, quotes, newlines, unicode),
    the silence Alertmanager stores has exactly one literal equality matcher per label with
    the value unchanged, and it mutes that alert only, not one whose value differs."""
    adapter = SilencesAdapter(shared_am.url, hosts=HttpTargets(hosts=["127.0.0.1:*"]))
    now = datetime.now(UTC)
    try:
        sid = adapter.create_silence(labels, starts_at=now, ends_at=now + timedelta(minutes=5),
                                     created_by="remediator", comment="test")
    except PlaybookError as exc:
        # Alertmanager refuses a silence all of whose matchers match the empty string.
        assert all(v == "" for v in labels.values()), exc
        return
    try:
        code, body = http("GET", f"{shared_am.url}/api/v2/silence/{sid}")
        assert code == 200
        stored = json.loads(body)
        assert sorted(stored["matchers"], key=lambda m: m["name"]) == matchers_of(labels)
        name = sorted(labels)[0]
        near = {**labels, name: labels[name] + "x"}
        post_alert(shared_am, labels)
        post_alert(shared_am, near)
        wait_until(lambda: sid in silenced_by(shared_am, labels), 10, "the alert muted")
        assert sid not in silenced_by(shared_am, near)
    finally:
        assert adapter.expire_silence(sid) is True


def test_a_label_that_is_not_utf8_is_refused_not_sent() -> None:
    """A lone surrogate (which Alertmanager would read as another character) is refused
    before anything is sent."""
    adapter = SilencesAdapter(f"http://127.0.0.1:{free_port()}",
                              hosts=HttpTargets(hosts=["127.0.0.1:*"]))
    now = datetime.now(UTC)
    with pytest.raises(PlaybookError, match="UTF-8"):
        adapter.create_silence({"instance": "a\ud800"}, starts_at=now,
                               ends_at=now + timedelta(minutes=5), created_by="r", comment="c")
