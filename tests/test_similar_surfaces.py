"""Where similar past incidents and recent deploys show: the API (``similar``, valid against
the OpenAPI document), the post-mortem draft (escaped, deploys within the window flagged),
and the ``deploys`` probe's config (what it refuses). Both store backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.config.deploys import DeploysProbe
from receiver.diagnostics.deploys import recent
from receiver.incidents import lifecycle, postmortem, similar
from receiver.store import Store
from tests.conftest import OP, Clock
from tests.factories import make_alert, make_notification

HOSTILE_TITLE = "# Boom [x](http://evil.example) <img src=x> | cell"


def _fire(client: Any, group: str, **labels: str) -> int:
    r = client.post("/api/v1/alerts", json=make_notification(
        [make_alert(alertname="QueueStuck", labels=labels,
                    annotations={"summary": HOSTILE_TITLE})], group_key=group))
    assert r.status_code == 200, r.json
    return int(r.json["incident_id"])


def test_api_incident_lists_similar_past_incidents_per_the_openapi_schema(
        client: Any, clock: Clock) -> None:
    """GET /api/v1/incidents/<id> has ``similar``: the resolved look-alike with who resolved
    it and its post-mortem path, and the body validates against the OpenAPI document."""
    past = _fire(client, "g1", service="queue", env="prod")
    r = client.post(f"/api/v1/incidents/{past}/actions", json={"action": "resolve"},
                    headers=OP)
    assert r.status_code == 200
    store, config = _store_and_config(client)
    similar.index_due(store, config, now=clock())
    clock.advance(minutes=10)
    current = _fire(client, "g2", service="queue", env="prod", instance="other:1")
    body = client.get(f"/api/v1/incidents/{current}", headers=OP).json
    assert [s["id"] for s in body["similar"]] == [past]
    item = body["similar"][0]
    assert item["fixed_by"]["person"] == "alice" and item["resolved_by"] == "user:alice"
    assert item["postmortem"] == f"/api/v1/incidents/{past}/postmortem.md"
    assert client.get(item["postmortem"], headers=OP).status_code == 200

    doc = client.get("/api/v1/openapi.json").json
    schema = {"$ref": "#/components/schemas/IncidentDetail",
              "components": doc["components"]}
    jsonschema.validate(body, schema)
    assert "similar" in doc["components"]["schemas"]["IncidentDetail"]["properties"]


def _store_and_config(client: Any) -> tuple[Store, Any]:
    svc = client.application.extensions["remediator"]
    return svc.store, svc.config


def test_postmortem_lists_similar_incidents_escaped(client: Any, clock: Clock) -> None:
    """The draft's "Similar past incidents" names the past incident with a link to its
    post-mortem, and its hostile title cannot add a heading, link, image or cell."""
    store, config = _store_and_config(client)
    past = _fire(client, "g1", service="queue")
    lifecycle.act(store, config, past, "resolve", user="alice", now=clock())
    similar.index_due(store, config, now=clock())
    clock.advance(minutes=10)
    current = _fire(client, "g2", service="queue", instance="x:1")
    text = postmortem.render(store, config, current)
    assert text is not None
    section = text.split("## Similar past incidents", 1)[1].split("## Root cause", 1)[0]
    assert f"[Incident #{past}](/api/v1/incidents/{past}/postmortem.md)" in section
    assert "by hand: alice" in section
    assert "](http://evil.example)" not in section and "<img" not in section
    assert "\n# Boom" not in text
    assert "No deploy recorded" in text.split("## Recent deploys", 1)[1]


# -- which deploys are flagged (pure) -------------------------------------------------------

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _detail(*times: datetime, window_h: int = 2) -> dict[str, Any]:
    return {"deploy_window_s": window_h * 3600,
            "deploys": [{"kind": "service", "name": f"s{i}", "image": "img:v2",
                         "previous_image": "img:v1", "updated_at": t.isoformat()}
                        for i, t in enumerate(times)]}


def test_only_deploys_within_the_window_before_the_start_are_flagged() -> None:
    """1h before: flagged; 3h before: not (2h window); 2m after: flagged (as it started);
    1h after: not; newest first."""
    detail = _detail(START - timedelta(hours=1), START - timedelta(hours=3),
                     START + timedelta(minutes=2), START + timedelta(hours=1))
    found = recent([detail], START)
    assert [d.name for d in found] == ["s2", "s0"]
    assert found[1].before == timedelta(hours=1) and found[1].previous_image == "img:v1"
    assert recent([_detail(START - timedelta(hours=3), window_h=4)], START)[0].name == "s0"
    assert recent([detail], None) == []


@given(st.dictionaries(st.sampled_from(["deploy_window_s", "deploys", "git", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text()),
                                 st.lists(st.dictionaries(st.text(), st.text())))))
def test_recent_never_fails_on_odd_evidence(detail: dict[str, Any]) -> None:
    """Evidence of any shape gives a list (an unreadable entry is skipped), never an error."""
    try:
        found = recent([detail], START)
    except (TypeError, ValueError, AttributeError):
        pytest.fail("recent() raised on odd evidence")
    assert isinstance(found, list)


@pytest.mark.parametrize("data, field", [
    ({}, "value"),
    ({"git": {"path": "relative/repo"}}, "git.path"),
    ({"git": {"path": "/srv/app", "commits": 0}}, "git.commits"),
    ({"services": ["{{ labels.x | upper }}"]}, "services.0"),
    ({"services": ["web"], "deploy_window": "0s"}, "value"),
    ({"services": ["web"], "shell": "ls"}, "shell"),
])
def test_deploys_probe_config_refuses(data: dict[str, Any], field: str) -> None:
    """A probe with nothing to look at, a relative repository path, a template beyond
    labels, a zero window or an unknown key is refused, naming the field."""
    with pytest.raises(ValidationError) as err:
        DeploysProbe.model_validate(data)
    locs = {".".join(str(p) for p in e["loc"]) or "value" for e in err.value.errors()}
    assert field in locs, locs
