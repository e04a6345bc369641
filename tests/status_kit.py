"""What the status page's tests share: an app with the status page on and three components
(:class:`Site`), operator tokens, and a JSON schema of Statuspage's ``summary.json``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from receiver.app import create_app
from receiver.store import AuditFilter, Store
from tests.conftest import OP, TOKEN, Clock, make_config, people
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


def make_site(store: Store, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              **status: Any) -> Site:
    """A :class:`Site` with the extra operator tokens' secrets in the environment."""
    monkeypatch.setenv("RM_STATUS_BOB_TOKEN", BOB_TOKEN)
    monkeypatch.setenv("RM_STATUS_CAROL_TOKEN", CAROL_TOKEN)
    return Site(store, clock, tmp_path, **status)
