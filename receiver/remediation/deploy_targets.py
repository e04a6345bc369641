"""The deployments part of the targets allowlist (``targets.deployments``): what
``rollback_deployment`` may roll back.

Being allowed to scale a service (``targets.swarm_services``) does not allow rolling it back:
a rollback replaces the running version, so its services are listed here on their own::

    deployments:
      swarm_services: [web, api]
      compose_services:
        - {project: shop, service: web, previous_image_label: remediator.previous-image}
      max_age_limit: 7d

Compose keeps no previous version: the deploy records the image a replica replaced in the
``previous_image_label`` label (see :mod:`receiver.adapters.compose_deploys`).

``max_age_limit`` caps the ``max_age`` a rule may ask for: no rule can roll back a version
deployed longer ago than that.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from receiver.durations import Duration
from receiver.errors import TargetNotAllowed

ROLLED_BACK_FROM = "remediator.rolled-back-from"
"""The label on a Compose replica recreated by a rollback: the image id it was rolled back
from."""

SwarmServiceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]
ComposeProjectName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
LabelName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,127}$")]


def _show(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


class ComposeDeployment(BaseModel):
    """A Compose service (``com.docker.compose.project``/``.service`` labels) that may be
    rolled back to the image its replicas record in ``previous_image_label``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: ComposeProjectName
    service: SwarmServiceName
    previous_image_label: LabelName = "remediator.previous-image"


class DeploymentTargets(BaseModel):
    """Services whose previous version may be brought back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    swarm_services: list[SwarmServiceName] = Field(default_factory=list, max_length=1000)
    compose_services: list[ComposeDeployment] = Field(default_factory=list, max_length=1000)
    max_age_limit: Duration = timedelta(days=7)

    def check_swarm_service(self, name: str) -> None:
        if name not in self.swarm_services:
            raise TargetNotAllowed(
                f"swarm service {_show(name)} is not in targets.deployments.swarm_services"
            )

    def compose_service(self, project: str, service: str) -> ComposeDeployment:
        for entry in self.compose_services:
            if entry.project == project and entry.service == service:
                return entry
        raise TargetNotAllowed(
            f"compose service {_show(service)} of project {_show(project)} is not in "
            "targets.deployments.compose_services"
        )

    def check_max_age(self, max_age: timedelta) -> None:
        if max_age > self.max_age_limit:
            raise TargetNotAllowed(
                f"max_age {max_age} is over targets.deployments.max_age_limit "
                f"({self.max_age_limit})"
            )
