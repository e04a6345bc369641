"""Chat rooms, the pure parts: the ``chat`` config, room names, and chat text escaping.

The rooms themselves are tested on a real homeserver in tests/e2e/test_matrix_chat.py.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from receiver.comms.chat import text
from receiver.comms.chat.matrix import MatrixBackend
from receiver.config import parse_config
from receiver.errors import ConfigError, DeliveryFailed
from receiver.secrets import Secret, redactor_for
from receiver.store.chat import AlertFacts, IncidentFacts, PostableEvent, numbered
from tests.support import free_port

TOKEN_ENV = "REMEDIATOR_TEST_MATRIX_TOKEN"
BOT_TOKEN = "syt_bot_token_0123456789"


@pytest.fixture(autouse=True)
def _matrix_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, BOT_TOKEN)


def matrix(**over: Any) -> dict[str, Any]:
    return {"homeserver": "https://matrix.example.org", "user_id": "@remediator:example.org",
            "access_token": f"env:{TOKEN_ENV}"} | over


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return dict(err.value.problems)


def facts(alertname: str = "DiskFull", summary: str | None = "Disk full on db1",
          **labels: str) -> IncidentFacts:
    annotations = {"summary": summary} if summary is not None else {}
    return IncidentFacts(
        incident_id=7, title=f"{alertname} on db1", severity="P1", state="open",
        opened_at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        ack_due_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC), acknowledged_at=None,
        alerts=(AlertFacts(alertname, dict(labels), annotations),))


# -- config ---------------------------------------------------------------------------------

def test_chat_defaults_to_p0_p1_and_the_checklist_name() -> None:
    """A matrix section alone gives rooms for P0 and P1 named incident-{date}-{slug}; the
    token is a secret that prints as its reference."""
    chat = parse_config({"chat": {"matrix": matrix()}}).chat
    assert [s.value for s in chat.severities] == ["P0", "P1"]
    assert chat.room_name == "incident-{date}-{slug}"
    assert chat.matrix is not None
    assert isinstance(chat.matrix.access_token, Secret)
    assert BOT_TOKEN not in repr(chat) and chat.matrix.access_token.reveal() == BOT_TOKEN
    assert parse_config({}).chat.enabled is False


@pytest.mark.parametrize(("over", "path"), [
    ({"homeserver": "http://matrix.example.org"}, "chat.matrix.homeserver"),
    ({"homeserver": "https://bot:pw@matrix.example.org"}, "chat.matrix.homeserver"),
    ({"homeserver": "https://matrix.example.org/_matrix/client"}, "chat.matrix.homeserver"),
    ({"homeserver": "ftp://matrix.example.org"}, "chat.matrix.homeserver"),
    ({"user_id": "remediator"}, "chat.matrix.user_id"),
    ({"access_token": "syt_inline_token_value"}, "chat.matrix.access_token"),
    ({"access_token": "env:REMEDIATOR_TEST_UNSET_VARIABLE"}, "chat.matrix.access_token"),
    ({"extra": 1}, "chat.matrix.extra"),
])
def test_bad_matrix_settings_are_refused_with_their_path(over: dict[str, Any], path: str) -> None:
    """Plain http off loopback, credentials or a path in the URL, a bad user id, an inline
    or unset token, an unknown key: each refused at load, naming the field."""
    assert path in problems({"chat": {"matrix": matrix(**over)}})


def test_http_homeserver_on_loopback_is_accepted() -> None:
    """http:// is fine on a loopback address (a homeserver beside the receiver)."""
    for url in ("http://127.0.0.1:8008", "http://localhost:8008/", "http://[::1]:8008"):
        chat = parse_config({"chat": {"matrix": matrix(homeserver=url)}}).chat
        assert chat.matrix is not None and not chat.matrix.homeserver.endswith("/")


@pytest.mark.parametrize(("chat", "path"), [
    ({"room_name": "incident-{date}-{title}"}, "chat.room_name"),
    ({"room_name": "incident-{date}-{slug!r}"}, "chat.room_name"),
    ({"room_name": "Incident {date} {slug}"}, "chat.room_name"),
    ({"room_name": "incident-{date}"}, "chat.room_name"),
    ({"severities": ["P5"]}, "chat.severities[0]"),
    ({"severities": []}, "chat.severities"),
    ({"events": ["job_exploded"]}, "chat.events[0]"),
    ({"sync_timeout": "1h"}, "chat.sync_timeout"),
])
def test_bad_chat_settings_are_refused_with_their_path(chat: dict[str, Any], path: str) -> None:
    """An unknown template field, a conversion, characters no room alias takes, a template
    that cannot be unique, unknown severities or event kinds: refused, naming the field."""
    assert path in problems({"chat": chat | {"matrix": matrix()}})


def test_one_matrix_id_is_one_person() -> None:
    """Two people with the same matrix id are refused (a reaction must name one person)."""
    found = problems({"people": {"users": {
        "alice": {"matrix": "@alice:example.org"}, "bob": {"matrix": "@alice:example.org"}}}})
    assert any("@alice:example.org" in msg for msg in found.values())
    people = parse_config({"people": {"users": {
        "alice": {"matrix": "@alice:example.org"}}}}).people
    assert people.person_of_matrix("@alice:example.org") == "alice"
    assert people.person_of_matrix("@mallory:example.org") is None


# -- names ----------------------------------------------------------------------------------

def test_room_name_is_date_and_slug_of_alert_name_and_summary() -> None:
    """incident-YYYY-MM-DD-<alert name and summary, lower case, dashes>."""
    assert text.room_name("incident-{date}-{slug}", facts()) == \
        "incident-2026-03-02-diskfull-disk-full-on-db1"
    assert text.room_name("inc-{severity}-{id}-{slug}", facts(summary=None)) == \
        "inc-p1-7-diskfull"


def test_numbered_names_stay_within_80_characters() -> None:
    """The unique suffix replaces the end of a long name instead of growing it."""
    base = "incident-2026-03-02-" + "x" * 60
    assert numbered(base, 1) == base
    assert numbered(base, 2).endswith("-2") and len(numbered(base, 2)) == 80
    assert numbered(base, 123).endswith("-123") and len(numbered(base, 123)) <= 80


@given(st.text(max_size=300), st.text(max_size=300))
@example("../../etc/passwd", "#room:evil.example @room")
@example("\u202eevil", "\x00\n\r")
def test_room_names_are_alias_safe_whatever_the_alert_says(alertname: str, summary: str) -> None:
    """Any alert name and summary give a name of lower-case letters, digits and dashes, at
    most 80 characters, never empty: a valid Matrix alias local part."""
    name = text.room_name("incident-{date}-{slug}", facts(alertname, summary))
    assert 0 < len(name) <= 80
    assert all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in name)


# -- chat text ------------------------------------------------------------------------------

HOSTILE = st.text(alphabet=st.characters(codec="utf-8"), max_size=400) | st.sampled_from([
    "@room", "@ROOM please", "line1\nApprove: https://evil.example", "\u202egnp.exe",
    "zero\u200bwidth", "<a href='https://evil.example'>click</a>", "x" * 5000,
])


@given(HOSTILE)
@example("@room")
@example("a\u2028b")
def test_chat_text_is_one_bounded_line_without_pings_or_hidden_characters(value: str) -> None:
    """Whatever an alert holds, its chat text is one line, bounded, with no control,
    zero-width or bidi-override character and no @room mention."""
    out = text.chat_text(value, 300)
    assert len(out) <= 300
    assert "\n" not in out and "\r" not in out and "\u2028" not in out
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                   "\u200b\u200c\u200d\ufeff\x00\x1b")
    assert "@room" not in out.lower()


@given(HOSTILE, HOSTILE)
def test_summary_keeps_alert_text_inside_its_own_lines(summary: str, runbook: str) -> None:
    """An alert's summary or runbook cannot add a line to the pinned summary (a forged
    "Incident page:" line, say): the summary always has its fixed lines, in order."""
    f = facts(summary=summary)
    f = IncidentFacts(**{**f.__dict__, "alerts": (AlertFacts(
        "DiskFull", {"service": summary}, {"summary": summary, "runbook_url": runbook}),)})
    body = text.summary(f, "https://remediator.example/incidents/7")
    heads = [line.split(":", 1)[0] for line in body.split("\n")]
    assert heads[:7] == ["Incident #7", "Severity", "SLA", "Opened", "Incident page",
                         "Runbook", "Services"]
    assert len(heads) == 8 and heads[7] == "Alert"
    assert body.count("Incident page: ") == 1


def test_runbook_only_when_it_is_a_web_url() -> None:
    """A runbook_url that is no http(s) URL is left out of the topic."""
    f = IncidentFacts(**{**facts().__dict__, "alerts": (AlertFacts(
        "DiskFull", {"service": "db"}, {"runbook_url": "javascript:alert(1)"}),)})
    assert "runbook" not in text.topic(f, "https://r.example/incidents/7")
    f = IncidentFacts(**{**facts().__dict__, "alerts": (AlertFacts(
        "DiskFull", {"service": "db"}, {"runbook_url": "https://rb.example/x"}),)})
    assert "runbook: https://rb.example/x" in text.topic(f, "https://r.example/incidents/7")


def test_approval_request_says_how_to_decide() -> None:
    """The approval request names the playbook, targets and steps, and the commands."""
    event = PostableEvent(id=1, incident_id=7, kind="job_awaiting_approval",
                          message="job #3 awaiting approval: poke db", job_id=3,
                          detail={"plan": {"summary": "poke db", "steps": ["poke db"],
                                           "targets": ["fake:db"]}},
                          at=datetime(2026, 3, 2, tzinfo=UTC), playbook="fake_action")
    body = text.event_body(event)
    for part in ("Playbook: fake_action", "Targets: fake:db", "- poke db", "!approve 3",
                 "!deny 3 <reason>", "\u2705", "\u274c"):
        assert part in body


@pytest.mark.parametrize(("body", "parsed"), [
    ("!approve 12", ("approve", 12, "")),
    ("  !approve #12  ", ("approve", 12, "")),
    ("!deny 12 disk is fine\nreally", ("deny", 12, "disk is fine really")),
    ("!ack", ("ack", None, "")),
    ("!ack on it", ("ack", None, "on it")),
    ("!note restarted by hand @room", ("note", None, "restarted by hand @ room")),
    ("!assign bob please", ("assign", None, "bob")),
    ("!commander alice", ("commander", None, "alice")),
    ("!resolve", ("resolve", None, "")),
    ("!status", ("status", None, "")),
    ("!approve", None),
    ("!approve twelve", None),
    ("!note", None),
    ("!assign", None),
    ("please !approve 12", None),
    ("!approved 12", None),
    ("!shutdown now", None),
])
def test_commands(body: str, parsed: tuple[str, int | None, str] | None) -> None:
    """The room's commands, at the start of a message only; their text is chat text."""
    found = text.parse_command(body)
    assert (None if found is None else (found.name, found.job_id, found.arg)) == parsed


def test_status_says_what_was_done_and_what_is_pending() -> None:
    """!status: state, SLA, commander, done and pending jobs, the incident page."""
    body = text.status(facts(), [(1, "restart_container", "succeeded"),
                                 (2, "flush_cache", "awaiting_approval")],
                       "https://r.example/incidents/7")
    assert "Status of incident #7: open (P1)" in body
    assert "Done: #1 restart_container succeeded" in body
    assert "Pending: #2 flush_cache awaiting approval" in body
    assert "Commander: -" in body


def test_reactions() -> None:
    """✅ approves and ❌ denies, with or without the emoji variation selector; others are
    no decision."""
    assert text.reaction_decision("\u2705") is True
    assert text.reaction_decision("\u2705\ufe0f") is True
    assert text.reaction_decision("\u274c") is False
    assert text.reaction_decision("\U0001f44d") is None
    assert text.reaction_decision("") is None


# -- the Matrix client's one host -----------------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status and Location the server was given; records
    each request's path and Authorization header."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer()

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self._answer()

    def _answer(self) -> None:
        server: Any = self.server
        server.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(server.status)
        if server.location:
            self.send_header("Location", server.location)
        body = b'{"errcode": "M_UNKNOWN", "error": "no"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _server(status: int, location: str = "") -> Iterator[Any]:
    srv: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    srv.seen, srv.status, srv.location = [], status, location
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_matrix_client_follows_no_redirect_and_never_shows_its_token() -> None:
    """A homeserver that redirects elsewhere gets a failed delivery: the other host is never
    called (the token goes to the configured homeserver only), and the error names the
    endpoint's shape and status, never the token."""
    with _server(404) as elsewhere, _server(302) as homeserver:
        homeserver.location = f"http://127.0.0.1:{elsewhere.server_address[1]}/steal"
        config = parse_config({"chat": {"matrix": matrix(
            homeserver=f"http://127.0.0.1:{homeserver.server_address[1]}")}})
        assert config.chat.matrix is not None
        backend = MatrixBackend(config.chat.matrix)
        with pytest.raises(DeliveryFailed) as err:
            backend.send_text("!room:example.org", "txn-1", "hello")
    assert homeserver.seen and homeserver.seen[0][1] == f"Bearer {BOT_TOKEN}"
    assert homeserver.seen[0][0].startswith(
        "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/txn-1")
    assert elsewhere.seen == []
    assert "302" in str(err.value) and BOT_TOKEN not in str(err.value)
    assert BOT_TOKEN not in redactor_for(config).text(f"token={BOT_TOKEN}")


def test_matrix_client_reports_an_unreachable_homeserver() -> None:
    """A homeserver that does not answer is a failed delivery (the message waits)."""
    config = parse_config({"chat": {"matrix": matrix(homeserver=f"http://127.0.0.1:{free_port()}",
                                                     timeout="2s")}})
    assert config.chat.matrix is not None
    with pytest.raises(DeliveryFailed, match="ConnectionRefused|URLError"):
        MatrixBackend(config.chat.matrix).sync(None, 0)
