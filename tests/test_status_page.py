"""The public status page: nothing from an alert is published by itself, operators publish
(page form with CSRF, API with operator auth), components follow the worst open public
incident unless overridden, the first post can need a second operator, every change is
audited, and /status, /status.json and the Atom feed show nothing internal."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET  # noqa: S405 - parses our own feed in tests

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.config import ConfigError
from receiver.store import AuditFilter, Store, open_store
from tests.conftest import OP, OP_TOKEN, PASSWORD, READ, TOKEN, Clock, make_config, people
from tests.factories import make_alert, make_notification

ATOM = "{http://www.w3.org/2005/Atom}"
COMPONENTS = [
    {"name": "Public API", "description": "api.example.com", "matchers": ['service="api"']},
    {"name": "Web app", "match": {"service": "web"}},
    {"name": "Payments", "match_re": {"team": "pay.*"}},
]
BOB_TOKEN = "bob-operator-token-123456"
BOB = {"Authorization": f"Bearer {BOB_TOKEN}"}
CAROL_TOKEN = "carol-operator-token-123456"
CAROL = {"Authorization": f"Bearer {CAROL_TOKEN}"}


def status_config(tmp_path: Path, **status: Any) -> Any:
    ppl = people()
    ppl["api_tokens"]["bob"] = {"token": "env:RM_STATUS_BOB_TOKEN", "user": "bob",
                                "scope": "operator"}
    ppl["api_tokens"]["carol-ops"] = {"token": "env:RM_STATUS_CAROL_TOKEN", "user": "carol",
                                      "scope": "operator"}
    return make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, people=ppl,
                       data_dir=str(tmp_path / "data"), server={"secure_cookies": False},
                       status_page={"enabled": True, "title": "Example status",
                                    "components": COMPONENTS, **status})


class Site:
    """An app on one store, with helpers to fire alerts and read the public views."""

    def __init__(self, store: Store, clock: Clock, tmp_path: Path, **status: Any) -> None:
        self.store = store
        self.config = status_config(tmp_path, **status)
        self.app = create_app(self.config, store=store, clock=clock)
        self.client = self.app.test_client()

    def fire(self, labels: dict[str, str], annotations: dict[str, str] | None = None,
             **alert: Any) -> int:
        body = make_notification([make_alert(labels=labels, annotations=annotations, **alert)],
                                 group_key=f"g-{uuid.uuid4().hex}")
        r = self.client.post("/api/v1/alerts", json=body,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.get_data(as_text=True)
        incident: int = r.get_json()["incident_id"]
        return incident

    def post(self, incident_id: int, headers: dict[str, str] | None = None, **body: Any) -> Any:
        return self.client.post(f"/api/v1/status/incidents/{incident_id}/updates", json=body,
                                headers=headers or OP)

    def summary(self) -> dict[str, Any]:
        r = self.client.get("/status.json")
        assert r.status_code == 200
        data: dict[str, Any] = r.get_json()
        return data

    def public_texts(self) -> list[str]:
        """What the public can read: the page, the JSON summary, the feed."""
        return [self.client.get(p).get_data(as_text=True)
                for p in ("/status", "/status.json", "/status/feed.atom")]

    def component(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(c for c in self.summary()["components"]
                                     if c["name"] == name)
        return found

    def audit_actions(self) -> list[str]:
        return [e["action"] for e in self.store.audit(AuditFilter(limit=500))]


@pytest.fixture
def site(store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("RM_STATUS_BOB_TOKEN", BOB_TOKEN)
    monkeypatch.setenv("RM_STATUS_CAROL_TOKEN", CAROL_TOKEN)
    return Site(store, clock, tmp_path)


@pytest.fixture
def approving_site(store: Store, clock: Clock, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("RM_STATUS_BOB_TOKEN", BOB_TOKEN)
    monkeypatch.setenv("RM_STATUS_CAROL_TOKEN", CAROL_TOKEN)
    return Site(store, clock, tmp_path, approval={"first_post": True})


# -- the Statuspage summary shape ---------------------------------------------------------------
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
COMPONENT = {
    "type": "object",
    "required": ["id", "name", "status", "created_at", "updated_at", "position",
                 "description", "showcase", "start_date", "group_id", "page_id", "group",
                 "only_show_if_degraded"],
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"},
        "status": {"enum": ["operational", "degraded_performance", "partial_outage",
                            "major_outage", "under_maintenance"]},
        "created_at": TIME, "updated_at": TIME, "position": {"type": "integer"},
        "description": {"type": ["string", "null"]}, "showcase": {"type": "boolean"},
        "start_date": {"type": ["string", "null"]}, "group_id": {"type": ["string", "null"]},
        "page_id": {"type": "string"}, "group": {"type": "boolean"},
        "only_show_if_degraded": {"type": "boolean"},
    },
}
UPDATE = {
    "type": "object",
    "required": ["id", "status", "body", "incident_id", "created_at", "updated_at",
                 "display_at", "affected_components"],
    "properties": {
        "id": {"type": "string"}, "incident_id": {"type": "string"},
        "status": {"enum": ["investigating", "identified", "monitoring", "resolved",
                            "postmortem"]},
        "body": {"type": "string"}, "created_at": TIME, "updated_at": TIME, "display_at": TIME,
        "affected_components": {"type": "array", "items": {
            "type": "object", "required": ["code", "name", "old_status", "new_status"]}},
    },
}
SUMMARY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["page", "components", "incidents", "scheduled_maintenances", "status"],
    "properties": {
        "page": {"type": "object", "required": ["id", "name", "url", "time_zone", "updated_at"],
                 "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                "url": {"type": "string", "format": "uri"},
                                "time_zone": {"type": "string"}, "updated_at": TIME}},
        "components": {"type": "array", "items": COMPONENT},
        "incidents": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "name", "status", "created_at", "updated_at", "monitoring_at",
                         "resolved_at", "impact", "shortlink", "started_at", "page_id",
                         "incident_updates", "components"],
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "status": {"enum": ["investigating", "identified", "monitoring", "resolved",
                                    "postmortem"]},
                "impact": {"enum": ["none", "minor", "major", "critical"]},
                "created_at": TIME, "updated_at": TIME, "started_at": TIME,
                "monitoring_at": TIME_OR_NULL, "resolved_at": TIME_OR_NULL,
                "shortlink": {"type": "string"}, "page_id": {"type": "string"},
                "incident_updates": {"type": "array", "items": UPDATE, "minItems": 1},
                "components": {"type": "array", "items": COMPONENT},
            }}},
        "scheduled_maintenances": {"type": "array"},
        "status": {"type": "object", "required": ["indicator", "description"],
                   "properties": {"indicator": {"enum": ["none", "minor", "major", "critical",
                                                         "maintenance"]},
                                  "description": {"type": "string"}}},
    },
}


def validate_summary(data: dict[str, Any]) -> None:
    jsonschema.validate(data, SUMMARY_SCHEMA,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


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
    """/status has no script, a meta refresh, a viewport for phones, and needs no login."""
    r = site.client.get("/status")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "<script" not in html
    assert re.search(r'<meta http-equiv="refresh" content="60">', html)
    assert 'name="viewport"' in html


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


# -- input and auth --------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"body": "x"}, "status"),
    ({"status": "fixed", "body": "x", "title": "t"}, "status"),
    ({"status": "investigating", "title": "t"}, "body"),
    ({"status": "investigating", "body": "", "title": "t"}, "body"),
    ({"status": "investigating", "body": "x" * 5001, "title": "t"}, "body"),
    ({"status": "investigating", "body": "x", "title": "t", "labels": {}}, "labels"),
    ({"status": "investigating", "body": "x\u0000", "title": "t"}, "body"),
    ({"status": "investigating", "body": "x"}, "title"),
    ({"status": "investigating", "body": "x", "title": "   "}, "title"),
])
def test_bad_update_bodies_get_a_400_naming_the_field(site: Site, body: dict[str, Any],
                                                     field: str) -> None:
    """A bad update body answers 400 whose detail names the field, and stores nothing."""
    inc = site.fire({"service": "api"})
    r = site.post(inc, **body)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert [d["field"] for d in r.get_json()["detail"]] == [field]
    assert site.summary()["incidents"] == []


def test_bad_override_bodies_and_unknown_ids_get_4xx(site: Site) -> None:
    """An unknown component or status names its field; an unknown incident or update is
    404; nothing answers 5xx."""
    r = site.client.post("/api/v1/status/overrides", headers=OP,
                         json={"component": "Nope", "status": "operational"})
    assert r.status_code == 400 and r.get_json()["detail"][0]["field"] == "component"
    r = site.client.post("/api/v1/status/overrides", headers=OP,
                         json={"component": "Web app", "status": "down"})
    assert r.status_code == 400 and r.get_json()["detail"][0]["field"] == "status"
    r = site.post(999, title="t", status="investigating", body="x")
    assert r.status_code == 404
    r = site.client.post("/api/v1/status/updates/999/approve", headers=BOB, json={})
    assert r.status_code == 404


def test_writes_need_an_operator_and_reads_need_nobody(site: Site) -> None:
    """Public views answer without credentials; API writes need an operator token (401
    without, 403 read-only), manage pages a login."""
    inc = site.fire({"service": "api"})
    anon = site.app.test_client()
    for path in ("/status", "/status.json", "/status/feed.atom"):
        assert anon.get(path).status_code == 200
    body = {"title": "t", "status": "investigating", "body": "x"}
    assert anon.post(f"/api/v1/status/incidents/{inc}/updates", json=body).status_code == 401
    assert site.post(inc, headers=READ, **body).status_code == 403
    r = anon.get("/status/manage")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert site.summary()["incidents"] == []


def _login(client: Any, user: str = "alice") -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    r = client.post("/login", data={"username": user, "password": PASSWORD,
                                    "csrf_token": token.group(1)})
    assert r.status_code == 302


def _form_token(client: Any, path: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert m
    return m.group(1)


def test_the_page_form_publishes_with_csrf_and_login(site: Site) -> None:
    """A logged-in operator publishes from the form; the same post without the form's CSRF
    token is refused (400) and publishes nothing; a session API write needs X-CSRF-Token."""
    inc = site.fire({"service": "api"})
    c = site.app.test_client()
    _login(c)
    path = f"/status/manage/incidents/{inc}"
    assert 'href="/status/manage"' in c.get("/incidents").get_data(as_text=True)  # in the nav
    form = {"title": "API trouble", "status": "investigating", "body": "From the form."}
    r = c.post(f"{path}/updates", data=form)
    assert r.status_code == 400
    assert site.summary()["incidents"] == []
    r = c.post(f"{path}/updates", data=form | {"csrf_token": _form_token(c, path)})
    assert r.status_code == 302
    assert site.summary()["incidents"][0]["incident_updates"][0]["body"] == "From the form."
    page = c.get(path).get_data(as_text=True)
    assert "From the form." in page and "published" in page
    r = c.post(f"/api/v1/status/incidents/{inc}/updates",
               json={"status": "identified", "body": "no token"})
    assert r.status_code == 400 and r.get_json()["error"] == "csrf_failed"


def test_the_manage_pages_approve_and_override(approving_site: Site) -> None:
    """Bob approves alice's first post on the manage page and sets an override there;
    alice sees no approve button for her own post."""
    site = approving_site
    inc = site.fire({"service": "api"})
    uid = site.post(inc, title="API trouble", status="investigating", body="x").get_json()[
        "update_id"]
    alice = site.app.test_client()
    _login(alice, "alice")
    assert "Approve and publish" not in alice.get("/status/manage").get_data(as_text=True)
    bob = site.app.test_client()
    _login(bob, "bob")
    token = _form_token(bob, "/status/manage")
    r = bob.post(f"/status/manage/updates/{uid}/decision",
                 data={"decision": "approve", "csrf_token": token})
    assert r.status_code == 302
    assert [i["name"] for i in site.summary()["incidents"]] == ["API trouble"]
    r = bob.post("/status/manage/overrides", data={
        "component": "Web app", "status": "major_outage", "reason": "r", "csrf_token": token})
    assert r.status_code == 302
    assert site.component("Web app")["status"] == "major_outage"
    r = bob.post("/status/manage/overrides", data={
        "component": "Web app", "status": "bogus", "csrf_token": token})
    assert r.status_code == 400


def test_a_disabled_status_page_is_not_found(store: Store, clock: Clock, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With status_page.enabled off (the default) every status route answers 404."""
    config = make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, people=people(),
                         data_dir=str(tmp_path / "data"))
    c = create_app(config, store=store, clock=clock).test_client()
    for path in ("/status", "/status.json", "/status/feed.atom"):
        assert c.get(path).status_code == 404
    r = c.post("/api/v1/status/overrides", headers={"Authorization": f"Bearer {OP_TOKEN}"},
               json={"component": "x", "status": None})
    assert r.status_code == 404


@pytest.mark.parametrize(("components", "problem"), [
    ([{"name": "API"}, {"name": "api"}], "share the id"),
    ([{"name": "API", "matchers": ["service=~\"(\""]}], "invalid regex"),
    ([{"name": "---"}], "letter or a digit"),
    ([{"name": "API", "colour": "red"}], "Extra inputs"),
])
def test_bad_component_configs_are_refused(components: list[dict[str, Any]],
                                           problem: str) -> None:
    """A status_page.components entry with a clashing name, a bad matcher or an unknown key
    is refused at load with its path."""
    with pytest.raises(ConfigError) as err:
        make_config(status_page={"components": components})
    assert problem in str(err.value)
