"""Pages and approval links through the Flask test client: auth, CSRF, single use, refusals,
escaping. (The same flows run in a real browser in tests/browser.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.incidents.lifecycle import ACTIONS
from receiver.people.tokens import approval_links
from receiver.store import Store
from receiver.store import approvals as approval_store
from tests.conftest import OP_TOKEN, PASSWORD, READ_TOKEN, TOKEN, Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@pytest.fixture
def web(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)
    kit = Kit(store, clock,
              [rule(approval={"mode": "required", "approvers": 2, "groups": ["dba"]})],
              people=people(), auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False})
    kit.app = create_app(kit.config, store=store, clock=clock)
    return kit


def browser(kit: Any) -> Any:
    return kit.app.test_client()


def csrf(client: Any, path: str) -> str:
    page = client.get(path)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert m, page.get_data(as_text=True)[:500]
    return m.group(1)


def login(client: Any, user: str = "alice", password: str = PASSWORD) -> Any:
    token = csrf(client, "/login")
    return client.post("/login", data={"username": user, "password": password,
                                       "csrf_token": token})


def parked_job(kit: Any, labels: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    lbl = {"container": "web1", "instance": "web1"} | (labels or {})
    kit.fire(make_notification([make_alert(labels=lbl)], group_key="g-web"))
    kit.drain()
    job_id = kit.jobs()[0]["id"]
    with kit.store.unit(write=False) as uow:
        approval = uow.approvals.for_job(job_id)
        job = uow.jobs.get(job_id)
    assert approval is not None and job is not None
    return job_id, approval_links(kit.config, approval)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_pages_need_login(web: Any) -> None:
    """Without a session every page redirects to the login form."""
    c = browser(web)
    for path in ("/incidents", "/incidents/1", "/audit"):
        r = c.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_wrong_password_is_refused_and_audited(web: Any) -> None:
    """A failed login answers 401 and leaves an audit entry without the password."""
    c = browser(web)
    r = login(c, "alice", "wrong")
    assert r.status_code == 401
    entries = web.store.audit(__import__("receiver.store", fromlist=["AuditFilter"]).AuditFilter(
        action="auth.login_failed"))
    assert len(entries) == 1 and "wrong" not in str(entries[0])


def test_login_then_incidents_list(web: Any) -> None:
    """After logging in, the list shows incidents; the session cookie is HttpOnly and SameSite."""
    web.fire(make_notification([make_alert(labels={"container": "web1"})]))
    c = browser(web)
    r = login(c)
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = c.get("/incidents").get_data(as_text=True)
    assert "AppDown" in page and "#1" in page


def test_secure_cookie_by_default(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    """With the default config the session cookie is marked Secure."""
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)
    kit = Kit(store, clock, [], people=people(), data_dir=str(tmp_path),
              auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"})
    c = create_app(kit.config, store=store, clock=clock).test_client()
    r = login(c)
    assert "Secure" in r.headers["Set-Cookie"]


def test_post_without_csrf_is_refused(web: Any) -> None:
    """A state-changing form without the CSRF token is refused and changes nothing."""
    inc = web.fire(make_notification([make_alert(labels={"container": "web1"})])).incident_id
    c = browser(web)
    login(c)
    r = c.post(f"/incidents/{inc}/action", data={"action": "acknowledge"})
    assert r.status_code == 400
    assert web.store.get_incident(inc)["state"] == "open"


def test_get_of_an_approval_link_changes_nothing(web: Any) -> None:
    """A plain GET of the link (a mail scanner, a chat unfurler) leaves the approval pending."""
    job_id, links = parked_job(web)
    anonymous = browser(web)
    assert anonymous.get(path_of(links["alice"])).status_code == 302  # to the login page
    c = browser(web)
    login(c)
    page = c.get(path_of(links["alice"]))
    assert page.status_code == 200 and "poke web1" in page.get_data(as_text=True)
    c.get(path_of(links["alice"]))
    assert web.job(job_id)["state"] == "awaiting_approval"
    with web.store.db.transaction(write=False) as tx:
        approval = approval_store.for_job(tx, job_id)
        assert approval_store.votes(tx, approval["id"]) == []


def test_two_approvers_through_their_links(web: Any) -> None:
    """Alice approves (1/2), her link then says she already decided; Bob's approval runs it."""
    job_id, links = parked_job(web)
    a = browser(web)
    login(a, "alice")
    path = path_of(links["alice"])
    r = a.post(path, data={"decision": "approve", "csrf_token": csrf(a, path)})
    assert r.status_code == 200 and "1/2" in r.get_data(as_text=True)
    again = a.get(path).get_data(as_text=True)
    assert "You already approved" in again and 'id="approve"' not in again
    b = browser(web)
    login(b, "bob")
    path_b = path_of(links["bob"])
    r = b.post(path_b, data={"decision": "approve", "csrf_token": csrf(b, path_b)})
    assert r.status_code == 200 and web.job(job_id)["state"] == "queued"
    replay = b.post(path_b, data={"decision": "approve", "csrf_token": csrf(b, path_b)})
    assert replay.status_code == 409 and "Already decided" in replay.get_data(as_text=True)
    web.drain()
    assert web.job(job_id)["state"] == "succeeded"


def test_deny_needs_a_reason(web: Any) -> None:
    """Deny without a reason is refused; with one, the job is denied and the reason kept."""
    job_id, links = parked_job(web)
    c = browser(web)
    login(c, "bob")
    path = path_of(links["bob"])
    assert c.post(path, data={"decision": "deny", "reason": " ",
                              "csrf_token": csrf(c, path)}).status_code == 400
    r = c.post(path, data={"decision": "deny", "reason": "wrong container",
                           "csrf_token": csrf(c, path)})
    assert r.status_code == 200 and web.job(job_id)["state"] == "denied"
    assert "wrong container" in web.job(job_id)["reason"]


@pytest.mark.parametrize("mangle", [lambda t: t[:-3], lambda t: t[:20],
                                    lambda t: "x" + t[1:], lambda t: t + "A"])
def test_tampered_or_truncated_token_is_refused(web: Any, mangle: Any) -> None:
    """A link whose token was altered is refused with 403 and audited."""
    job_id, links = parked_job(web)
    c = browser(web)
    login(c, "alice")
    prefix, token = links["alice"].rsplit("/", 1)
    r = c.get(f"/approvals/{mangle(token)}")
    assert r.status_code == 403 and "not valid" in r.get_data(as_text=True)
    from receiver.store import AuditFilter

    assert web.store.audit(AuditFilter(action="approval.refused"))
    assert web.job(job_id)["state"] == "awaiting_approval"


def test_expired_link_is_refused(web: Any, clock: Clock) -> None:
    """After the approval's expiry the link answers 410 and cannot decide."""
    job_id, links = parked_job(web)
    clock.advance(minutes=31)
    c = browser(web)
    login(c, "alice")
    path = path_of(links["alice"])
    assert c.get(path).status_code == 410
    token = csrf(c, "/incidents")
    assert c.post(path, data={"decision": "approve", "csrf_token": token}).status_code == 410
    assert web.job(job_id)["state"] == "awaiting_approval"


def test_link_of_another_approver_cannot_decide(web: Any) -> None:
    """Bob logged in with Alice's link sees a refusal and cannot decide; it is audited."""
    job_id, links = parked_job(web)
    c = browser(web)
    login(c, "bob")
    path = path_of(links["alice"])
    page = c.get(path).get_data(as_text=True)
    assert "belongs to alice" in page and 'id="approve"' not in page
    token = csrf(c, "/incidents")
    r = c.post(path, data={"decision": "approve", "csrf_token": token})
    assert r.status_code == 403 and web.job(job_id)["state"] == "awaiting_approval"


def test_approver_outside_the_group_gets_no_link_and_is_refused(web: Any) -> None:
    """Carol (group web) gets no link for a dba approval, and the API refuses her vote."""
    job_id, links = parked_job(web)
    assert sorted(links) == ["alice", "bob"]
    from receiver.people.approvals import DecisionError, decide_job

    with pytest.raises(DecisionError, match="not in an approving group"):
        decide_job(web.store, web.config, job_id, approve=True, user="carol", reason="",
                   now=web.clock())


def test_labels_with_html_render_inert_everywhere(web: Any) -> None:
    """Script and attribute-breaking payloads in labels and annotations are escaped on every page."""
    inc = web.fire(make_notification([make_alert(
        labels={"container": "web1", "evil": XSS}, annotations={"summary": XSS})],
        group_key="g-xss", commonAnnotations={"summary": XSS})).incident_id
    web.drain()
    c = browser(web)
    login(c)
    with web.store.db.transaction(write=False) as tx:
        job = tx.fetchone("SELECT id FROM jobs ORDER BY id LIMIT 1")
    pages = ["/incidents", f"/incidents/{inc}", "/audit"]
    if job is not None:
        with web.store.unit(write=False) as uow:
            approval = uow.approvals.for_job(job["id"])
        if approval is not None:
            pages.append(path_of(approval_links(web.config, approval)["alice"]))
    for path in pages:
        html = c.get(path).get_data(as_text=True)
        assert "<script>alert(1)" not in html, path
        assert "<img src=x" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get(f"/incidents/{inc}").get_data(
        as_text=True)


def test_pages_send_security_headers(web: Any) -> None:
    """Pages forbid framing and inline script through CSP and nosniff."""
    c = browser(web)
    r = c.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and r.headers["X-Frame-Options"] == "DENY"


def test_closing_a_p1_needs_a_postmortem(web: Any) -> None:
    """Close is refused for a P1 until a post-mortem is saved on it."""
    inc = web.fire(make_notification([make_alert(labels={"container": "zz"})],
                                      group_key="g-close")).incident_id
    c = browser(web)
    login(c)

    def act(**data: str) -> Any:
        return c.post(f"/incidents/{inc}/action",
                      data={**data, "csrf_token": csrf(c, f"/incidents/{inc}")})

    assert act(action="resolve", text="fixed by hand").status_code == 200
    r = act(action="close")
    assert r.status_code == 409 and "post-mortem" in r.get_data(as_text=True)
    assert act(action="postmortem", text="# Root cause\nA bad deploy.").status_code == 200
    assert act(action="close").status_code == 200
    assert web.store.get_incident(inc)["state"] == "closed"


def test_pause_and_resume_from_the_page(web: Any) -> None:
    """The kill switch form pauses remediation (banner shown) and resumes it; both audited."""
    c = browser(web)
    login(c)
    c.post("/controls", data={"action": "pause", "reason": "deploy freeze",
                              "csrf_token": csrf(c, "/incidents")})
    assert "paused-banner" in c.get("/incidents").get_data(as_text=True)
    c.post("/controls", data={"action": "resume", "reason": "done",
                              "csrf_token": csrf(c, "/incidents")})
    assert "paused-banner" not in c.get("/incidents").get_data(as_text=True)
    from receiver.store import AuditFilter

    values = [e["details"]["value"] for e in web.store.audit(AuditFilter(action="control.set"))]
    assert values == ["true", "false"]


def test_open_redirect_is_refused(web: Any) -> None:
    """The login form's next parameter never leads off-site."""
    c = browser(web)
    token = csrf(c, "/login")
    r = c.post("/login?next=//evil.example/x", data={"username": "alice", "password": PASSWORD,
                                                     "csrf_token": token})
    assert r.headers["Location"].endswith("/incidents")


def test_incident_page_offers_eligible_approvers_their_own_link(web: Any) -> None:
    """Alice (dba) sees a review link for the pending approval that is hers; Carol (web)
    does not; following Alice's link shows the plan."""
    job_id, _ = parked_job(web)
    inc = web.job(job_id)["incident_id"]
    a = browser(web)
    login(a, "alice")
    page = a.get(f"/incidents/{inc}").get_data(as_text=True)
    m = re.search(r'class="review-approval" href="([^"]+)"', page)
    assert m and "poke web1" in a.get(m.group(1)).get_data(as_text=True)
    c = browser(web)
    login(c, "carol")
    assert "review-approval" not in c.get(f"/incidents/{inc}").get_data(as_text=True)


# -- form models: a field that names a choice takes only that choice -------------------------

CHOICE_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)


def _form_error(r: Any) -> list[str]:
    """The fields a 4xx JSON ``invalid_form`` answer names."""
    assert 400 <= r.status_code < 500 and r.is_json, (r.status_code, r.data[:300])
    assert r.get_json()["error"] == "invalid_form", r.get_json()
    return [d["field"] for d in r.get_json()["detail"]]


@pytest.mark.parametrize("action", ["", "unpause", "Resume", "pause ", "resume\x00"])
def test_kill_switch_form_refuses_anything_but_pause_and_resume(web: Any, action: str) -> None:
    """A kill-switch form whose action is neither pause nor resume (or missing) is a 400 JSON
    answer naming ``action``, and the switch stays as it was (it used to resume)."""
    c = browser(web)
    login(c)
    c.post("/controls", data={"action": "pause", "reason": "freeze",
                              "csrf_token": csrf(c, "/incidents")})
    data = {"csrf_token": csrf(c, "/incidents"), "reason": "x"}
    if action:
        data["action"] = action
    assert _form_error(c.post("/controls", data=data)) == ["action"]
    assert "paused-banner" in c.get("/incidents").get_data(as_text=True)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decision=CHOICE_TEXT.filter(lambda v: v not in ("approve", "deny")),
       action=CHOICE_TEXT.filter(lambda v: v not in (*ACTIONS, "diagnose")))
@example(decision="deny ", action="ack")
@example(decision="Approve", action="")
def test_decision_and_incident_forms_refuse_unknown_choices(web: Any, decision: str,
                                                            action: str) -> None:
    """An approval form whose decision is neither approve nor deny, and an incident form
    whose action is none of the page's, are 400 JSON answers naming the field; no vote is
    cast and the incident is unchanged."""
    if not hasattr(web, "parked"):
        web.parked = parked_job(web)
        web.browser = browser(web)
        login(web.browser)
    job_id, links = web.parked
    c = web.browser
    path = path_of(links["alice"])
    r = c.post(path, data={"decision": decision, "reason": "because",
                           "csrf_token": csrf(c, path)})
    assert _form_error(r) == ["decision"]
    inc = web.job(job_id)["incident_id"]
    r = c.post(f"/incidents/{inc}/action", data={"action": action, "text": "t",
                                                  "csrf_token": csrf(c, f"/incidents/{inc}")})
    assert _form_error(r) == ["action"]
    assert web.job(job_id)["state"] == "awaiting_approval"
    with web.store.unit(write=False) as uow:
        approval = uow.approvals.for_job(job_id)
        assert approval is not None and uow.approvals.votes(approval.id) == []
        found = uow.incidents.detail(inc)
        assert found is not None and found.state == "open" and not found.acknowledged_at
