"""The status page's request bodies and form posts, as pydantic models (the style of
:mod:`receiver.web.requests`: unknown JSON keys refused, bounded text without NUL, a 4xx that
names each bad field)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from receiver.web.requests import BodyModel, FormModel, Text

MAX_TITLE = 200
MAX_BODY = 5000
MAX_REASON = 500

PublicStatus = Literal["investigating", "identified", "monitoring", "resolved"]
ComponentStatus = Literal["operational", "degraded_performance", "partial_outage",
                          "major_outage", "under_maintenance"]


class StatusUpdateBody(BodyModel):
    """POST /api/v1/status/incidents/{id}/updates."""

    status: PublicStatus = Field(description="the incident's public status after this update")
    body: Text = Field(min_length=1, max_length=MAX_BODY,
                       description="the text the public reads (plain text)")
    title: Text = Field("", max_length=MAX_TITLE,
                        description="the public title; required for the first update")


class StatusDecisionBody(BodyModel):
    """POST /api/v1/status/updates/{id}/approve and /reject."""

    reason: Text = Field("", max_length=MAX_REASON)


class StatusOverrideBody(BodyModel):
    """POST /api/v1/status/overrides: pin a component's status, or (status null) let it
    follow its incidents again."""

    component: Text = Field(min_length=1, max_length=100, description="name or id")
    status: ComponentStatus | None = Field(description="null clears the override")
    reason: Text = Field("", max_length=MAX_REASON)


class StatusUpdateForm(FormModel):
    status: PublicStatus = "investigating"
    body: Text = Field(min_length=1, max_length=MAX_BODY)
    title: Text = Field("", max_length=MAX_TITLE)


class StatusDecisionForm(FormModel):
    decision: Literal["approve", "reject"]
    reason: Text = Field("", max_length=MAX_REASON)


class StatusOverrideForm(FormModel):
    component: Text = Field(min_length=1, max_length=100)
    status: ComponentStatus | Literal["follow"] = "follow"
    reason: Text = Field("", max_length=MAX_REASON)
