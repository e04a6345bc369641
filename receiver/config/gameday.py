"""The ``gameday`` section: where ``remediator gameday start`` posts a scenario's alerts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from receiver.config.section import Section

AlertmanagerUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s@?#]{1,500}$")]


class GamedayConfig(Section):
    alertmanagers: list[AlertmanagerUrl] = Field(default_factory=list, max_length=10)
    """The Alertmanagers (base URLs) a game day posts to unless ``--alertmanager`` is given;
    each host:port must also be in ``targets.http.hosts``."""
