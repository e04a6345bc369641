"""Undo by hand through the API, the incident page and the CLI, on both store backends: each
queues one undo job as the person who asked, audited with where it came from; the page needs
the CSRF token; a second undo is a 409 JSON answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.app import create_app
from receiver.cli import main
from receiver.commands.identity import os_account
from receiver.store import Store
from tests.conftest import OP_TOKEN, READ_TOKEN, TOKEN, Clock, people
from tests.engine_kit import Kit
from tests.test_pages import csrf, login
from tests.test_undo import FakeScale, audited, fire, scale_rule

OP = {"Authorization": f"Bearer {OP_TOKEN}"}


@pytest.fixture
def web(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """One succeeded scale job (#1) and the app on the same store."""
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)
    kit = Kit(store, clock, [scale_rule()], playbook=FakeScale(), people=people(),
              auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False})
    fire(kit)
    kit.drain()
    assert kit.jobs()[0]["state"] == "succeeded"
    kit.app = create_app(kit.config, store=store, clock=clock)
    return kit


def test_api_undo_queues_once_and_then_answers_409(web: Any) -> None:
    """POST /api/v1/jobs/1/undo queues the undo as the token's owner (audited with via=api);
    the second is 409 already_undone as JSON."""
    c = web.app.test_client()
    r = c.post("/api/v1/jobs/1/undo", json={"reason": "load is back to normal"}, headers=OP)
    assert r.status_code == 200, r.json
    assert r.json == {"job_id": 1, "undo_job_id": 2, "state": "queued"}
    again = c.post("/api/v1/jobs/1/undo", json={}, headers=OP)
    assert again.status_code == 409 and again.mimetype == "application/json"
    assert again.json["error"] == "already_undone" and "job #2" in again.json["detail"]
    (entry,) = audited(web.store, "job.undo_requested")
    assert entry.actor == "user:alice" and entry.origin["via"] == "api"
    assert entry.details["reason"] == "load is back to normal"
    web.drain()
    assert web.playbook.counts == {"web": 1}


def test_api_undo_refuses_bad_input_naming_the_field(web: Any) -> None:
    """An unknown field or an over-long reason is 400 naming the field; a read token is 403;
    an unknown job 404; nothing is queued."""
    c = web.app.test_client()
    r = c.post("/api/v1/jobs/1/undo", json={"reasn": "x"}, headers=OP)
    assert r.status_code == 400 and r.json["error"] == "invalid_payload"
    assert r.json["detail"][0]["field"] == "reasn"
    r = c.post("/api/v1/jobs/1/undo", json={"reason": "x" * 501}, headers=OP)
    assert r.status_code == 400 and r.json["detail"][0]["field"] == "reason"
    r = c.post("/api/v1/jobs/1/undo", json={}, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert r.status_code == 403
    r = c.post("/api/v1/jobs/77/undo", json={}, headers=OP)
    assert r.status_code == 404 and r.json["error"] == "not_found"
    assert len(web.jobs()) == 1


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=600), st.integers(),
                                                     st.none(), st.booleans()), max_size=3),
    st.lists(st.integers(), max_size=3), st.text(max_size=50)))
@example(body={"reason": "\u0000<script>"})
@example(body=["reason"])
def test_api_undo_never_answers_5xx(web: Any, body: Any) -> None:
    """Whatever JSON is posted, the answer is 200, 400 or 409 JSON, never a 5xx."""
    r = web.app.test_client().post("/api/v1/jobs/1/undo", json=body, headers=OP)
    assert r.status_code in (200, 400, 409) and r.mimetype == "application/json"


def test_openapi_documents_the_undo(web: Any) -> None:
    """The document lists POST /api/v1/jobs/{job_id}/undo with its request model."""
    doc = web.app.test_client().get("/api/v1/openapi.json").json
    op = doc["paths"]["/api/v1/jobs/{job_id}/undo"]["post"]
    assert op["operationId"] == "undoJob" and "409" in op["responses"]
    assert set(doc["components"]["schemas"]["UndoBody"]["properties"]) == {"reason"}


def test_page_undo_needs_the_csrf_token(web: Any) -> None:
    """The incident page offers the button; a post without the CSRF token is refused and
    queues nothing; with it the undo is queued as the logged-in person (via=page)."""
    c = web.app.test_client()
    login(c)
    page = c.get("/incidents/1").get_data(as_text=True)
    assert "Undo job #1" in page and 'action="/jobs/1/undo"' in page
    r = c.post("/jobs/1/undo", data={"reason": "done"})
    assert r.status_code == 400 and len(web.jobs()) == 1
    r = c.post("/jobs/1/undo", data={"reason": "done", "csrf_token": "forged"})
    assert r.status_code == 400 and len(web.jobs()) == 1
    token = csrf(c, "/incidents/1")
    r = c.post("/jobs/1/undo", data={"reason": "done", "csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/incidents/1#job-2")
    (entry,) = audited(web.store, "job.undo_requested")
    assert entry.actor == "user:alice" and entry.origin["via"] == "page"
    page = c.get("/incidents/1").get_data(as_text=True)
    assert "Undo job #1" not in page and "Undoes job" in page
    again = c.post("/jobs/1/undo", data={"csrf_token": token},
                   headers={"Accept": "application/json"})
    assert again.status_code == 409 and again.json["error"] == "already_undone"


def test_page_undo_from_another_site_is_refused(web: Any) -> None:
    """A cross-site form post (even with a token) is 403 and queues nothing."""
    c = web.app.test_client()
    login(c)
    token = csrf(c, "/incidents/1")
    r = c.post("/jobs/1/undo", data={"csrf_token": token},
               headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and len(web.jobs()) == 1


def test_cli_undo_acts_as_the_os_account(web: Any, store_url: str, tmp_path: Path) -> None:
    """``remediator undo 1`` queues the undo as the OS account's person, audited with
    via=cli; a second one exits 1 saying it is already undone."""
    ppl = people()
    ppl["users"]["bob"]["os_user"] = os_account()
    cfg = tmp_path / "r.yml"
    cfg.write_text(yaml.safe_dump({"store": {"url": store_url}, "data_dir": str(tmp_path),
                                   "people": ppl, "rules": [scale_rule()]}))
    env = {"REMEDIATOR_TOKEN": ""}
    first = CliRunner().invoke(main, ["undo", "1", "--reason", "over", "-c", str(cfg)], env=env)
    assert first.exit_code == 0, first.output
    assert "undo queued as job #2 (by bob)" in first.output
    second = CliRunner().invoke(main, ["undo", "1", "-c", str(cfg)], env=env)
    assert second.exit_code == 1 and "already undone" in second.output
    (entry,) = audited(web.store, "job.undo_requested")
    assert entry.actor == "user:bob" and entry.origin["via"] == "cli"
    assert entry.origin["os_user"] == os_account() and entry.details["reason"] == "over"
    wrong = CliRunner().invoke(main, ["undo", "1", "--as", "alice", "-c", str(cfg)], env=env)
    assert wrong.exit_code == 2
