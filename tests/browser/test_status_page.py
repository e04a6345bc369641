"""The public status page in Debian's Chromium, served by a real ``remediator serve``.

An alert with hostile labels and annotations opens an incident; an operator writes the
first public update in the browser (login, form with CSRF) and a second one through the
API; the public page, read at phone and desktop widths, shows the components and both
updates and nothing internal; its JSON has the Statuspage summary shape.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from playwright.sync_api import BrowserContext, Page

from receiver.config import load_config
from receiver.store import open_store
from tests.browser.conftest import (
    DESKTOP,
    ENV,
    PHONE,
    START_TIMEOUT,
    Server,
    _services_up,
    _start_sink,
    _stop,
    log_in,
    wait_for,
    write_config,
)
from tests.conftest import drop_pg_database, new_pg_database, pg_url
from tests.status_kit import validate_summary
from tests.support import free_port

pytestmark = pytest.mark.slow

COMPONENTS = [
    {"name": "Public API", "description": "The REST API", "matchers": ['service="api"']},
    {"name": "Web app", "description": "The website", "match": {"service": "web"}},
    {"name": "Payments", "match_re": {"team": "pay.*"}},
]
LABELS = {
    "service": "api",
    "instance": "db-primary-7.internal.corp:5432",
    "host": "secret-host-42.prod.internal",
    "job": "<script>alert('label')</script>",
    "customer": "ACME-INTERNAL-CUSTOMER-ID-991",
}
ANNOTATIONS = {
    "summary": "Connection refused on db-primary-7.internal.corp",
    "description": "<img src=x onerror=alert(1)> token=hunter2hunter2",
    "runbook_url": "https://wiki.internal.corp/runbooks/db",
}
INTERNAL = [*LABELS.values(), *ANNOTATIONS.values(), "InternalAlertName99", "db-primary-7",
            "secret-host-42", "hunter2", "wiki.internal", "alice", "bob"]
INTERNAL.remove("api")  # the component's matcher value: a word anyone may write


@pytest.fixture(scope="module")
def status_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``remediator serve`` with the status page on and three components, on a fresh
    PostgreSQL database."""
    _services_up()
    tmp = tmp_path_factory.mktemp("status-receiver")
    sink, httpd = _start_sink()
    dbname = new_pg_database(None)
    saved = {k: os.environ.get(k) for k in [*ENV, "REMEDIATOR_DB_URL", "RMBROWSER_NOTIFY_URL"]}
    os.environ.update(ENV)
    os.environ["REMEDIATOR_DB_URL"] = pg_url(dbname)
    port = free_port()
    path = write_config(tmp, port, sink)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["status_page"] = {"enabled": True, "title": "Example status", "refresh": "30s",
                          "components": COMPONENTS}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    log_path = tmp / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["remediator", "serve", "-c", str(path), "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "4"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    store = None
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"remediator serve exited with {proc.returncode}:\n"
                            f"{log_path.read_text(errors='replace')}")
            try:
                return requests.get(url + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, "the receiver's /readyz", START_TIMEOUT, interval=0.2)
        store = open_store(pg_url(dbname), pool_min=0, pool_max=2)
        yield Server(url, load_config(path), store, log_path, sink, "store")
    finally:
        _stop(proc)
        httpd.shutdown()
        if store is not None:
            store.close()
        drop_pg_database(dbname)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"))


def _shot(page: Page, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_public_status_page_in_chromium(status_server: Server,
                                        new_context: Callable[..., BrowserContext],
                                        tmp_path: Path) -> None:
    """Components, an incident with two public updates (one from the form, one from the
    API), nothing internal in the page's text or markup, readable at phone and desktop
    widths; /status.json validates against the Statuspage summary schema."""
    srv = status_server
    incident = srv.fire("InternalAlertName99", LABELS, ANNOTATIONS)

    anon = new_context(**DESKTOP).new_page()
    anon.goto(f"{srv.url}/status")
    assert "All Systems Operational" in anon.inner_text("body")
    assert "InternalAlertName99" not in anon.content()  # the alert alone publishes nothing

    operator = new_context(**DESKTOP).new_page()
    log_in(operator, srv.url, "alice", then=f"{srv.url}/status/manage/incidents/{incident}")
    assert "InternalAlertName99" in operator.inner_text("body")  # operators see it
    assert "Public API" in operator.inner_text("body")  # the components it would affect
    operator.fill("input[name=title]", "Elevated API errors")
    operator.select_option("select[name=status]", "investigating")
    operator.fill("textarea[name=body]", "Some API requests fail. We are investigating.")
    with operator.expect_navigation():
        operator.click("#post-update button[type=submit]")
    assert "Published" in operator.inner_text("#notice")
    srv.post_api(f"/api/v1/status/incidents/{incident}/updates",
                 {"status": "monitoring", "body": "A fix is deployed; we are monitoring."},
                 "bob")

    shots = []
    for name, options in (("phone", PHONE), ("desktop", DESKTOP)):
        page = new_context(**options).new_page()
        page.goto(f"{srv.url}/status")
        text = page.inner_text("body")
        html = page.content()
        assert "Partial System Outage" in text
        for component in ("Public API", "Web app", "Payments"):
            assert component in text
        components = page.inner_text("#components")
        assert "Partial outage" in components and components.count("Operational") == 2
        incident_text = page.inner_text("#active")
        assert "Elevated API errors" in incident_text
        assert incident_text.index("A fix is deployed") < incident_text.index(
            "Some API requests fail")  # newest first
        assert "Monitoring" in incident_text and "Investigating" in incident_text
        for value in INTERNAL:
            assert value not in text, value
            assert value not in html, value
        assert page.locator("script").count() == 0
        assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
        assert _no_horizontal_scroll(page), f"{name}: the page scrolls sideways"
        shots.append(_shot(page, tmp_path, f"status-{name}.png"))
    assert all(p.stat().st_size > 5_000 for p in shots)

    r = requests.get(f"{srv.url}/status.json", timeout=10)
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    validate_summary(data)
    [public] = data["incidents"]
    assert [u["status"] for u in public["incident_updates"]] == ["monitoring", "investigating"]
    for value in INTERNAL:
        assert value not in r.text, value
    feed = requests.get(f"{srv.url}/status/feed.atom", timeout=10).text
    assert feed.count("<entry>") == 2
    assert not any(value in feed for value in INTERNAL)
    audit = srv.api("/api/v1/audit?action=status.update_published", "alice")["entries"]
    assert [e["actor"] for e in audit] == ["user:alice", "user:bob"]
