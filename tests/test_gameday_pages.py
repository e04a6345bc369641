"""Game-day incidents are marked on the pages that show an incident (list, incident,
approval, the status page's manage pages), escaped; other incidents carry no mark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.app import create_app
from receiver.gameday.scenario import Scenario
from receiver.people.tokens import approval_links
from receiver.store import Store
from tests.conftest import OP_TOKEN, READ_TOKEN, TOKEN, Clock, people
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification, unique_group
from tests.test_pages import login

HOSTILE_ID = '<script>alert(1)</script>"'
MARK = '<span class="gameday"'


@pytest.fixture
def web(store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)
    kit = Kit(store, clock, [rule(approval={"mode": "required", "groups": ["dba"]})],
              people=people(), auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False},
              status_page={"enabled": True})
    kit.app = create_app(kit.config, store=store, clock=clock)
    sc = Scenario.model_validate({"name": "drill", "alerts": [{"labels": {"alertname": "A"}}],
                                  "live": {"targets": ["fake:web1"]}})
    with store.unit() as uow:
        uow.gamedays.start(id=HOSTILE_ID, name=sc.name, scenario=sc.model_dump_json(),
                           targets=sc.live_targets, details={}, actor="user:alice",
                           now=clock(), deadline=clock() + sc.time_limit)
    clock.advance(seconds=1)
    return kit


def fire(kit: Any, labels: dict[str, str]) -> int:
    return int(kit.fire(make_notification([make_alert(labels=labels)],
                                          group_key=unique_group())).incident_id)


def test_game_day_incidents_are_marked_and_escaped_on_every_page_showing_them(web: Any) -> None:
    drill = fire(web, {"container": "web1", "gameday": HOSTILE_ID})
    real = fire(web, {"container": "web2", "gameday": "no-such-game-day"})
    web.drain()
    c = web.app.test_client()
    login(c)
    listing = c.get("/incidents").get_data(as_text=True)
    rows = {n: row for n, row in ((n, listing.split(f"#{n}</a>")[1].split("</tr>")[0])
                                  for n in (drill, real))}
    assert MARK in rows[drill] and MARK not in rows[real]
    assert "<script>alert(1)" not in listing and "&lt;script&gt;" in listing
    page = c.get(f"/incidents/{drill}").get_data(as_text=True)
    assert "gameday-banner" in page and "drill of game day" in page
    assert "<script>alert(1)" not in page
    assert MARK not in c.get(f"/incidents/{real}").get_data(as_text=True)
    # A live target still waits for the rule's approval; the approval page says game day.
    with web.store.unit(write=False) as uow:
        job = next(j for j in uow.incidents.detail(drill).jobs)  # type: ignore[union-attr]
        approval = uow.approvals.for_job(job.id)
    assert approval is not None
    link = next(iter(approval_links(web.config, approval).values()))
    shown = c.get("/" + link.split("/", 3)[3]).get_data(as_text=True)
    assert "GAME DAY &lt;script&gt;" in shown
    # The status page's manage pages, where an operator would write about it publicly.
    manage = c.get("/status/manage").get_data(as_text=True)
    cells = {n: manage.split(f"#{n}</a>")[1].split("</tr>")[0] for n in (drill, real)}
    assert MARK in cells[drill] and MARK not in cells[real]
    one = c.get(f"/status/manage/incidents/{drill}").get_data(as_text=True)
    assert MARK in one and "<script>alert(1)" not in one
    assert MARK not in c.get(f"/status/manage/incidents/{real}").get_data(as_text=True)
