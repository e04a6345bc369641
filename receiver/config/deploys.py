"""The ``deploys`` probe of a diagnostic check: recent deploys of the containers and Swarm
services an incident names, and optionally the last commits of a local git repository."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from receiver.config.section import Section
from receiver.durations import Duration
from receiver.remediation.rules import check_template


def _labels_only(value: str) -> str:
    check_template(value)
    return value


_Templated = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_labels_only)]
_LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,127}$")]


class GitLogSource(Section):
    """``git log --oneline`` of a local repository (its path from config only, never from
    an alert), run as an argv list with a timeout and a scrubbed environment."""

    path: str = Field(pattern=r"^/[^\x00]*$", max_length=4096,
                      description="absolute path of a local git work tree or bare repository")
    commits: int = Field(default=10, ge=1, le=100, description="how many commits to show")


class DeploysProbe(Section):
    """For each container and Swarm service named (a name or ``{{ labels.x }}``, checked
    against ``targets``): when it was last updated, its image and its previous image; and the
    last commits of ``git``, when given. Deploys within ``deploy_window`` before the alert
    started are flagged in the post-mortem."""

    containers: list[_Templated] = Field(default_factory=list, max_length=10,
                                         description="container names; must pass targets")
    services: list[_Templated] = Field(
        default_factory=list, max_length=10,
        description="Swarm service names; must be in targets.swarm_services")
    previous_image_label: _LabelName = Field(
        default="remediator.previous-image",
        description="the label in which a container's deploy records the image it replaced")
    git: GitLogSource | None = None
    deploy_window: Duration = Field(
        default=timedelta(hours=2),
        description="a deploy this long before the alert started is flagged")

    @model_validator(mode="after")
    def _something_to_look_at(self) -> DeploysProbe:
        if not (self.containers or self.services or self.git):
            raise ValueError("give at least one of containers, services or git")
        if self.deploy_window <= timedelta(0):
            raise ValueError("deploy_window must be more than 0s")
        return self
