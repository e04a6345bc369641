"""The status page's doors: bad bodies and forms get a 4xx naming the field, writes need an
operator (API token of operator scope, or a login and the form's CSRF token), reads need
nobody, the manage pages approve and override, and a disabled page is not found."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import ConfigError
from receiver.store import Store
from tests.conftest import OP, OP_TOKEN, PASSWORD, READ, Clock, make_config, people
from tests.status_kit import BOB, Site, make_site


@pytest.fixture
def site(store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    return make_site(store, clock, tmp_path, monkeypatch)


@pytest.fixture
def approving_site(store: Store, clock: Clock, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Site:
    return make_site(store, clock, tmp_path, monkeypatch, approval={"first_post": True})


# -- input --------------------------------------------------------------------------------

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
    page = c.get(f"{path}?done=published").get_data(as_text=True)
    assert "From the form." in page and "Published." in page
    spoof = c.get(f"{path}?done=Your+session+expired,+call+555").get_data(as_text=True)
    assert "call 555" not in spoof and 'id="notice"' not in spoof
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


@pytest.mark.parametrize(("option", "value"), [
    ("history", "100000d"), ("refresh", "1s"), ("refresh", "2h"), ("feed_entries", 0)])
def test_out_of_range_status_page_options_are_refused(option: str, value: Any) -> None:
    """A history, refresh or feed size outside its bounds is refused at load, by path."""
    with pytest.raises(ConfigError) as err:
        make_config(status_page={option: value})
    assert f"status_page.{option}" in str(err.value)
