"""Notification audiences: which events and severities reach which channel (on both store
backends), the config that sets them (refused with the field path), and the stakeholder
message (no label value, hostname or responder text; escaped for the channel's format).

Routing tests inject ``send``: what reaches a real mail server is tests/e2e/test_email_smtp.py.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from receiver.comms.notify import Message, deliver_due, matching_channels, render
from receiver.errors import ConfigError
from receiver.store import Store
from receiver.store.outbox import MessageContext
from tests.conftest import Clock, make_config
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification

LINK = "https://remediator.example.test"
FAST_RETRY = {"max_attempts": 5, "backoff_initial": "5s", "backoff_max": "1m"}
HOST = "db-7.internal.example"


def notifications(monkeypatch: pytest.MonkeyPatch, channels: dict[str, dict[str, Any]],
                  **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (name, channel) in enumerate(channels.items()):
        env = f"REMEDIATOR_TEST_AUDIENCE_URL_{i}"
        monkeypatch.setenv(env, channel.get("url", f"json://127.0.0.1/{name}"))
        out[name] = {**channel, "url": f"env:{env}"}
    return {"channels": out, "link_base": LINK, "retry": FAST_RETRY, **over}


class Recorder:
    def __init__(self) -> None:
        self.sent: dict[str, list[Message]] = defaultdict(list)

    def __call__(self, name: str, _channel: Any, message: Message) -> None:
        self.sent[name].append(message)


CHANNELS: dict[str, dict[str, Any]] = {
    "execs": {"audience": "stakeholders", "format": "html"},
    "board": {"audience": "management"},
    "pager": {"audience": "oncall"},
    "legacy": {},  # no audience: exactly as before audiences
}


def open_incident(kit: Kit, severity: str, key: str) -> int:
    alert = make_alert(labels={"severity": severity, "instance": f"{HOST}:9100",
                               "container": "web1"},
                       annotations={"summary": "checkout is failing"})
    return int(kit.fire(make_notification([alert], group_key=key)).incident_id)


def move(kit: Kit, incident_id: int, to: str, reason: str) -> None:
    with kit.store.unit() as uow:
        assert uow.incidents.transition(incident_id, to, now=kit.clock(), actor="alice",
                                        reason=reason)


def heard(recorder: Recorder) -> dict[str, list[str]]:
    """channel -> the titles it was sent, in order."""
    return {name: [m.subject for m in msgs] for name, msgs in sorted(recorder.sent.items())}


# -- config -----------------------------------------------------------------------------------
def test_built_in_audiences_follow_the_checklist(monkeypatch: pytest.MonkeyPatch) -> None:
    """stakeholders hear P0/P1 opened, mitigated and resolved, written for them; a channel
    without an audience keeps its old defaults (every notified kind but state changes)."""
    settings = make_config(notifications=notifications(monkeypatch, CHANNELS)).notifications
    execs = settings.route("execs")
    assert execs.events == {"opened", "mitigated", "resolved"}
    assert execs.severities == {"P0", "P1"}
    assert execs.audience is not None and execs.audience.message == "stakeholder"
    assert settings.route("board").events == {"opened", "escalated", "sla_breached",
                                              "mitigated", "resolved"}
    legacy = settings.route("legacy")
    assert legacy.audience is None and "state_changed" not in legacy.events
    assert legacy.events == set(settings.route("pager").events)
    assert settings.audiences["oncall"].message == "responder"


def test_redefining_an_audience_changes_only_the_fields_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_config(notifications=notifications(
        monkeypatch, {"execs": {"audience": "stakeholders"},
                      "cto": {"audience": "stakeholders", "severities": ["P0"]},
                      "sales": {"audience": "customers"}},
        audiences={"stakeholders": {"severities": ["P0"], "labels": ["service"]},
                   "customers": {"events": ["resolved"], "message": "stakeholder"}},
    )).notifications
    execs = settings.route("execs")
    assert execs.severities == {"P0"} and execs.events == {"opened", "mitigated", "resolved"}
    assert execs.audience is not None and execs.audience.labels == ["service"]
    assert execs.audience.update_every == timedelta(minutes=30)
    assert settings.route("cto").severities == {"P0"}
    assert settings.route("sales").events == {"resolved"}
    assert matching_channels(settings, "state_changed", "P2", {"to": "resolved"}) == ["sales"]
    assert matching_channels(settings, "state_changed", "P2", {"to": "mitigated"}) == []


@pytest.mark.parametrize(("notifications_over", "path", "why"), [
    ({"channels": {"execs": {"audience": "nobody"}}},
     "notifications.channels.execs.audience", "unknown audience 'nobody'"),
    ({"audiences": {"stakeholders": {"events": ["opened", "bogus"]}}},
     "notifications.audiences.stakeholders.events", "unknown event kinds ['bogus']"),
    ({"audiences": {"stakeholders": {"severities": ["P9"]}}},
     "notifications.audiences.stakeholders.severities[0]", "P0"),
    ({"audiences": {"stakeholders": {"message": "gossip"}}},
     "notifications.audiences.stakeholders.message", "responder"),
    ({"audiences": {"stakeholders": {"colour": "red"}}},
     "notifications.audiences.stakeholders.colour", "Extra inputs"),
    ({"audiences": {"stakeholders": {"labels": ["bad label"]}}},
     "notifications.audiences.stakeholders.labels[0]", "pattern"),
    ({"channels": {"old": {"events": ["mitigated"]}}},
     "notifications.channels.old", "audience"),
])
def test_a_bad_audience_config_is_refused_with_the_field_path(
        monkeypatch: pytest.MonkeyPatch, notifications_over: dict[str, Any], path: str,
        why: str) -> None:
    channels = notifications_over.pop("channels", {"execs": {"audience": "stakeholders"}})
    with pytest.raises(ConfigError) as err:
        make_config(notifications=notifications(monkeypatch, channels, **notifications_over))
    problems = dict(err.value.problems)
    assert path in problems, problems
    assert why in problems[path]


# -- routing, on both backends ----------------------------------------------------------------
def test_audiences_route_events_and_severities(store: Store, clock: Clock, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A P1 incident opened, mitigated by a person, a job started, resolved by a person; a P2
    incident opened: each channel hears exactly what its audience (or own filter) says."""
    kit = Kit(store, clock, [], data_dir=str(tmp_path),
              notifications=notifications(monkeypatch, CHANNELS))
    p1 = open_incident(kit, "critical", "g-p1")
    open_incident(kit, "warning", "g-p2")
    clock.advance(minutes=5)
    move(kit, p1, "mitigated", f"failed over {HOST}")
    with store.unit() as uow:
        uow.events.record(incident_id=p1, at=clock(), kind="job_started", actor="worker",
                          message="restarting web1")
    move(kit, p1, "resolved", "fixed")
    recorder = Recorder()
    assert deliver_due(store, kit.config, clock=clock, worker_id="w1", send=recorder) == 13
    p1_title = p2_title = "AppDown"
    assert heard(recorder) == {
        "board": [f"[P1] Incident opened: {p1_title}", f"[P1] Incident mitigated: {p1_title}",
                  f"[P1] Incident resolved: {p1_title}"],
        "execs": [f"[P1] Incident opened: {p1_title}", f"[P1] Incident mitigated: {p1_title}",
                  f"[P1] Incident resolved: {p1_title}"],
        # oncall: the full messages; a person's resolve is "resolved" to an audience
        "pager": [f"[P1] opened: {p1_title}", f"[P2] opened: {p2_title}",
                  f"[P1] job started: {p1_title}", f"[P1] state changed: {p1_title}"],
        # no audience: as before, a person's state change is not told
        "legacy": [f"[P1] opened: {p1_title}", f"[P2] opened: {p2_title}",
                   f"[P1] job started: {p1_title}"],
    }
    mitigated = recorder.sent["execs"][1]
    assert mitigated.notify_type == "success"
    assert HOST not in mitigated.body and "failed over" not in mitigated.body
    # the responder message keeps the person's words; the stakeholder one does not
    assert "mitigated -> resolved: fixed" in recorder.sent["pager"][-1].body
    assert "fixed" not in recorder.sent["execs"][-1].body
    # a second pass sends nothing again
    assert deliver_due(store, kit.config, clock=clock, worker_id="w2", send=recorder) == 0


def test_escalation_channels_still_hear_their_level(store: Store, clock: Clock,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An escalation naming a stakeholder channel reaches it whatever the audience says."""
    kit = Kit(store, clock, [], data_dir=str(tmp_path),
              notifications=notifications(monkeypatch, {"execs": {"audience": "stakeholders"}}))
    p3 = open_incident(kit, "info", "g-p3")
    with store.unit() as uow:
        uow.events.record(incident_id=p3, at=clock(), kind="escalated", actor="timer",
                          message="level 2", detail={"channels": ["execs"]})
    recorder = Recorder()
    deliver_due(store, kit.config, clock=clock, worker_id="w1", send=recorder)
    assert [m.subject for m in recorder.sent["execs"]] == [
        "[P3] Incident escalated: AppDown"]


# -- the stakeholder message ------------------------------------------------------------------
def context(title: str, *, kind: str = "opened", state: str = "open",
            labels: dict[str, str] | None = None,
            detail: dict[str, Any] | None = None) -> MessageContext:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return MessageContext(
        id=41, kind=kind, incident_id=7, job_id=None, message=f"opened on {HOST}",
        detail=detail, created_at=at, title=title, severity="P1", incident_state=state,
        ack_due_at=at + timedelta(minutes=15), acknowledged_at=None,
        group_labels=labels or {"instance": f"{HOST}:9100", "service": "checkout"})


def stakeholder_config(monkeypatch: pytest.MonkeyPatch, **audience: Any) -> Any:
    return make_config(notifications=notifications(
        monkeypatch, {"execs": {"audience": "stakeholders"}},
        audiences={"stakeholders": audience} if audience else {}))


def test_the_stakeholder_message_says_what_stakeholders_need(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = stakeholder_config(monkeypatch)
    audience = config.notifications.audiences["stakeholders"]
    msg = render(config, context("Checkout errors"), audience=audience)
    assert msg.subject == "[P1] Incident opened: Checkout errors"
    body = msg.body.splitlines()
    assert body[0] == "We are investigating an incident."
    for line in ("Incident: Checkout errors", "Severity: P1", "State: open",
                 "Impact: Major: a service is degraded for many users.",
                 "Next update: by 2026-03-01 12:30 UTC",
                 f"Details: {LINK}/incidents/7", "Notification id: 41"):
        assert line in body, msg.body
    assert HOST not in msg.body and "checkout" not in msg.body.lower().replace(
        "checkout errors", "")
    resolved = render(config, context("Checkout errors", kind="state_changed", state="resolved",
                                      detail={"to": "resolved"}), audience=audience)
    assert resolved.subject == "[P1] Incident resolved: Checkout errors"
    assert "Next update: none planned" in resolved.body.splitlines()


def test_only_the_labels_an_audience_lists_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    config = stakeholder_config(monkeypatch, labels=["service"],
                                impact={"P1": "Customers cannot pay."})
    audience = config.notifications.audiences["stakeholders"]
    msg = render(config, context("Checkout errors"), audience=audience)
    assert "service: checkout" in msg.body.splitlines()
    assert "Impact: Customers cannot pay." in msg.body.splitlines()
    assert HOST not in msg.body


HOSTILE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=HOSTILE)
@example(title="x\r\nBcc: evil@example.test")
@example(title="<script>alert(1)</script> [click](https://evil.example) *bold*")
@example(title="\u2028Subject: spoof\x85")
def test_hostile_titles_stay_one_escaped_line(monkeypatch: pytest.MonkeyPatch,
                                              title: str) -> None:
    """Whatever the alert's title, the subject is one line, the HTML body has no tag but
    ours, and the Markdown body no link but the incident's."""
    config = stakeholder_config(monkeypatch)
    audience = config.notifications.audiences["stakeholders"]
    ctx = context(title)
    text = render(config, ctx, audience=audience)
    assert not any(c in text.subject for c in "\r\n\x0b\x0c\x85\u2028\u2029")
    html = render(config, ctx, audience=audience, body_format="html")
    tags = {t.split(">")[0].split()[0] for t in html.body.split("<")[1:]}
    assert tags <= {"b", "br", "a", "/b", "/a"}, html.body
    assert html.body.count("<a ") == 1
    md = render(config, ctx, audience=audience, body_format="markdown")
    links = [t for t in MarkdownIt("commonmark").parseInline(md.body)[0].children or []
             if t.type == "link_open"]
    assert [t.attrGet("href") for t in links] == [f"{LINK}/incidents/7"]
