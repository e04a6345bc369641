"""People act as themselves on the web: CSRF and same-origin for browser credentials (session
cookie, trusted proxy), login limits in the store, revocable server-side sessions, no
approval-link tokens in the audit log, and what --insecure-no-auth really opens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.security import generate_password_hash

from receiver.app import INSECURE_NO_AUTH_WARNING, create_app
from receiver.people.tokens import approval_links
from receiver.store import AuditFilter, Store
from receiver.web.operators import PASSWORDS_EXTENSION
from tests.conftest import OP, PASSWORD, Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

PUBLIC = "https://remediator.example.test"
LOCAL = "127.0.0.1"
EVIL = "https://evil.example.net"


def make_kit(store: Store, clock: Clock, tmp_path: Path, **people_over: Any) -> Kit:
    ppl = people() | {"trusted_proxy": {"header": "X-Forwarded-User",
                                        "addresses": ["127.0.0.1/32"]}} | people_over
    kit = Kit(store, clock, [rule(approval={"mode": "required", "groups": ["dba"]})],
              people=ppl, auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"),
              server={"secure_cookies": False, "public_url": PUBLIC})
    kit.app = create_app(kit.config, store=store, clock=clock)
    return kit


@pytest.fixture
def kit(store: Store, clock: Clock, tmp_path: Path) -> Kit:
    return make_kit(store, clock, tmp_path)


def parked_job(kit: Kit) -> int:
    kit.fire(make_notification([make_alert(labels={"container": "web1"})]))
    kit.drain()
    job_id: int = kit.jobs()[0]["id"]
    assert kit.job(job_id)["state"] == "awaiting_approval"
    return job_id


def proxy(user: str = "bob", **headers: str) -> dict[str, Any]:
    return {"headers": {"X-Forwarded-User": user, **headers},
            "environ_base": {"REMOTE_ADDR": LOCAL}}


def form_token(client: Any, path: str, **kw: Any) -> str:
    return form_token_of(client.get(path, **kw))


def form_token_of(page: Any) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert m, page.get_data(as_text=True)[:300]
    return m.group(1)


def login(client: Any, user: str = "alice", password: str = PASSWORD,
          addr: str = "10.9.9.9") -> Any:
    env = {"REMOTE_ADDR": addr}
    token = form_token(client, "/login", environ_base=env)
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": token}, environ_base=env)


def api_token(client: Any, **kw: Any) -> str:
    r = client.get("/api/v1/csrf-token", **kw)
    assert r.status_code == 200, r.get_data(as_text=True)
    token: str = r.get_json()["csrf_token"]
    return token


def paused(kit: Kit) -> bool:
    from receiver.remediation import controls, guards

    c = controls.state(kit.store).get(guards.PAUSED)
    return c is not None and c.value == "true"


def pause(kit: Kit) -> None:
    from receiver.remediation import controls

    controls.pause(kit.store, actor="user:alice", reason="test", now=kit.clock())


# -- CSRF and origin ----------------------------------------------------------------------------
def test_cross_site_form_posts_of_a_proxy_user_are_refused(kit: Kit) -> None:
    """An auto-submitted form from another site (Origin or Sec-Fetch-Site says so) cannot
    approve a job or lift the kill switch for a proxy-authenticated user: 403 JSON naming
    the reason, and nothing changes."""
    job_id = parked_job(kit)
    pause(kit)
    c = kit.app.test_client()
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
                    {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}):
        for path in (f"/api/v1/jobs/{job_id}/approve", "/api/v1/controls/resume"):
            r = c.post(path, data={"reason": "x"}, **proxy("bob", **headers))
            assert r.status_code == 403, (path, headers, r.get_data(as_text=True))
            assert r.get_json()["error"] == "cross_site_request"
    assert "Sec-Fetch-Site" in c.post("/api/v1/controls/resume",
                                      **proxy("bob", **{"Sec-Fetch-Site": "cross-site"})
                                      ).get_json()["detail"]
    assert EVIL in c.post("/api/v1/controls/resume",
                          **proxy("bob", Origin=EVIL)).get_json()["detail"]
    assert kit.job(job_id)["state"] == "awaiting_approval"
    assert paused(kit)


def test_proxy_user_api_writes_need_the_csrf_header(kit: Kit) -> None:
    """Without X-CSRF-Token (even with no Origin at all) a proxy user's API write is refused;
    with the token from GET /api/v1/csrf-token it goes through."""
    job_id = parked_job(kit)
    c = kit.app.test_client()
    r = c.post(f"/api/v1/jobs/{job_id}/approve", json={}, **proxy("bob"))
    assert r.status_code == 400 and r.get_json()["error"] == "csrf_failed"
    alice_token = api_token(c, **proxy("alice"))
    r = c.post(f"/api/v1/jobs/{job_id}/approve", json={},
               **proxy("bob", **{"X-CSRF-Token": alice_token}))
    assert r.status_code == 400, "another user's token must not work"
    assert kit.job(job_id)["state"] == "awaiting_approval"
    token = api_token(c, **proxy("bob"))
    r = c.post(f"/api/v1/jobs/{job_id}/approve", json={},
               **proxy("bob", **{"X-CSRF-Token": token, "Origin": PUBLIC,
                                 "Sec-Fetch-Site": "same-origin"}))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert kit.job(job_id)["state"] == "queued"


def test_session_user_api_writes_need_same_origin_and_csrf(kit: Kit) -> None:
    """A logged-in browser: cross-site refused (403), no token refused (400), the token
    from the same origin accepted."""
    pause(kit)
    c = kit.app.test_client()
    assert login(c).status_code == 302
    token = api_token(c)
    r = c.post("/api/v1/controls/resume", json={},
               headers={"X-CSRF-Token": token, "Origin": EVIL})
    assert r.status_code == 403 and r.get_json()["error"] == "cross_site_request"
    r = c.post("/api/v1/controls/resume", json={}, headers={"Origin": PUBLIC})
    assert r.status_code == 400 and r.get_json()["error"] == "csrf_failed"
    assert paused(kit)
    r = c.post("/api/v1/controls/resume", json={},
               headers={"X-CSRF-Token": token, "Origin": "http://localhost"},
               environ_base={"HTTP_HOST": "localhost"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert not paused(kit)


def test_bearer_tokens_need_no_csrf(kit: Kit) -> None:
    """API tokens are exempt: a browser never sends them on its own."""
    pause(kit)
    r = kit.app.test_client().post("/api/v1/controls/resume", json={}, headers=OP)
    assert r.status_code == 200 and not paused(kit)


def test_page_forms_refuse_other_origins(kit: Kit) -> None:
    """A page form with a valid CSRF token is still refused when Origin names another site,
    for a session user and a proxy user."""
    pause(kit)
    c = kit.app.test_client()
    login(c)
    token = form_token(c, "/incidents")
    r = c.post("/controls", data={"action": "resume", "csrf_token": token},
               headers={"Origin": EVIL})
    assert r.status_code == 403 and r.get_json()["error"] == "cross_site_request"
    p = kit.app.test_client()
    ptoken = form_token(p, "/incidents", **proxy("bob"))
    r = p.post("/controls", data={"action": "resume", "csrf_token": ptoken},
               **proxy("bob", **{"Sec-Fetch-Site": "same-site"}))
    assert r.status_code == 403
    assert paused(kit)
    r = p.post("/controls", data={"action": "resume", "csrf_token": ptoken},
               **proxy("bob", Origin=PUBLIC))
    assert r.status_code == 302 and not paused(kit)


ODD_ORIGINS = [PUBLIC + ".evil.net", PUBLIC + ":444", "http://remediator.example.test",
               "https://remediator.example.test@evil.net", PUBLIC + "/", "null", ""]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=80),
                 st.from_regex(r"https?://[a-zA-Z0-9.:@-]{1,40}", fullmatch=True),
                 st.sampled_from(ODD_ORIGINS)))
@example("https://REMEDIATOR.example.test:443")
@example("http://localhost:80")
def test_any_other_origin_is_refused(kit: Kit, origin: str) -> None:
    """Whatever the Origin header says, an API write by a proxy user goes through only when
    it names this site (public_url or the request's own host), and never answers 5xx."""
    c = kit.app.test_client()
    token = api_token(c, **proxy("bob"))
    try:
        r = c.post("/api/v1/controls/pause", json={"reason": "p"},
                   **proxy("bob", **{"X-CSRF-Token": token, "Origin": origin}))
    except ValueError:  # werkzeug refuses header values with newlines before we see them
        return
    own = origin.strip().lower() in (PUBLIC, PUBLIC + ":443", "http://localhost",
                                     "http://localhost:80")
    assert r.status_code == (200 if own else 403), (origin, r.get_data(as_text=True))


# -- login limits ---------------------------------------------------------------------------
def test_failed_logins_are_limited_per_user(kit: Kit, clock: Clock) -> None:
    """Five wrong passwords for one user (from five addresses), then 429 with Retry-After,
    even with the right password; the window ending lets the user in again."""
    c = kit.app.test_client()
    for i in range(5):
        assert login(c, "alice", "wrong", addr=f"10.0.0.{i}").status_code == 401
    r = login(c, "alice", PASSWORD, addr="10.0.1.1")
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60
    assert login(c, "bob", PASSWORD, addr="10.0.1.1").status_code == 302, "others still log in"
    clock.advance(minutes=15, seconds=1)
    assert login(c, "alice", PASSWORD, addr="10.0.1.1").status_code == 302


def test_failed_logins_are_limited_per_address(store: Store, clock: Clock,
                                               tmp_path: Path) -> None:
    """One address guessing many user names is stopped at people.login_limits.address_failures."""
    kit = make_kit(store, clock, tmp_path, login_limits={"address_failures": 3})
    c = kit.app.test_client()
    for name in ("alice", "bob", "nobody"):
        assert login(c, name, "wrong", addr="10.5.5.5").status_code == 401
    r = login(c, "carol", PASSWORD, addr="10.5.5.5")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert login(c, "carol", PASSWORD, addr="10.5.5.6").status_code == 302


def test_login_limit_holds_across_workers(store: Store, clock: Clock, tmp_path: Path) -> None:
    """Two app instances on one store (two gunicorn workers, or two replicas) share the count."""
    a = make_kit(store, clock, tmp_path).app.test_client()
    b = create_app(make_kit(store, clock, tmp_path).config, store=store,
                   clock=clock).test_client()
    for i in range(5):
        assert login(a if i % 2 else b, "bob", "wrong", addr=f"10.1.1.{i}").status_code == 401
    assert login(a, "bob", PASSWORD).status_code == 429
    assert login(b, "bob", PASSWORD).status_code == 429


def test_failed_logins_are_audited_in_aggregate(kit: Kit, clock: Clock) -> None:
    """Thirty wrong guesses from one address leave three audit entries (the first failure,
    the user limit reached, the address limit reached), with counts and without the
    password; the next window's first entry counts the attempts of the one before."""
    c = kit.app.test_client()
    for _ in range(30):
        login(c, "alice", "hunter2-guess", addr="10.7.7.7")
    failed = kit.store.audit(AuditFilter(action="auth.login_failed"))
    limited = kit.store.audit(AuditFilter(action="auth.login_limited"))
    assert len(failed) == 1 and failed[0]["details"]["user_attempts"] == 1
    assert [(e["details"]["limit"], e["details"]["failures"]) for e in limited] == \
        [("user", 5), ("address", 20)]
    assert "hunter2" not in str(failed + limited)
    clock.advance(minutes=16)
    login(c, "alice", "hunter2-guess", addr="10.7.7.7")
    again = kit.store.audit(AuditFilter(action="auth.login_failed"))
    assert len(again) == 2
    assert again[-1]["details"]["previous_window_user_attempts"] == 30
    assert again[-1]["details"]["previous_window_address_attempts"] == 30


def test_a_spray_of_failed_logins_cannot_fill_the_audit_log(store: Store, clock: Clock,
                                                           tmp_path: Path) -> None:
    """Failures spread over many names and addresses stop being audited at
    login_limits.audited_failures per window (one entry says so); they are still counted."""
    kit = make_kit(store, clock, tmp_path, login_limits={"audited_failures": 10})
    c = kit.app.test_client()
    for i in range(40):
        assert login(c, f"guess{i}", "x", addr=f"10.8.{i}.1").status_code == 401
    actions = [e["action"] for e in kit.store.audit(AuditFilter(limit=500))
               if e["action"].startswith("auth.")]
    assert actions == ["auth.login_failed"] * 9 + ["auth.login_failures_unaudited"]
    for _ in range(5):
        login(c, "alice", "x", addr="10.9.0.1")
    assert login(c, "alice", PASSWORD, addr="10.9.0.2").status_code == 429, "still limited"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
@example("alice\x00")
@example("ALICE")
@example("a" * 300)
def test_hostile_user_names_never_break_login(kit: Kit, name: str) -> None:
    """Any user name answers 401 or 429, never 5xx, and logs nobody in."""
    c = kit.app.test_client()
    r = login(c, name, "wrong", addr="10.3.3.3")
    assert r.status_code in (401, 429)


def test_unknown_users_are_checked_with_the_configured_hash_method(kit: Kit) -> None:
    """The dummy hash for unknown users uses the same method and cost as the real ones
    (here the tests' pbkdf2:sha256:1000, not a dearer or cheaper default)."""
    checker = kit.app.extensions[PASSWORDS_EXTENSION]
    assert checker.method == "pbkdf2:sha256:1000"
    assert checker._dummy.startswith("pbkdf2:sha256:1000$")
    assert checker.check("alice", PASSWORD) and not checker.check("mallory", PASSWORD)


# -- sessions ---------------------------------------------------------------------------------
def test_a_cookie_saved_before_logout_no_longer_works(kit: Kit) -> None:
    """Logout ends the session on the server: replaying the old cookie gets the login form."""
    c = kit.app.test_client()
    assert login(c).status_code == 302
    saved = c.get_cookie("remediator_session").value
    token = form_token(c, "/incidents")
    assert c.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = kit.app.test_client()
    replay.set_cookie("remediator_session", saved)
    r = replay.get("/incidents")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert replay.get("/api/v1/incidents").status_code == 401
    assert [e["action"] for e in kit.store.audit(AuditFilter(action="auth.logout"))] == \
        ["auth.logout"]


def test_a_password_change_ends_every_session_of_that_user(store: Store, clock: Clock,
                                                           tmp_path: Path) -> None:
    """Two browsers logged in as alice, one as bob; alice's hash changes in the config (a
    restart): both of alice's sessions end at their next request, bob's goes on."""
    kit = make_kit(store, clock, tmp_path)
    a1, a2, b = (kit.app.test_client() for _ in range(3))
    for client, user in ((a1, "alice"), (a2, "alice"), (b, "bob")):
        assert login(client, user).status_code == 302
    users = {n: p.model_dump() for n, p in kit.config.people.users.items()}
    users["alice"]["password_hash"] = generate_password_hash(
        "a new password", method="pbkdf2:sha256:1000")
    restarted = make_kit(store, clock, tmp_path, users=users).app
    for client in (a1, a2, b):
        client.application = restarted
    assert a1.get("/incidents").status_code == 302
    assert a2.get("/incidents").status_code == 302
    assert b.get("/incidents").status_code == 200
    revoked = store.audit(AuditFilter(action="auth.sessions_revoked"))
    assert len(revoked) == 1 and revoked[0]["details"] == {"reason": "password changed",
                                                           "sessions": 2}


def test_a_removed_user_loses_the_session(store: Store, clock: Clock, tmp_path: Path) -> None:
    """A user taken out of the config is logged out at the next request."""
    kit = make_kit(store, clock, tmp_path)
    c = kit.app.test_client()
    login(c, "carol")
    users = {n: p.model_dump() for n, p in kit.config.people.users.items() if n != "carol"}
    c.application = make_kit(store, clock, tmp_path, users=users).app
    assert c.get("/incidents").status_code == 302
    assert store.audit(AuditFilter(action="auth.sessions_revoked"))[0]["details"]["reason"] \
        == "user removed from the configuration"


def test_sessions_expire_on_the_server(kit: Kit, clock: Clock) -> None:
    """A session past people.session_lifetime is refused whatever the cookie says."""
    c = kit.app.test_client()
    login(c)
    assert c.get("/incidents").status_code == 200
    clock.advance(hours=12, seconds=1)
    assert c.get("/incidents").status_code == 302


def test_login_gives_a_new_session_and_a_new_csrf_token(kit: Kit) -> None:
    """Session fixation and CSRF: the cookie and the token from before login do not carry
    over; a second login ends the first session."""
    c = kit.app.test_client()
    before_token = form_token(c, "/login")
    before_cookie = c.get_cookie("remediator_session").value
    login(c)
    first = c.get_cookie("remediator_session").value
    assert first != before_cookie
    r = c.post("/controls", data={"action": "pause", "csrf_token": before_token})
    assert r.status_code == 400 and not paused(kit)
    token = form_token(c, "/incidents")
    assert token != before_token
    login(c, "alice")
    assert c.get_cookie("remediator_session").value != first
    stale = kit.app.test_client()
    stale.set_cookie("remediator_session", first)
    assert stale.get("/incidents").status_code == 302
    r = c.post("/controls", data={"action": "pause", "csrf_token": token})
    assert r.status_code == 400, "the token of the ended session is refused"


def test_a_request_without_cookies_gets_no_session_cookie(kit: Kit) -> None:
    """The webhook and API clients send no cookie: they get neither a session cookie nor
    ``Vary: Cookie``; a page that writes the session (the login form's CSRF token) still
    sets one, and a client that sends it back is the same session."""
    c = kit.app.test_client(use_cookies=False)
    r = c.post("/api/v1/alerts", json=make_notification([make_alert()]),
               headers={"Authorization": "Bearer " + os.environ["REMEDIATOR_TEST_TOKEN"]})
    assert r.status_code == 200, r.get_json()
    assert "Set-Cookie" not in r.headers and "Cookie" not in r.headers.get("Vary", "")
    page = c.get("/login")
    assert "remediator_session=" in page.headers["Set-Cookie"]
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    again = c.get("/login", headers={"Cookie": cookie})
    assert form_token_of(again) == form_token_of(page), "the session came back from the cookie"
    assert "Set-Cookie" not in again.headers


# -- the audit log ------------------------------------------------------------------------------
def test_approval_link_tokens_stay_out_of_the_audit_log(kit: Kit) -> None:
    """Deciding through a link, and a refused tampered link, record the route with the
    token's short digest, never the token."""
    job_id = parked_job(kit)
    with kit.store.unit(write=False) as uow:
        approval = uow.approvals.for_job(job_id)
    assert approval is not None
    links = approval_links(kit.config, approval)
    token = links["bob"].rsplit("/", 1)[1]
    c = kit.app.test_client()
    login(c, "bob")
    form = form_token(c, f"/approvals/{token}")
    r = c.post(f"/approvals/{token}", data={"decision": "approve", "csrf_token": form})
    assert r.status_code == 200
    c.get(f"/approvals/{token[:-3]}xyz")
    entries = kit.store.audit(AuditFilter(limit=500))
    dump = str(entries)
    assert token not in dump and token[:-3] not in dump
    paths = {e["origin"].get("path") for e in entries if e.get("origin")}
    assert any(p and re.fullmatch(r"/approvals/~[0-9a-f]{12}", p) for p in paths), paths


# -- --insecure-no-auth -------------------------------------------------------------------------
def test_insecure_no_auth_warning_says_what_is_open(store: Store, clock: Clock,
                                                    tmp_path: Path) -> None:
    """The warning names the webhook as open and the API and pages as still closed, and that
    is what the app does: an unauthenticated webhook post is stored, the API answers 401
    and pages ask for a login."""
    kit = Kit(store, clock, [], people=people(), data_dir=str(tmp_path / "d"),
              server={"secure_cookies": False})
    with structlog.testing.capture_logs() as logs:
        app = create_app(kit.config, store=store, clock=clock, insecure_no_auth=True)
    warning = next(e for e in logs if e["event"] == "insecure_no_auth")["detail"]
    assert warning == INSECURE_NO_AUTH_WARNING
    assert "webhook" in warning and "unauthenticated" in warning
    assert "the JSON API and the pages still need an operator" in warning
    assert "API are unauthenticated" not in warning
    c = app.test_client()
    assert c.post("/api/v1/alerts", json=make_notification([make_alert()])).status_code == 200
    assert c.get("/api/v1/incidents").status_code == 401
    assert c.post("/api/v1/controls/pause", json={}).status_code == 401
    assert c.get("/incidents").status_code == 302


def test_serve_prints_the_same_warning(tmp_path: Path) -> None:
    """``remediator serve --insecure-no-auth`` prints the exact warning (the store here is
    unreachable, so it stops right after)."""
    cfg = tmp_path / "r.yml"
    cfg.write_text(f"data_dir: {tmp_path}\nstore:\n  url: postgresql://postgres@127.0.0.1:9/x\n"
                   "  connect_timeout: 1s\n")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    r = subprocess.run([sys.executable, "-m", "receiver", "serve", "-c", str(cfg),
                        "--insecure-no-auth"], capture_output=True, text=True, timeout=60,
                       env=env, check=False)
    assert f"WARNING: {INSECURE_NO_AUTH_WARNING}" in r.stderr
    assert "webhook and API are unauthenticated" not in r.stderr
    assert r.returncode != 0
