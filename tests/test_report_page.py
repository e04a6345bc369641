"""The /report page and ``report --html`` through the Flask test client and the CLI, on
both store backends: seeded incidents come out as the charts' numbers, the range form is
validated (400 naming the field), alert names are escaped, and the incident page shows its
timeline strip."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.cli import main
from receiver.incidents import lifecycle
from receiver.store import Store
from tests.conftest import OP_TOKEN, READ_TOKEN, TOKEN, Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.test_pages import browser, login

SVG = "{http://www.w3.org/2000/svg}"
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
WEEK = {"from": "2026-03-02", "to": "2026-03-08"}  # the Clock starts Monday 2026-03-02 10:00


@pytest.fixture
def seeded(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> dict[str, Any]:
    """Monday: a P1 AppDown (received at once, acked +4m, job succeeds, resolved +20m) that
    comes back 1 h later as a new incident of the same key. Tuesday: three P2 alerts named by
    hostile text, not acknowledged yet (2 h later: within the P2 deadline)."""
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)
    kit = Kit(store, clock, [rule()], people=people(),
              auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False})
    kit.app = create_app(kit.config, store=store, clock=clock)
    t0 = clock()
    alert = make_alert(labels={"container": "web1"}, starts_at=t0)
    first = kit.fire(make_notification([alert], group_key="g-web")).incident_id
    clock.advance(minutes=4)
    lifecycle.act(store, kit.config, first, "acknowledge", user="alice", now=clock())
    kit.drain()
    clock.advance(minutes=16)
    kit.fire(make_notification([dict(alert, status="resolved", endsAt=clock().isoformat())],
                               group_key="g-web"))
    clock.advance(hours=1)
    again = make_alert(labels={"container": "web1"}, starts_at=clock())
    second = kit.fire(make_notification([again], group_key="g-web")).incident_id
    clock.advance(days=1)
    hostile = [make_alert(alertname=XSS, labels={"severity": "warning", "instance": f"n{k}"},
                          starts_at=clock()) for k in range(3)]
    third = kit.fire(make_notification(hostile, group_key="g-xss")).incident_id
    clock.advance(hours=2)
    return {"kit": kit, "first": first, "second": second, "third": third,
            "tmp": tmp_path}


def svgs(html: str) -> dict[str, ET.Element]:
    """Each chart of the page by its id."""
    out = {}
    for m in re.finditer(r"<svg\b.*?</svg>", html, re.S):
        root = ET.fromstring(m.group(0))  # noqa: S314 - our own page
        out[root.get("id", "")] = root
    return out


def datums(root: ET.Element) -> list[dict[str, str]]:
    out = []
    for g in root.iter(f"{SVG}g"):
        if "datum" in (g.get("class") or "").split():
            title = g.find(f"{SVG}title")
            out.append({"series": g.get("data-series", ""),
                        "category": g.get("data-category", ""),
                        "value": g.get("data-value", ""), "kind": g.get("data-kind", ""),
                        "title": title.text if title is not None and title.text else ""})
    return out


def by_key(root: ET.Element) -> dict[tuple[str, str], str]:
    return {(d["series"], d["category"]): d["value"] for d in datums(root)}


def check_charts(html: str) -> None:
    """The seeded week's figures, chart by chart."""
    charts = svgs(html)
    assert {"chart-mtta", "chart-mttr", "chart-per-day", "chart-sla", "chart-noisiest",
            "chart-success", "chart-recurrence"} <= set(charts)
    assert by_key(charts["chart-mtta"]) == {("P1", "wk 03-02"): "240"}
    assert by_key(charts["chart-mttr"]) == {("P1", "wk 03-02"): "1200"}
    mtta = datums(charts["chart-mtta"])[0]["title"]
    assert mtta == "P1 · wk 03-02: 4.0m (240 s)"
    per_day = by_key(charts["chart-per-day"])
    assert per_day[("P1", "03-02")] == "2" and per_day[("P2", "03-03")] == "1"
    assert sum(float(v) for v in per_day.values()) == 3
    sla = by_key(charts["chart-sla"])
    # the second P1 was never acknowledged (past its deadline); the P2 is still within its own
    assert sla[("P1", "wk 03-02")] == "1" and sum(float(v) for v in sla.values()) == 1
    noisiest = datums(charts["chart-noisiest"])
    assert noisiest[0]["category"] == XSS and noisiest[0]["value"] == "3"
    assert noisiest[0]["title"].endswith(": 3 episodes, 1 incidents")
    assert {d["category"]: d["value"] for d in noisiest}["AppDown"] == "2"
    success = datums(charts["chart-success"])
    assert [(d["category"], d["value"]) for d in success] == [("restart_container", "1")]
    assert success[0]["title"].endswith("100% (1 of 1)")
    recurrence = datums(charts["chart-recurrence"])
    assert [(d["category"], d["value"]) for d in recurrence] == [("restart_container", "1")]
    assert XSS not in html and "<script>alert" not in html


def test_report_needs_login(seeded: dict[str, Any]) -> None:
    """Without a session /report redirects to the login form."""
    r = browser(seeded["kit"]).get("/report")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_report_page_charts_carry_the_seeded_figures(seeded: dict[str, Any]) -> None:
    """MTTA 240 s and MTTR 1200 s for P1 that week, 3 incidents over two days, 1 SLA
    breach, the hostile alert name the noisiest (escaped), 100 % success and recurrence."""
    c = browser(seeded["kit"])
    login(c)
    r = c.get("/report", query_string=WEEK)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    check_charts(html)
    assert "<script" not in html.split("</header>", 1)[1]
    assert 'id="report-range"' in html and 'method="get"' in html


def test_report_presets_pick_the_window(seeded: dict[str, Any]) -> None:
    """since=7d reads the last week (all three incidents); default 30d too; the summary
    table counts them by severity."""
    c = browser(seeded["kit"])
    login(c)
    for query in ({"since": "7d"}, {}):
        html = c.get("/report", query_string=query).get_data(as_text=True)
        rows = dict(re.findall(r'data-severity="(P\d)"><td>.*?</td><td class="incidents">'
                               r"(\d+)</td>", html))
        assert rows == {"P0": "0", "P1": "2", "P2": "1", "P3": "0"}


@pytest.mark.parametrize(("query", "field"), [
    ({"since": "1y"}, "since"),
    ({"since": "<b>"}, "since"),
    ({"from": "2026-13-01", "to": "2026-03-08"}, "from"),
    ({"from": "2026-03-08", "to": "2026-03-01"}, "to"),
    ({"from": "2026-03-01"}, "since/from/to"),
    ({"from": "1999-12-31", "to": "2000-01-02"}, "from"),
    ({"from": "2020-01-01", "to": "2026-03-01"}, "to"),
    ({"from": "9998-06-01", "to": "9999-12-31"}, "to"),
    ({"since": "7d", "from": "2026-03-01", "to": "2026-03-02"}, "since/from/to"),
])
def test_bad_range_is_a_400_naming_the_field(seeded: dict[str, Any], query: dict[str, str],
                                             field: str) -> None:
    """A bad range answers 400 with the form kept and the field named, no chart drawn."""
    c = browser(seeded["kit"])
    login(c)
    r = c.get("/report", query_string=query)
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    m = re.search(r'id="report-error">(.*?)</div>', html, re.S)
    assert m and f"{field}: " in m.group(1), m
    assert "<svg" not in html and "<b>" not in html


QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=QUERY_TEXT, first=QUERY_TEXT, last=QUERY_TEXT)
@example(since="", first="0001-01-01", last="9999-12-31")
@example(since="", first="9998-12-31", last="9998-12-31")
@example(since="7d\x00", first="", last="")
@example(since="<", first="<script>", last="")
@example(since="", first="2026-03-02T00:00:00", last="2026-03-02")
def test_generated_ranges_are_a_page_or_a_400_naming_a_field(
        seeded: dict[str, Any], since: str, first: str, last: str) -> None:
    """Whatever the form sends, /report is 200 with charts or 400 naming since, from or to
    (never a 5xx), and the text sent never comes back as markup."""
    c = browser(seeded["kit"])
    login(c)
    r = c.get("/report", query_string={"since": since, "from": first, "to": last})
    html = r.get_data(as_text=True)
    assert r.status_code in (200, 400), html[:500]
    if r.status_code == 400:
        m = re.search(r'id="report-error">(.*?)</div>', html, re.S)
        assert m and re.search(r"\b(since|from|to|since/from/to): ", m.group(1))
    else:
        assert "chart-per-day" in html
    baseline = c.get("/report").get_data(as_text=True)
    for sent in (since, first, last):
        # raw markup sent never comes back (a fragment of the page's own markup, such as
        # "<" or "<di", is in every page and proves nothing)
        if "<" in sent and sent not in baseline:
            assert sent not in html


def test_report_is_get_only(seeded: dict[str, Any]) -> None:
    """POST /report is not a thing: 405, whatever the session."""
    c = browser(seeded["kit"])
    login(c)
    assert c.post("/report").status_code == 405


def test_incident_page_shows_the_timeline_strip(seeded: dict[str, Any]) -> None:
    """The first incident's strip: alert start and detection at 0, ack, the job and so the
    mitigation at +240 s, resolution at +1200 s, in that order, above the event table."""
    c = browser(seeded["kit"])
    login(c)
    html = c.get(f"/incidents/{seeded['first']}").get_data(as_text=True)
    strip = svgs(html)[f"incident-strip-{seeded['first']}"]
    marks = datums(strip)
    kinds = [d["kind"] for d in marks]
    assert kinds[:2] in (["alert_start", "detected"], ["detected", "alert_start"])
    assert kinds[2:] == ["acknowledged", "job", "mitigated", "resolved"]
    values = {d["kind"]: d["value"] for d in marks}
    assert values["acknowledged"] == "240" and values["resolved"] == "1200"
    assert values["job"] == "240" and values["mitigated"] == "240"
    job = next(d for d in marks if d["kind"] == "job")
    assert "restart_container (succeeded)" in job["title"]
    assert html.index("<svg") < html.index('id="timeline"')


def test_hostile_incident_strip_is_escaped(seeded: dict[str, Any]) -> None:
    """The hostile incident's page still parses its strip; nothing hostile is markup."""
    c = browser(seeded["kit"])
    login(c)
    html = c.get(f"/incidents/{seeded['third']}").get_data(as_text=True)
    assert f"incident-strip-{seeded['third']}" in svgs(html)
    assert XSS not in html


def test_report_html_file_is_self_contained(seeded: dict[str, Any], store_url: str) -> None:
    """``report --html FILE`` writes the same charts into one file that links nothing."""
    cfg_path = seeded["tmp"] / "remediator.yml"
    cfg_path.write_text(yaml.safe_dump({"data_dir": str(seeded["tmp"] / "data"),
                                        "store": {"url": store_url}}), encoding="utf-8")
    out = seeded["tmp"] / "report.html"
    # the command reads up to the real now: a window back to before the seeded Monday
    days = (datetime.now(UTC) - datetime(2026, 3, 1, tzinfo=UTC)).days + 1
    r = CliRunner().invoke(main, ["report", "-c", str(cfg_path), "--since", f"{days}d",
                                  "--html", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text(encoding="utf-8")
    assert "<style>" in html and "url(" not in html
    assert not re.search(r"<(link|script|img|iframe|object)\b", html)
    assert not re.search(r"\s(src|href)=\"", html)
    charts = svgs(html)
    assert by_key(charts["chart-mtta"]).get(("P1", "wk 03-02")) == "240"
    assert datums(charts["chart-noisiest"])[0]["category"] == XSS
    assert XSS not in html
