"""The audit page in a real browser: the filter form (incident, actor, action, time range)
and paging past 50 entries, checked row by row against what each filter asks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from playwright.sync_api import Page

from tests.browser.conftest import Server, key_prefix, log_in, screenshot

pytestmark = pytest.mark.slow

PAGE = 50
ALICE_NOTES = 55
BOB_NOTES = 5


def note(server: Server, incident: int, text: str, who: str) -> None:
    server.post_api(f"/api/v1/incidents/{incident}/actions", {"action": "note", "text": text},
                    who)


def apply_filters(page: Page, **values: str) -> None:
    """Fill the form's fields (others emptied) and submit it with its button."""
    for name in ("incident", "actor", "action", "since", "until"):
        page.fill(f"#audit-filters input[name={name}]", values.get(name, ""))
    with page.expect_navigation():
        page.click("#apply-filters")
    for name, value in values.items():
        assert page.input_value(f"#audit-filters input[name={name}]") == value, name


def rows(page: Page) -> list[dict[str, Any]]:
    """The entries shown: seq, time, actor, action, subject link, details text."""
    out = page.eval_on_selector_all("#audit tr.audit-row", """trs => trs.map(tr => ({
        seq: Number(tr.cells[0].innerText),
        when: tr.cells[1].innerText.trim(),
        actor: tr.querySelector('td.actor').innerText.trim(),
        action: tr.querySelector('td.action').innerText.trim(),
        href: tr.cells[4].querySelector('a') ? tr.cells[4].querySelector('a').getAttribute('href') : null,
        details: tr.cells[5].innerText.trim(),
    }))""")
    assert isinstance(out, list)
    return out


def all_pages(page: Page) -> list[dict[str, Any]]:
    """Rows of this page and every next page, following the "Next" link."""
    shown = rows(page)
    assert len(shown) <= PAGE
    while page.locator("#next-page").count():
        assert len(shown) % PAGE == 0, "a short page must be the last one"
        with page.expect_navigation():
            page.click("#next-page")
        more = rows(page)
        assert more and more[0]["seq"] > shown[-1]["seq"]
        shown += more
    return shown


def split_cells(page: Page) -> list[str]:
    """Time and origin cells whose text the browser laid out on more than one line."""
    found: list[str] = page.eval_on_selector_all("#audit td.nowrap", """tds => tds.filter(td => {
        const r = document.createRange();
        r.selectNodeContents(td);
        return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size > 1;
    }).map(td => td.innerText)""")
    return found


def shown_time(cell: str) -> datetime:
    return datetime.strptime(cell, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


def test_audit_filters_and_paging(server: Server, cache: redis.Redis, desktop: Page) -> None:
    """Filtering by incident, actor, action and time range through the form shows only
    matching rows, and more than 50 entries are paged with a working Next link."""
    prefix = key_prefix("audit")
    cache.set(f"{prefix}:1", "x")
    inc = server.fire("SessionCacheStale", {"key_prefix": prefix, "severity": "warning"})
    job = server.wait_job_state(inc, "awaiting_approval")
    server.post_api(f"/api/v1/jobs/{job['id']}/approve", {"reason": "audit test"},
                    "alice")
    server.wait_job_state(inc, "succeeded")  # its later entries land before the notes
    for i in range(ALICE_NOTES):
        note(server, inc, f"alice-{i}", "alice")
    for i in range(BOB_NOTES):
        note(server, inc, f"bob-{i}", "bob")
    time.sleep(1.1)  # the page shows whole seconds: keep the window apart from the rest
    since = datetime.now(UTC)
    for i in range(3):
        note(server, inc, f"window-{i}", "bob")
    until = datetime.now(UTC)
    time.sleep(1.1)
    for i in range(2):
        note(server, inc, f"after-{i}", "alice")
    expected = server.api(f"/api/v1/audit?incident={inc}&limit=1000")["entries"]
    assert len(expected) > PAGE  # the notes alone are 65

    log_in(desktop, server.url, "alice")
    desktop.goto(f"{server.url}/audit")
    assert desktop.inner_text("#chain").startswith("Hash chain intact")

    # by incident: every entry of it, over two pages
    apply_filters(desktop, incident=str(inc))
    first = rows(desktop)
    assert len(first) == PAGE and desktop.locator("#next-page").is_visible()
    assert split_cells(desktop) == []
    screenshot(desktop, "audit-page.png")
    shown = all_pages(desktop)
    assert [r["seq"] for r in shown] == [e["seq"] for e in expected]
    assert all(r["href"] == f"/incidents/{inc}" for r in shown)

    # by incident and actor: only alice's entries, still paged (55 notes + her approval)
    desktop.goto(f"{server.url}/audit")
    apply_filters(desktop, incident=str(inc), actor="user:alice")
    assert desktop.locator("#next-page").count() == 1
    shown = all_pages(desktop)
    assert {r["actor"] for r in shown} == {"user:alice"}
    assert all(r["href"] == f"/incidents/{inc}" for r in shown)
    details = [r["details"] for r in shown]
    assert {f"alice-{i}" for i in range(ALICE_NOTES)} <= set(details)
    assert not [d for d in details if d.startswith(("bob-", "window-"))]
    assert {r["action"] for r in shown} == {"incident.note", "job.approved"}

    # by actor alone: entries of every incident (and of none), all by bob
    apply_filters(desktop, actor="user:bob")
    shown = all_pages(desktop)
    assert shown and {r["actor"] for r in shown} == {"user:bob"}

    # by action: job.approved everywhere, including this incident's by alice
    apply_filters(desktop, action="job.approved")
    shown = all_pages(desktop)
    assert shown and {r["action"] for r in shown} == {"job.approved"}
    assert [r["actor"] for r in shown if r["href"] == f"/incidents/{inc}"] == ["user:alice"]

    # by time range (as typed into the form) on this incident: exactly the window's notes
    apply_filters(desktop, incident=str(inc), since=since.isoformat(), until=until.isoformat())
    shown = rows(desktop)
    assert desktop.locator("#next-page").count() == 0
    assert [r["details"] for r in shown] == [f"window-{i}" for i in range(3)]
    low = since.replace(microsecond=0)
    assert all(low <= shown_time(r["when"]) <= until for r in shown)
    assert {r["actor"] for r in shown} == {"user:bob"}

    # the Z form from the field's placeholder works too
    apply_filters(desktop, incident=str(inc), since=until.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert [r["details"] for r in rows(desktop)] == ["after-0", "after-1"]
