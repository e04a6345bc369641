"""The report page and an incident's timeline strip in Chromium at phone (390 px) and
desktop (1280 px) widths: the charts' numbers read from the rendered SVG equal the figures
computed from the store, a hostile alert name shows as text, nothing overflows the phone's
width, and a screenshot of each is saved under the test's tmp dir."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from receiver.incidents import report_view
from tests.browser.conftest import Server, log_in

pytestmark = pytest.mark.slow

DATUMS = """els => els.map(g => ({series: g.dataset.series || '', category: g.dataset.category || '',
    value: g.dataset.value, kind: g.dataset.kind || '',
    title: g.querySelector('title').textContent}))"""


def chart(page: Page, chart_id: str) -> list[dict[str, Any]]:
    out = page.eval_on_selector_all(f"svg[id='{chart_id}'] g.datum", DATUMS)
    assert isinstance(out, list)
    return out


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screenshots" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def seeded(server: Server) -> dict[str, Any]:
    """Three incidents of one hostile alert name (each its own group), the last one
    acknowledged by alice; one more incident of another name."""
    name = f'Report<img src=x onerror=alert(1)>"{uuid.uuid4().hex[:6]}'
    incident = 0
    for k in range(3):
        incident = server.fire(name, {"severity": "critical", "instance": f"r{k}",
                                      "group": "report"})
    server.post_api(f"/api/v1/incidents/{incident}/actions", {"action": "acknowledge"},
                    "alice")
    other = server.fire(f"ReportOther{uuid.uuid4().hex[:6]}", {"severity": "warning"})
    return {"name": name, "incident": incident, "other": other}


def expected(server: Server) -> report_view.Figures:
    """The figures of the last 7 days, computed from the store as the page does."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rng = report_view.Range.last(report_view.PRESETS["7d"], now, "7d")
    with server.store.unit(write=False) as uow:
        facts = report_view.gather(uow.reports, rng)
    return report_view.figures(facts, rng, now=now, noise_window=server.config.sla.noise_window)


@pytest.mark.parametrize("width", ["phone", "desktop"])
def test_report_charts_show_the_store_figures(server: Server, seeded: dict[str, Any],
                                              width: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    """/report?since=7d: per-day counts by severity, the noisiest alerts and the range
    form as the store has them; the hostile name is the datum's text, never markup."""
    page: Page = request.getfixturevalue(width)
    log_in(page, server.url, "alice", then=f"{server.url}/report?since=7d")
    assert page.url.endswith("/report?since=7d")
    fig = expected(server)
    per_day = {(d["series"], d["category"]): float(d["value"])
               for d in chart(page, "chart-per-day")}
    today = fig.days[-1].strftime("%m-%d")
    for sev in ("P0", "P1", "P2", "P3"):
        assert per_day[(sev, today)] == fig.per_day[sev][-1], sev
    assert per_day[("P1", today)] >= 1 and per_day[("P2", today)] >= 1
    noisiest = {d["category"]: d for d in chart(page, "chart-noisiest")}
    mine = noisiest[seeded["name"]]
    assert mine["value"] == "3" and mine["title"].endswith(": 3 episodes, 3 incidents")
    for a in fig.alerts:
        assert noisiest[a.alertname]["value"] == str(a.episodes)
    mtta = chart(page, "chart-mtta")
    p1 = fig.weekly[fig.weeks[-1]].by_severity["P1"].mtta
    assert p1 is not None
    week = [d for d in mtta if d["series"] == "P1"][-1]
    assert float(week["value"]) == pytest.approx(p1, abs=0.01)
    assert page.locator("img").count() == 0  # the name's <img> is text, not an element
    assert page.input_value("#report-range select[name=since]") == "7d"
    viewport = page.viewport_size
    assert viewport is not None
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    path = shot(page, tmp_path, f"report-{width}.png")
    print(f"screenshot: {path}")


@pytest.mark.parametrize("width", ["phone", "desktop"])
def test_incident_strip_shows_its_milestones(server: Server, seeded: dict[str, Any],
                                             width: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    """The acknowledged incident's strip: alert start, detection and acknowledgement, the
    acknowledgement's offset as the store has it, drawn above the event table."""
    page: Page = request.getfixturevalue(width)
    inc = seeded["incident"]
    log_in(page, server.url, "alice", then=f"{server.url}/incidents/{inc}")
    marks = chart(page, f"incident-strip-{inc}")
    kinds = [m["kind"] for m in marks]
    assert {"alert_start", "detected", "acknowledged"} <= set(kinds)
    detail = server.api(f"/api/v1/incidents/{inc}")
    from datetime import datetime

    starts = min(datetime.fromisoformat(a["starts_at"]) for a in detail["alerts"])
    ack = datetime.fromisoformat(detail["acknowledged_at"])
    got = next(m for m in marks if m["kind"] == "acknowledged")
    assert float(got["value"]) == pytest.approx((ack - starts).total_seconds(), abs=1)
    strip = page.locator(f"svg[id='incident-strip-{inc}']").bounding_box()
    table = page.locator("#timeline").bounding_box()
    assert strip and table and strip["y"] < table["y"]
    assert strip["width"] <= (page.viewport_size or {"width": 0})["width"]
    path = shot(page, tmp_path, f"incident-{width}.png")
    print(f"screenshot: {path}")
