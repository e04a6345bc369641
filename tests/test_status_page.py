"""The public status page: nothing from an alert is published by itself, components follow
the worst open public incident unless overridden, the first post can need a second
operator, every change is audited, and /status, /status.json and the Atom feed show nothing
internal. (Who may write, and bad input: tests/test_status_page_access.py.)"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from xml.etree import ElementTree as ET  # noqa: S405 - parses our own feed in tests

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.store import AuditFilter, Store, open_store
from tests.conftest import OP, OP_TOKEN, Clock
from tests.status_kit import (
    ATOM,
    BOB,
    BOB_TOKEN,
    CAROL,
    CAROL_TOKEN,
    Site,
    make_site,
    validate_summary,
)


@pytest.fixture
def site(store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    return make_site(store, clock, tmp_path, monkeypatch)


@pytest.fixture
def approving_site(store: Store, clock: Clock, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Site:
    return make_site(store, clock, tmp_path, monkeypatch, approval={"first_post": True})


# -- nothing by itself ---------------------------------------------------------------------------

def test_an_alert_alone_publishes_nothing(site: Site) -> None:
    """A firing P0 alert on a component's service changes nothing public: no incident, the
    components operational, an empty feed."""
    site.fire({"service": "api", "severity": "critical"}, alertname="ApiDownHard")
    data = site.summary()
    validate_summary(data)
    assert data["incidents"] == []
    assert {c["status"] for c in data["components"]} == {"operational"}
    assert data["status"] == {"indicator": "none", "description": "All Systems Operational"}
    page, _, feed = site.public_texts()
    assert "ApiDownHard" not in page and "<entry" not in feed
    assert "All Systems Operational" in page


def test_a_public_update_shows_the_operators_title_and_moves_its_component(site: Site) -> None:
    """After an operator's update the incident appears under the operator's title, and the
    component its alert matches follows its severity (critical: P1, partial outage)."""
    inc = site.fire({"service": "api"}, alertname="ApiErrors")
    r = site.post(inc, title="Elevated API errors", status="investigating",
                  body="Some requests fail; we are looking into it.")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["published"] is True
    data = site.summary()
    validate_summary(data)
    [incident] = data["incidents"]
    assert incident["name"] == "Elevated API errors" and incident["impact"] == "major"
    assert [u["body"] for u in incident["incident_updates"]] == [
        "Some requests fail; we are looking into it."]
    assert [c["name"] for c in incident["components"]] == ["Public API"]
    assert site.component("Public API")["status"] == "partial_outage"
    assert site.component("Web app")["status"] == "operational"
    assert data["status"]["indicator"] == "major"
    assert "status.update_published" in site.audit_actions()


def test_worst_incident_wins_and_resolving_gives_the_component_back(site: Site) -> None:
    """Two public incidents on one component: it shows the worse one (P0 major outage);
    once that one is resolved publicly it shows the other, and the resolved incident moves
    to the page's resolved list and out of the summary's incidents."""
    warn = site.fire({"service": "web", "severity": "warning"}, alertname="WebSlow")
    page = site.fire({"service": "web", "severity": "critical", "priority": "P0"},
                     alertname="WebDown")
    with site.store.db.transaction() as tx:  # the severity rules are not under test here
        tx.execute("UPDATE incidents SET severity = 'P0' WHERE id = :id", {"id": page})
    assert site.post(warn, title="Slow pages", status="identified", body="Slow.").status_code == 200
    assert site.post(page, title="Web app down", status="investigating",
                     body="Down.").status_code == 200
    assert site.component("Web app")["status"] == "major_outage"
    assert site.summary()["status"]["indicator"] == "critical"
    assert site.post(page, status="resolved", body="Back up.").status_code == 200
    assert site.component("Web app")["status"] == "degraded_performance"
    data = site.summary()
    assert [i["name"] for i in data["incidents"]] == ["Slow pages"]
    html = site.client.get("/status").get_data(as_text=True)
    resolved = html.split('id="resolved"', 1)[1]
    assert "Web app down" in resolved and "Back up." in resolved
    assert site.post(warn, status="resolved", body="Fast again.").status_code == 200
    assert site.component("Web app")["status"] == "operational"


# -- nothing internal ----------------------------------------------------------------------------

HOSTILE_LABELS = {
    "service": "api",
    "instance": "db-primary-7.internal.corp:5432",
    "host": "secret-host-42.prod.internal",
    "job": "<script>alert('label')</script>",
    "customer": "ACME-INTERNAL-CUSTOMER-ID-991",
}
HOSTILE_ANNOTATIONS = {
    "summary": "Connection refused on db-primary-7.internal.corp",
    "description": "<img src=x onerror=alert(1)> password=hunter2hunter2",
    "runbook_url": "https://wiki.internal.corp/runbooks/db",
}


def test_hostile_labels_show_nothing_internal(site: Site) -> None:
    """Label values, host names and annotations of an incident's alerts appear nowhere in
    /status, /status.json or the feed; the operator's own markup is escaped."""
    inc = site.fire(HOSTILE_LABELS, HOSTILE_ANNOTATIONS, alertname="InternalAlertName99")
    r = site.post(inc, title="<b>API</b> trouble & \"retries\"", status="investigating",
                  body="We see errors <script>x()</script> on the API.")
    assert r.status_code == 200
    assert site.post(inc, status="monitoring", body="A fix is out.").status_code == 200
    page, summary_text, feed = site.public_texts()
    secrets = [*HOSTILE_LABELS.values(), *HOSTILE_ANNOTATIONS.values(), "InternalAlertName99",
               "db-primary-7", "secret-host-42", "hunter2", "wiki.internal", "alice"]
    for text in (page, summary_text, feed):
        for value in secrets:
            if value == "api":
                continue  # the component's matcher value, also a word of the operator's text
            assert value not in text
    assert "<script>x()</script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<b>API</b>" not in page and "&lt;b&gt;API&lt;/b&gt;" in page
    assert "<script>" not in feed and "&lt;script&gt;x()&lt;/script&gt;" in feed
    assert site.summary()["incidents"][0]["name"] == "<b>API</b> trouble & \"retries\""


_label_value = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=0, max_size=40)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(_label_value, min_size=1, max_size=4))
@example(values=["<", "&amp;", "]]>", "\u2028"])
def test_generated_label_values_never_reach_the_public_views(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        values: list[str]) -> None:
    """Whatever an alert's labels and annotations hold, each value (tagged so it cannot be
    mistaken for page text) is absent from the page, the summary and the feed, also once
    the incident is public."""
    monkeypatch.setenv("RM_STATUS_BOB_TOKEN", BOB_TOKEN)
    monkeypatch.setenv("RM_STATUS_CAROL_TOKEN", CAROL_TOKEN)
    tmp = tmp_path_factory.mktemp("status-hyp")
    store = open_store(f"sqlite:///{tmp}/remediator.db")
    store.migrate()
    try:
        site = Site(store, Clock(), tmp)
        tag = f"LEAK{uuid.uuid4().hex[:10]}"
        labels = {"service": "api"} | {f"l{i}": f"{tag}{v}" for i, v in enumerate(values)}
        annotations = {f"a{i}": f"{v}{tag}" for i, v in enumerate(values)}
        inc = site.fire(labels, annotations, alertname=f"{tag}Alert")
        assert all(tag not in t for t in site.public_texts())
        assert site.post(inc, title="API trouble", status="identified",
                         body="Working on it.").status_code == 200
        texts = site.public_texts()
        assert "API trouble" in texts[0]
        assert all(tag not in t for t in texts)
    finally:
        store.close()


# -- the summary's shape and the feed ------------------------------------------------------------

def test_summary_json_has_the_statuspage_shape(site: Site) -> None:
    """/status.json validates against the Statuspage summary schema, with an incident with
    two updates (newest first), an override and the overall status."""
    inc = site.fire({"service": "api", "team": "payments"})
    site.post(inc, title="Payment delays", status="identified", body="First.")
    site.post(inc, status="monitoring", body="Second.")
    r = site.client.post("/api/v1/status/overrides", headers=OP,
                         json={"component": "Web app", "status": "under_maintenance",
                               "reason": "planned work"})
    assert r.status_code == 200, r.get_data(as_text=True)
    data = site.summary()
    validate_summary(data)
    [incident] = data["incidents"]
    assert [u["body"] for u in incident["incident_updates"]] == ["Second.", "First."]
    assert incident["status"] == "monitoring" and incident["monitoring_at"] is not None
    assert {c["name"] for c in incident["components"]} == {"Public API", "Payments"}
    assert site.component("Web app")["status"] == "under_maintenance"
    assert data["page"]["name"] == "Example status"


def test_the_feed_is_atom_with_one_entry_per_published_update(site: Site) -> None:
    """The feed parses as Atom and lists each published update, newest first, with the
    operator's title and text."""
    inc = site.fire({"service": "api"})
    site.post(inc, title="API trouble", status="investigating", body="One.")
    site.post(inc, status="resolved", body="Two.")
    r = site.client.get("/status/feed.atom")
    assert r.status_code == 200 and r.mimetype == "application/atom+xml"
    root = ET.fromstring(r.data)  # noqa: S314 - our own output
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}content") for e in entries] == ["Two.", "One."]
    assert entries[0].findtext(f"{ATOM}title") == "API trouble: Resolved"


def test_feed_and_page_survive_any_operator_text(site: Site) -> None:
    """Control characters, CDATA ends and markup in an operator's text leave the feed
    well-formed Atom and the page escaped; a configured secret pasted in is cut from every
    public view."""
    inc = site.fire({"service": "api"})
    body = f"a\x01b\x1b]]><!-- <entry>x</entry> & {OP_TOKEN} \ufffe end"
    assert site.post(inc, title="T ]]> \x0b", status="identified", body=body).status_code == 200
    r = site.client.get("/status/feed.atom")
    root = ET.fromstring(r.data)  # noqa: S314 - our own output
    [entry] = root.findall(f"{ATOM}entry")
    content = entry.findtext(f"{ATOM}content") or ""
    assert content.startswith("ab]]><!-- <entry>x</entry> & ") and content.endswith(" end")
    for text in site.public_texts():
        assert OP_TOKEN not in text
    assert "&lt;entry&gt;" in site.client.get("/status").get_data(as_text=True)


def test_simultaneous_approvals_publish_once(approving_site: Site) -> None:
    """Two operators approving the same first post at the same instant: one publishes it,
    the other gets 409, and one approval is audited."""
    site = approving_site
    uid = site.post(site.fire({"service": "api"}), title="T", status="investigating",
                    body="x").get_json()["update_id"]
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def approve(headers: dict[str, str]) -> None:
        c = site.app.test_client()
        barrier.wait()
        answers.append(c.post(f"/api/v1/status/updates/{uid}/approve", headers=headers,
                              json={}).status_code)

    threads = [threading.Thread(target=approve, args=(h,)) for h in (BOB, CAROL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [200, 409]
    assert site.audit_actions().count("status.update_approved") == 1
    assert len(site.summary()["incidents"][0]["incident_updates"]) == 1


def test_the_page_is_static_html_that_refreshes_itself(site: Site) -> None:
    """/status has no script, a meta refresh and a viewport for phones; the public views may
    be cached briefly by proxies (nothing in them is per user)."""
    r = site.client.get("/status")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<script" not in html
    assert re.search(r'<meta http-equiv="refresh" content="60">', html)
    assert 'name="viewport"' in html
    for path in ("/status", "/status.json", "/status/feed.atom"):
        assert site.client.get(path).headers["Cache-Control"] == "public, max-age=10"


# -- approval of the first post ------------------------------------------------------------------

def test_first_post_waits_for_a_second_operator(approving_site: Site) -> None:
    """With approval.first_post the first update is not shown until another operator
    approves it; its author cannot; a second decision is refused; all are audited."""
    site = approving_site
    inc = site.fire({"service": "api"})
    r = site.post(inc, title="API trouble", status="investigating", body="Looking.")
    assert r.status_code == 200 and r.get_json()["published"] is False
    update_id = r.get_json()["update_id"]
    assert site.summary()["incidents"] == []
    assert site.component("Public API")["status"] == "operational"
    again = site.post(inc, status="identified", body="More.")
    assert again.status_code == 409
    own = site.client.post(f"/api/v1/status/updates/{update_id}/approve", headers=OP, json={})
    assert own.status_code == 403 and own.get_json()["error"] == "not_allowed"
    assert site.summary()["incidents"] == []
    ok = site.client.post(f"/api/v1/status/updates/{update_id}/approve", headers=BOB, json={})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["decided_by"] == "bob"
    assert [i["name"] for i in site.summary()["incidents"]] == ["API trouble"]
    assert site.component("Public API")["status"] == "partial_outage"
    twice = site.client.post(f"/api/v1/status/updates/{update_id}/reject", headers=BOB, json={})
    assert twice.status_code == 409
    later = site.post(inc, status="identified", body="Found it.")
    assert later.get_json()["published"] is True  # only the first post waits
    actions = site.audit_actions()
    assert {"status.update_submitted", "status.update_approved",
            "status.update_published"} <= set(actions)


def test_a_rejected_first_post_stays_unpublished(approving_site: Site) -> None:
    """A rejected first update is never shown; the next one waits for approval again."""
    site = approving_site
    inc = site.fire({"service": "api"})
    uid = site.post(inc, title="Bad title", status="investigating", body="x").get_json()["update_id"]
    r = site.client.post(f"/api/v1/status/updates/{uid}/reject", headers=BOB,
                         json={"reason": "leaks a host name"})
    assert r.status_code == 200 and r.get_json()["state"] == "rejected"
    assert site.summary()["incidents"] == [] and "Bad title" not in site.public_texts()[0]
    nxt = site.post(inc, title="API trouble", status="investigating", body="y")
    assert nxt.get_json()["published"] is False
    assert "status.update_rejected" in site.audit_actions()


# -- overrides -------------------------------------------------------------------------------------

def test_an_override_wins_over_incidents_until_cleared(site: Site) -> None:
    """An operator's override pins a component's status over its incidents; clearing it
    lets the component follow them again; both are audited with the reason."""
    inc = site.fire({"service": "api"})
    site.post(inc, title="API trouble", status="investigating", body="x")
    r = site.client.post("/api/v1/status/overrides", headers=OP,
                         json={"component": "public-api", "status": "operational",
                               "reason": "customers unaffected"})
    assert r.status_code == 200
    assert site.component("Public API")["status"] == "operational"
    r = site.client.post("/api/v1/status/overrides", headers=OP,
                         json={"component": "Public API", "status": None})
    assert r.status_code == 200 and r.get_json()["cleared"] is True
    assert site.component("Public API")["status"] == "partial_outage"
    entries = [e for e in site.store.audit(AuditFilter(limit=100))
               if e["action"].startswith("status.override")]
    assert [e["action"] for e in entries] == ["status.override_set", "status.override_cleared"]
    assert entries[0]["details"]["reason"] == "customers unaffected"
    assert entries[0]["actor"] == "user:alice"
