"""The email channel end to end: apprise's ``mailto://`` to a real SMTP server (aiosmtpd on
127.0.0.1, a random port, with AUTH) started by these tests, message by message.

Each mail is parsed as received: its envelope, From, To, Subject and both bodies are
checked. A server that refuses (451) or is down makes the delivery retry, and each message
arrives exactly once. A configured secret in an alert never reaches a mail; CR/LF in alert
text never makes a header.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import warnings
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.comms.apprise_send import AppriseSender
from receiver.comms.notify import deliver_due, render
from receiver.store import Store
from receiver.store.outbox import MessageContext
from tests.conftest import Clock, make_config
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.support import free_port

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")

PASSWORD = "SmtpPa55word-2f9c81"
FROM, EXECS, OPS = "remediator@example.test", "execs@example.test", "ops@example.test"
LINK = "https://remediator.example.test"
HOST = "db-7.internal.example"
HEADERS = {"Content-Type", "MIME-Version", "X-Application", "Subject", "From", "To",
           "Message-ID", "Date"}
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that needs AUTH with :data:`PASSWORD`, records every
    message it accepts, and answers 451 to the next ``refuse`` messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Any] = []
        self.refused = 0
        self.refuse = 0
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> SmtpServer:
        server = self

        class Handler:
            async def handle_DATA(self, _srv: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's naming
                with server._lock:
                    if server.refuse > 0:
                        server.refuse -= 1
                        server.refused += 1
                        return "451 4.3.0 Try again later"
                    server.received.append(envelope)
                return "250 OK"

        def authenticate(_srv: Any, _session: Any, _env: Any, _mechanism: str,
                         data: Any) -> Any:
            ok = (isinstance(data, aiosmtpd_smtp.LoginPassword)
                  and data.password == PASSWORD.encode())
            return aiosmtpd_smtp.AuthResult(success=ok)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._controller = aiosmtpd_controller.Controller(
                Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
                auth_require_tls=False)
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, to: str) -> str:
        return (f"mailto://remediator:{PASSWORD}@127.0.0.1:{self.port}"
                f"?from={FROM}&to={to}&mode=insecure")

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        with self._lock:
            envelopes = list(self.received)
        out = []
        for env in envelopes:
            if to is None or env.rcpt_tos == [to]:
                mail = email.message_from_bytes(env.content, policy=email.policy.default)
                assert isinstance(mail, EmailMessage)
                out.append(mail)
        return out

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(bytes(env.content) for env in self.received)


@pytest.fixture
def smtp() -> Any:
    server = SmtpServer().start()
    yield server
    server.stop()


def parts(mail: EmailMessage) -> tuple[str, str]:
    """The (text, html) bodies of a mail, decoded."""
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def notification_ids(mails: list[EmailMessage]) -> list[int]:
    ids = []
    for mail in mails:
        found = re.findall(r"Notification id: (\d+)", parts(mail)[0])
        assert len(found) == 1
        ids.append(int(found[0]))
    return ids


def mail_kit(store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             smtp: SmtpServer) -> Kit:
    monkeypatch.setenv("REMEDIATOR_TEST_MAIL_EXECS", smtp.url(EXECS))
    monkeypatch.setenv("REMEDIATOR_TEST_MAIL_OPS", smtp.url(OPS))
    return Kit(store, clock, [], data_dir=str(tmp_path), notifications={
        "link_base": LINK, "timeout": "5s",
        "retry": {"max_attempts": 5, "backoff_initial": "5s", "backoff_max": "1m"},
        "channels": {
            "execs": {"url": "env:REMEDIATOR_TEST_MAIL_EXECS", "audience": "stakeholders",
                      "format": "html"},
            "ops": {"url": "env:REMEDIATOR_TEST_MAIL_OPS", "audience": "oncall"},
        }})


def open_incident(kit: Kit, alertname: str = "CheckoutDown", key: str = "g-mail") -> int:
    alert = make_alert(alertname=alertname,
                       labels={"severity": "critical", "instance": f"{HOST}:9100"})
    return int(kit.fire(make_notification([alert], group_key=key)).incident_id)


def deliver(kit: Kit, worker: str = "w1") -> int:
    return deliver_due(kit.store, kit.config, clock=kit.clock, worker_id=worker)


@pytest.mark.slow  # apprise spaces mails to one server 5 s apart
def test_stakeholder_mails_arrive_one_per_event(store: Store, clock: Clock, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                smtp: SmtpServer) -> None:
    """Opened, mitigated, resolved: three mails to the stakeholders, each with the right
    envelope, From, To, Subject and bodies, and no hostname or responder text."""
    kit = mail_kit(store, clock, tmp_path, monkeypatch, smtp)
    inc = open_incident(kit)
    clock.advance(minutes=3)
    with store.unit() as uow:
        uow.incidents.transition(inc, "mitigated", now=clock(), actor="alice",
                                 reason=f"failed over {HOST}")
    clock.advance(minutes=3)
    with store.unit() as uow:
        uow.incidents.transition(inc, "resolved", now=clock(), actor="alice", reason="done")
    assert deliver(kit) == 5  # execs: 3; ops: opened and the person's resolve
    execs = smtp.mails(EXECS)
    assert [m["Subject"] for m in execs] == [
        "[P1] Incident opened: CheckoutDown", "[P1] Incident mitigated: CheckoutDown",
        "[P1] Incident resolved: CheckoutDown"]
    for mail in execs:
        assert mail["From"] == FROM and mail["To"] == EXECS
        assert set(mail.keys()) == HEADERS
    assert all(env.mail_from == FROM for env in smtp.received)
    text, html = parts(execs[1])
    for line in ("The impact has been mitigated", "Severity: P1", "State: mitigated",
                 "Impact: Major: a service is degraded for many users.", "Next update: by",
                 "Details: incident #1"):
        assert line in text, text
    assert f'<a href="{LINK}/incidents/{inc}">' in html
    assert HOST not in text + html and "failed over" not in text + html
    assert "Next update: none planned" in parts(execs[2])[0]
    ops = smtp.mails(OPS)
    assert [m["Subject"] for m in ops] == ["[P1] opened: CheckoutDown",
                                           "[P1] state changed: CheckoutDown"]
    assert "mitigated -> resolved: done" in parts(ops[1])[0]
    assert deliver(kit, "w2") == 0 and len(smtp.mails()) == 5


@pytest.mark.slow
def test_a_refusing_server_gets_each_mail_exactly_once(store: Store, clock: Clock,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       smtp: SmtpServer) -> None:
    """451 to the first mails, then down, then up: every delivery is retried until the
    server takes it, and each message arrives once; no error keeps the password."""
    kit = mail_kit(store, clock, tmp_path, monkeypatch, smtp)
    smtp.refuse = 2
    inc = open_incident(kit)
    with store.unit() as uow:
        uow.incidents.transition(inc, "mitigated", now=clock(), actor="alice")
    assert deliver(kit) == 1  # opened to execs and ops refused; mitigated to execs taken
    assert smtp.refused == 2
    with store.unit(write=False) as uow:
        failed = [d for d in uow.outbox.deliveries() if d.state == "pending"]
    assert len(failed) == 2 and all(d.attempts == 1 for d in failed)
    assert all("Sending email to" in (d.last_error or "") for d in failed)
    assert not any(PASSWORD in (d.last_error or "") for d in failed)

    smtp.stop()
    clock.advance(seconds=6)
    assert deliver(kit) == 0  # down: connection refused, retried later
    with store.unit(write=False) as uow:
        assert sorted(d.attempts for d in uow.outbox.deliveries() if d.state == "pending") \
            == [2, 2]
    smtp.start()
    assert deliver(kit) == 0  # not due yet: the backoff holds
    clock.advance(seconds=11)
    assert deliver(kit) == 2
    clock.advance(minutes=5)
    assert deliver(kit) == 0
    with store.unit(write=False) as uow:
        assert {d.state for d in uow.outbox.deliveries()} == {"delivered"}
    # each outbox row once per channel: opened (1) to both, mitigated (2) to execs only
    assert sorted(notification_ids(smtp.mails(EXECS))) == [1, 2]
    assert notification_ids(smtp.mails(OPS)) == [1]
    assert len(smtp.mails()) == 3


def test_a_secret_in_an_alert_never_reaches_a_mail(store: Store, clock: Clock,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   smtp: SmtpServer) -> None:
    """The SMTP password (a configured secret) quoted by an alert is cut from the subject
    and both bodies of every mail, in every channel's format."""
    kit = mail_kit(store, clock, tmp_path, monkeypatch, smtp)
    open_incident(kit, alertname=f"Leak_token={PASSWORD}")
    assert deliver(kit) == 2
    mails = smtp.mails()
    assert len(mails) == 2
    assert PASSWORD.encode() not in smtp.raw()
    for mail in mails:
        text, html = parts(mail)
        assert PASSWORD not in str(mail["Subject"]) + text + html
        assert "[redacted]" in str(mail["Subject"])


# -- header injection -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_smtp() -> Any:
    server = SmtpServer().start()
    yield server
    server.stop()


def context(title: str, label_value: str) -> MessageContext:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return MessageContext(
        id=9, kind="opened", incident_id=3, job_id=None, message=f"opened: {label_value}",
        detail={}, created_at=at, title=title, severity="P0", incident_state="open",
        ack_due_at=at + timedelta(minutes=5), acknowledged_at=None,
        group_labels={"service": label_value})


HOSTILE = st.lists(st.sampled_from(["\r", "\n", "\r\n", " ", ":", "Bcc", "To", "x@evil.test",
                                   "<b>", "&", "=?utf-8?q?", "\u2028", "é", "\t", "\x00",
                                   "Subject"]), max_size=12).map("".join) | st.text(max_size=40)


@pytest.mark.slow
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=HOSTILE, label_value=HOSTILE, stakeholder=st.booleans())
@example(title="Down\r\nBcc: x@evil.test", label_value="\r\n\r\nbody", stakeholder=True)
@example(title="Down\nTo: x@evil.test\n\n<b>hi</b>", label_value="v", stakeholder=False)
def test_cr_lf_in_alert_text_never_makes_a_header(shared_smtp: SmtpServer,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  title: str, label_value: str,
                                                  stakeholder: bool) -> None:
    monkeypatch.setenv("REMEDIATOR_TEST_MAIL_INJECT", shared_smtp.url(EXECS))
    config = make_config(notifications={
        "link_base": LINK, "channels": {"m": {
            "url": "env:REMEDIATOR_TEST_MAIL_INJECT", "format": "html",
            "audience": "stakeholders" if stakeholder else "oncall"}},
        "audiences": {"stakeholders": {"labels": ["service"]}}})
    channel = config.notifications.channels["m"]
    message = render(config, context(title, label_value), body_format="html",
                     audience=config.notifications.audience_of("m"))
    before = len(shared_smtp.received)
    AppriseSender(5.0)("m", channel, message)
    assert len(shared_smtp.received) == before + 1
    envelope = shared_smtp.received[-1]
    assert envelope.rcpt_tos == [EXECS] and envelope.mail_from == FROM
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert set(mail.keys()) == HEADERS
    assert mail["To"] == EXECS and mail["From"] == FROM
    subject = str(mail["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert subject.split() == message.subject.split()
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    body = str(html.get_content())
    tags = {t.split(">")[0].split()[0] for t in body.split("<")[1:]}
    assert tags <= {"b", "/b", "br", "a", "/a"}, body
