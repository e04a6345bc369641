"""The ``incidents.similar`` section: how past incidents like the one at hand are found and
ranked (see :mod:`receiver.incidents.similar` for the score)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field

from receiver.config.section import Section
from receiver.durations import Duration

_LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")]


class SimilarConfig(Section):
    """Similar past incidents on the incident page, in the API, the chat update and the
    post-mortem draft."""

    enabled: bool = True
    limit: int = Field(default=5, ge=1, le=20, description="incidents shown")
    service_labels: list[_LabelName] = Field(
        default_factory=lambda: ["service", "job", "container", "app"],
        max_length=20,
        description="labels that name a service: a shared value weighs as a service match",
    )
    ignore_labels: list[_LabelName] = Field(
        default_factory=lambda: ["instance", "pod", "severity"],
        max_length=50,
        description="labels left out of the label overlap (they differ on every incident, "
        "or say nothing about what broke)",
    )
    half_life: Duration = Field(default=timedelta(days=30),
                                description="recency: a past incident's score halves per")
    min_score: float = Field(default=0.15, ge=0, le=1,
                             description="similarity below this is not shown")
    per_term: int = Field(default=50, ge=1, le=1000,
                          description="lookup: newest incidents read per signature term")
