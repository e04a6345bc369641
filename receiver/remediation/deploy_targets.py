"""The deployments part of the targets allowlist (``targets.deployments``): what
``rollback_deployment`` may roll back.

Being allowed to scale a service (``targets.swarm_services``) does not allow rolling it back:
a rollback replaces the running version, so its services are listed here on their own::

    deployments:
      swarm_services: [web, api]
      max_age_limit: 7d

``max_age_limit`` caps the ``max_age`` a rule may ask for: no rule can roll back a version
deployed longer ago than that.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from receiver.durations import Duration
from receiver.errors import TargetNotAllowed

SwarmServiceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]


def _show(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


class DeploymentTargets(BaseModel):
    """Services whose previous version may be brought back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    swarm_services: list[SwarmServiceName] = Field(default_factory=list, max_length=1000)
    max_age_limit: Duration = timedelta(days=7)

    def check_swarm_service(self, name: str) -> None:
        if name not in self.swarm_services:
            raise TargetNotAllowed(
                f"swarm service {_show(name)} is not in targets.deployments.swarm_services"
            )

    def check_max_age(self, max_age: timedelta) -> None:
        if max_age > self.max_age_limit:
            raise TargetNotAllowed(
                f"max_age {max_age} is over targets.deployments.max_age_limit "
                f"({self.max_age_limit})"
            )
