"""Cross-site requests in a real browser: a page on another origin that auto-submits a form
to remediator cannot approve a job or lift the kill switch, for a user behind the trusted
proxy or a logged-in user; and a session cookie saved before logout is dead after it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import requests
from playwright.sync_api import BrowserContext, Page

from receiver.remediation import controls, guards
from tests.browser.conftest import DESKTOP, Server, key_prefix, log_in
from tests.support import free_port

pytestmark = pytest.mark.slow

SAME_SITE_HOST = "127.0.0.1"  # another port: cross-origin, same site (Lax cookies go along)
CROSS_SITE_HOST = "127.0.0.2"  # another site altogether


class Attacker:
    """Pages on another origin; ``/go?to=URL&field=value`` is a form that posts itself."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = free_port()
        self.httpd = ThreadingHTTPServer((host, self.port), self._handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, target: str, **fields: str) -> str:
        from urllib.parse import urlencode

        return f"http://{self.host}:{self.port}/go?" + urlencode({"to": target, **fields})

    @staticmethod
    def _handler() -> type[BaseHTTPRequestHandler]:
        from html import escape
        from urllib.parse import parse_qsl, urlsplit

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                query = dict(parse_qsl(urlsplit(self.path).query))
                target = query.pop("to", "")
                inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                                 for k, v in query.items())
                body = (f'<!doctype html><form method="post" action="{escape(target)}">'
                        f"{inputs}</form><script>document.forms[0].submit()</script>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def attackers() -> Iterator[dict[str, Attacker]]:
    made = {"same-site": Attacker(SAME_SITE_HOST), "cross-site": Attacker(CROSS_SITE_HOST)}
    yield made
    for a in made.values():
        a.close()


def parked_job(server: Server, cache: redis.Redis) -> tuple[int, int]:
    prefix = key_prefix("xsite")
    cache.set(f"{prefix}:1", "stale")
    inc = server.fire("SessionCacheStale", {"key_prefix": prefix, "severity": "warning"},
                      {"summary": "stale sessions"})
    job_id: int = server.wait_job_state(inc, "awaiting_approval")["id"]
    return inc, job_id


def is_paused(server: Server) -> bool:
    c = controls.state(server.store).get(guards.PAUSED)
    return c is not None and c.value == "true"


def attack(page: Page, url: str, target: str) -> tuple[int, str]:
    """Open the attacker's page; return the status and body of the form post it makes."""
    with page.expect_response(lambda r: r.url.startswith(target)
                              and r.request.method == "POST") as info:
        page.goto(url)
    resp = info.value
    return resp.status, "" if 300 <= resp.status < 400 else resp.text()


def test_cross_site_form_posts_are_refused(server: Server, cache: redis.Redis,
                                           attackers: dict[str, Attacker],
                                           new_context: Callable[..., BrowserContext]) -> None:
    """From a page on another port (same site) or another site, a self-submitting form to
    the approve and resume endpoints, and to the kill-switch page form, is refused with 403
    cross_site_request for a proxy-authenticated user; for a logged-in user it is refused
    the same way from the same site (the cookie goes along) and, from another site, the
    browser does not even send the cookie (401). Nothing changes."""
    inc, job_id = parked_job(server, cache)
    server.post_api("/api/v1/controls/pause", {"reason": "cross-site test"}, "alice")
    try:
        proxied = new_context(**DESKTOP, extra_http_headers={"X-Forwarded-User": "bob"})
        logged_in = new_context(**DESKTOP)
        session_page = logged_in.new_page()
        log_in(session_page, server.url, "bob")
        targets = [(f"{server.url}/api/v1/jobs/{job_id}/approve", {"reason": "forged"}),
                   (f"{server.url}/api/v1/controls/resume", {"reason": "forged"}),
                   (f"{server.url}/controls", {"action": "resume", "reason": "forged"})]
        seen: list[tuple[str, str, str, int]] = []
        for who, ctx in (("proxy", proxied), ("session", logged_in)):
            page = ctx.new_page()
            for site, attacker in attackers.items():
                for target, fields in targets:
                    status, body = attack(page, attacker.url(target, **fields), target)
                    seen.append((who, site, target.rsplit("/", 1)[1], status))
                    if who == "session" and site == "cross-site":
                        assert status in (302, 401), (who, site, target, status, body)
                    else:
                        assert status == 403, (who, site, target, status, body)
                        assert "cross_site_request" in body, body
        assert len(seen) == 12
        assert server.job_of(inc)["state"] == "awaiting_approval"
        _, votes = server.approval(job_id)
        assert votes == [], votes
        assert is_paused(server)
        # the same user, on remediator's own page, can still act (same origin + CSRF token)
        session_page.goto(f"{server.url}/incidents")
        assert session_page.locator("#paused-banner").count() == 1
    finally:
        server.post_api("/api/v1/controls/resume", {"reason": "cross-site test over"}, "alice")
    assert not is_paused(server)


def test_a_cookie_saved_before_logout_no_longer_works(
        server: Server, new_context: Callable[..., BrowserContext]) -> None:
    """Log in, keep the session cookie, log out with the page's button: the saved cookie,
    put in a fresh browser and sent by a plain HTTP client, gets the login form."""
    ctx = new_context(**DESKTOP)
    page = ctx.new_page()
    log_in(page, server.url, "carol")
    page.goto(f"{server.url}/incidents")
    saved = [c for c in ctx.cookies() if c["name"] == "remediator_session"]
    assert saved, ctx.cookies()
    before = requests.get(f"{server.url}/incidents", allow_redirects=False, timeout=10,
                          cookies={"remediator_session": saved[0]["value"]})
    assert before.status_code == 200
    with page.expect_navigation():
        page.click("header form button[type=submit]")
    assert "/login" in page.url
    replay = new_context(**DESKTOP)
    replay.add_cookies(saved)  # type: ignore[arg-type]
    again = replay.new_page()
    again.goto(f"{server.url}/incidents")
    assert "/login" in again.url
    after = requests.get(f"{server.url}/incidents", allow_redirects=False, timeout=10,
                         cookies={"remediator_session": saved[0]["value"]})
    assert after.status_code == 302 and "/login" in after.headers["Location"]
