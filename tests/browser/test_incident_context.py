"""The incident page in a real browser shows similar past incidents (with how each ended and
what fixed it) and the deploy finding, with hostile alert text and commit subjects shown as
text, never run or parsed as markup."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import DEPLOY_COMMITS, Server, log_in, screenshot, wait_for

pytestmark = pytest.mark.slow

HOSTILE = '<script>window.__pwned=1</script>"><img src=x onerror="window.__pwned=2">'


def test_incident_page_shows_similar_incidents_and_the_deploy(server: Server,
                                                              desktop: Page) -> None:
    """A resolved incident with the same alert and a hostile service label is listed as
    similar to a new one (resolved by alice, fixed by hand), the API says the same, the
    deploys check's commits are flagged as just before the alert, and nothing injected runs."""
    labels = {"service": HOSTILE, "severity": "warning", "env": "prod"}
    past = server.fire("DeployContext", labels)
    server.post_api(f"/api/v1/incidents/{past}/actions", {"action": "resolve"}, "alice")
    current = server.fire("DeployContext", labels)

    def listed() -> dict[str, Any] | None:
        body = server.api(f"/api/v1/incidents/{current}")
        ids = [s["id"] for s in body.get("similar", [])]
        deploys = [e for e in body["evidence"] if e["check_name"] == "recent-deploys"]
        return body if past in ids and deploys else None

    body = wait_for(listed, "the past incident to be indexed and the deploys check to run")
    item = next(s for s in body["similar"] if s["id"] == past)
    assert f"service={HOSTILE}" in item["shared"] and item["similarity"] == pytest.approx(1)
    assert item["fixed_by"]["person"] == "alice" and item["resolved_by"] == "user:alice"
    assert item["postmortem"] == f"/api/v1/incidents/{past}/postmortem.md"

    log_in(desktop, server.url, "alice", then=f"{server.url}/incidents/{current}")
    row = desktop.locator(f"#similar-{past}")
    row.wait_for()
    assert HOSTILE in row.inner_text()
    assert "by hand: alice" in row.locator(".fixed-by").inner_text()
    assert row.locator(f"a[href$='/incidents/{past}/postmortem.md']").count() == 1
    banner = desktop.locator(".recent-deploy").first
    assert DEPLOY_COMMITS[-1] in banner.inner_text()
    context = desktop.locator("#incident-context")
    assert context.locator("img, script").count() == 0
    assert desktop.evaluate("window.__pwned === undefined")
    screenshot(desktop, "incident-context.png")
