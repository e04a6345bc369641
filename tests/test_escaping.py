"""Text from alerts stays text: the post-mortem Markdown and every notification format
(Markdown, Slack mrkdwn, HTML, plain text through apprise) escape alert-derived values, so
they add no heading, link, image, HTML, table row, mention or code span break-out.

Output is read back with real parsers: markdown-it-py (GFM-like: tables, strikethrough,
raw HTML and linkify on), the stdlib HTML parser, Slack's anchor syntax, and apprise's own
Slack plugin posting to a loopback endpoint."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from receiver.comms.markup import html_text, md_code, md_text, one_line, slack_text
from receiver.comms.notify import Message, deliver_due, incident_url
from receiver.incidents import lifecycle, postmortem
from receiver.people.tokens import approval_links
from receiver.store import Store
from receiver.store import evidence as evidence_store
from tests.conftest import Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.support import free_port
from tests.test_notify import Endpoint, texts

HOSTILE = [
    "# H", "[x](http://e)", "![i](http://e)", "<script>alert(1)</script>", "| a | b |",
    "``` `x` ``", "back\\slash \\| \\`", "www.evil.test http://evil.test a@evil.test",
    "<http://evil|Approve>", "[Approve](http://evil)", "<a href=http://evil>Approve</a>",
    "&lt;b&gt; &amp;", "*em* _em_ ~~s~~", "<!channel> <@U123>", "line\n# H2\n- item\n> q",
]
EVIL = " ".join(HOSTILE)
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=60)
MD = MarkdownIt("gfm-like")


def tokens(text: str) -> list[Token]:
    """Every token of the document, children included."""
    out: list[Token] = []
    stack = list(reversed(MD.parse(text)))
    while stack:
        tok = stack.pop()
        out.append(tok)
        stack.extend(reversed(tok.children or []))
    return out


def inline_text(tok: Token) -> str:
    return "".join(c.content for c in tok.children or [] if c.type in ("text", "text_special"))


FORBIDDEN = {"link_open", "image", "html_inline", "html_block", "code_inline", "em_open",
             "strong_open", "s_open", "blockquote_open", "fence", "code_block", "hr"}


# -- the escapers, property by property ---------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(value=TEXT)
@example(value="- item")
@example(value="www.evil.test")
@example(value="1. x")
@example(value="#")
def test_md_text_is_literal_text_in_every_context(value: str) -> None:
    """In a paragraph, a heading, a list item and a table cell, an escaped value is one text
    run equal to the value (on one line), and makes no other node."""
    expected = f"x {one_line(value)} y"
    for doc, container in (
        (f"x {md_text(value)} y", "paragraph_open"),
        (f"# x {md_text(value)} y", "heading_open"),
        (f"- x {md_text(value)} y", "bullet_list_open"),
        (f"| h |\n| --- |\n| x {md_text(value)} y |", "table_open"),
    ):
        toks = tokens(doc)
        types = {t.type for t in toks}
        assert not types & FORBIDDEN, (doc, types & FORBIDDEN)
        assert sum(t.type == container for t in toks) == 1, doc
        assert sum(t.type in ("tr_open", "th_open", "td_open") for t in toks) == (
            4 if container == "table_open" else 0), doc
        inlines = [t for t in toks if t.type == "inline"]
        assert inline_text(inlines[-1]) == expected, doc


@settings(max_examples=300, deadline=None)
@given(value=TEXT)
@example(value="a``b`")
@example(value="`")
@example(value=" `x` ")
def test_md_code_can_not_be_broken_out_of(value: str) -> None:
    """A value in a code span is exactly one code span holding the value."""
    toks = tokens(f"x {md_code(value)} y")
    if not one_line(value).strip(" "):
        assert "code_inline" not in {t.type for t in toks}
        return
    spans = [t for t in toks if t.type == "code_inline"]
    assert len(spans) == 1 and spans[0].content == one_line(value)
    assert not {t.type for t in toks} & (FORBIDDEN - {"code_inline"})


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@settings(max_examples=300, deadline=None)
@given(value=TEXT)
@example(value="<http://evil|Approve>")
@example(value="&lt;")
def test_slack_text_has_no_anchor_and_reads_back(value: str) -> None:
    """Escaped mrkdwn has no ``<`` or ``>`` (so no anchor or mention) and Slack's decoding
    gives the value back."""
    out = slack_text(value)
    assert "<" not in out and ">" not in out
    assert _slack_unescape(out) == value


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(("/" + tag, {}))

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def parse_html(text: str) -> _Html:
    parser = _Html()
    parser.feed(text)
    parser.close()
    return parser


@settings(max_examples=300, deadline=None)
@given(value=TEXT)
@example(value="<a href=http://evil>Approve</a>")
@example(value="&amp;")
def test_html_text_has_no_tag_and_reads_back(value: str) -> None:
    """Escaped HTML holds no tag, and the parser's text is the value."""
    parsed = parse_html(f"<p>{html_text(value)}</p>")
    assert parsed.tags == [("p", {}), ("/p", {})]
    assert "".join(parsed.data) == value


# -- the post-mortem ----------------------------------------------------------------------
def test_postmortem_of_hostile_alert_data_keeps_its_structure(
    store: Store, clock: Clock, tmp_path: Path
) -> None:
    """Title, group key, labels, annotations, notes, job reasons and evidence summaries full
    of Markdown, HTML and table syntax add no heading, link, image, HTML or table row, and
    the group key stays one code span."""
    kit = Kit(store, clock, [rule(approval={"mode": "required", "groups": ["dba"]})],
              people=people(), data_dir=str(tmp_path))
    group_key = "{}:{alertname=\"x`` `y`\"}" + EVIL
    labels = {"container": "web1", "instance": EVIL, "service": EVIL, "job": EVIL,
              "namespace": "ns|x"}
    alert = make_alert(alertname="AppDown", labels=labels,
                       annotations={"summary": EVIL, "description": EVIL})
    result = kit.fire(make_notification([alert], group_key=group_key))
    inc = int(result.incident_id)
    kit.drain()
    lifecycle.act(store, kit.config, inc, "note", user="alice", now=clock(), text=EVIL)
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET reason = :r", {"r": EVIL})
        tx.execute("UPDATE incidents SET title = :t WHERE id = :id", {"t": EVIL, "id": inc})
        evidence_store.insert_evidence(
            tx, incident_id=inc, request_id=None, check_name=EVIL, kind="http", ok=False,
            summary=EVIL, detail={}, started_at=clock(), duration_ms=1)
    text = postmortem.render(store, kit.config, inc)
    assert text is not None
    toks = tokens(text)

    headings = [inline_text(toks[i + 1]) for i, t in enumerate(toks) if t.type == "heading_open"]
    assert headings == [f"Post-mortem: {one_line(EVIL)} (incident #{inc})", "Summary", "Impact",
                        "Timeline", "Remediation", "Diagnostics", "Notes", "Recent deploys",
                        "Similar past incidents", "Root cause",
                        "What went well", "What went wrong", "Where we got lucky",
                        "Action items"]
    kinds = {t.type for t in toks}
    assert not kinds & {"link_open", "image", "html_inline", "html_block", "blockquote_open",
                        "fence", "code_block", "s_open"}
    spans = [t.content for t in toks if t.type == "code_inline"]
    assert one_line(group_key) in spans
    # Three tables, every row as wide as its header; the timeline one row per event.
    inc_row = store.get_incident(inc)
    assert inc_row is not None
    widths: list[list[int]] = []
    for t in toks:
        if t.type == "table_open":
            widths.append([])
        elif t.type == "tr_open":
            widths[-1].append(0)
        elif t.type in ("th_open", "td_open"):
            widths[-1][-1] += 1
    assert [len(set(w)) for w in widths] == [1, 1, 1] and [w[0] for w in widths] == [3, 4, 4]
    assert len(widths[1]) == 1 + len(inc_row["timeline"])
    cells = [inline_text(toks[i + 1]) for i, t in enumerate(toks) if t.type == "td_open"]
    assert one_line(EVIL) in cells  # the note, literally, in its cell
    items = [inline_text(t) for t in toks if t.type == "inline"]
    assert any(f"Reason: {one_line(EVIL)}." in i for i in items)
    assert any(one_line(EVIL) in i and "failed" in i for i in items)  # the evidence line


# -- notifications ------------------------------------------------------------------------
def _kit(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
         channels: dict[str, dict[str, Any]]) -> Kit:
    for name, channel in channels.items():
        monkeypatch.setenv(f"RMESC_{name.upper()}", channel["url"])
        channel["url"] = f"env:RMESC_{name.upper()}"
    return Kit(store, clock,
               [rule(approval={"mode": "required", "approvers": 2, "groups": ["dba"]})],
               people=people(), data_dir=str(tmp_path),
               server={"public_url": "https://remediator.example.test"},
               notifications={"channels": channels})


def _fire_hostile(kit: Kit) -> tuple[int, set[str]]:
    """A job awaiting approval for an alert whose summary forges links; the incident, and
    the real links of a message about it (approval links with their nonce cut off)."""
    alert = make_alert(labels={"container": "web1"}, annotations={"summary": EVIL})
    inc = int(kit.fire(make_notification([alert], group_key="g-esc",
                                         commonAnnotations={"summary": EVIL})).incident_id)
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    with kit.store.unit(write=False) as uow:
        approval = uow.approvals.for_job(job_id)
        job = uow.jobs.get(job_id)
    assert approval is not None and job is not None
    links = {_approval(url) for url in approval_links(kit.config, approval).values()}
    assert len(links) == 2
    return inc, links | {incident_url(kit.config, inc)}


def _approval(url: str) -> str:
    """An approval link without its token's nonce and signature: who and which approval."""
    base, _, token = url.rpartition("/approvals/")
    if not base:
        return url
    payload = token.split(".")[0]
    claim = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{base}/approvals/{claim['a']}:{claim['u']}"


def _md_links(text: str) -> set[str]:
    return {_approval(str(t.attrs.get("href"))) for t in tokens(text) if t.type == "link_open"}


def _slack_links(text: str) -> set[str]:
    anchors = re.findall(r"<([^<>]*)>", text)
    return {_approval(a.split("|", 1)[0]) for a in anchors}


def _html_links(text: str) -> set[str]:
    parsed = parse_html(text)
    assert {t for t, _ in parsed.tags} <= {"a", "/a", "b", "/b", "br"}, parsed.tags
    return {_approval(str(a.get("href"))) for t, a in parsed.tags if t == "a"}


LINKS_OF = {"markdown": _md_links, "slack": _slack_links, "html": _html_links}


def test_rendered_messages_hold_exactly_the_real_links(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """For each markup format, the approval request's only links are the approvers' review
    links and the incident page; no message links to the alert's URLs or mentions anyone."""
    kit = _kit(store, clock, monkeypatch, tmp_path, {
        fmt: {"url": f"json://127.0.0.1:9/{fmt}", "format": fmt,
              "events": ["opened", "job_awaiting_approval"]}
        for fmt in ("markdown", "slack", "html", "text")})
    inc, real = _fire_hostile(kit)
    sent: list[tuple[str, Message]] = []
    deliver_due(store, kit.config, clock=clock, worker_id="w1",
                send=lambda name, _ch, msg: sent.append((name, msg)))
    assert {name for name, _ in sent} == {"markdown", "slack", "html", "text"}
    for name, message in sent:
        if name == "text":
            continue
        links = LINKS_OF[name](message.body) | LINKS_OF[name](message.title)
        awaiting = "awaiting approval" in message.title
        expected = real if awaiting else {incident_url(kit.config, inc)}
        assert links == expected, (name, message.body)
    text = [m for n, m in sent if n == "text" and "awaiting approval" in m.title]
    shown = {_approval(u) for u in re.findall(r"https://remediator\S+", text[0].body)}
    assert real <= shown


def test_plain_text_through_apprise_slack_forges_no_link(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """apprise's Slack plugin turns ``<url|text>`` even in a plain-text body into a link:
    the payload it posts for each format holds no link but the real ones, and no mention."""
    from apprise.plugins.slack import NotifySlack

    port = free_port()
    monkeypatch.setattr(NotifySlack, "webhook_url", f"http://127.0.0.1:{port}/services")
    kit = _kit(store, clock, monkeypatch, tmp_path, {
        fmt: {"url": f"slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlaz{fmt}kcOX", "format": fmt,
              "events": ["job_awaiting_approval"]}
        for fmt in ("markdown", "slack", "html", "text")})
    _, real = _fire_hostile(kit)
    with Endpoint(port) as slack:
        assert deliver_due(store, kit.config, clock=clock, worker_id="w1") == 4
    assert len(slack.received) == 4
    for path, body in slack.received:
        fmt = path.rpartition("dnlaz")[2].removesuffix("kcOX")
        shown = texts(json.loads(body))
        anchors = _slack_links(shown)
        assert anchors <= real, (fmt, anchors - real)  # no forged link, no mention
        if fmt in ("html", "slack"):
            assert anchors == real, (fmt, shown)
        else:  # markdown and text reach Slack with their links as plain text
            assert not anchors, (fmt, shown)
