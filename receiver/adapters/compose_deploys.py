"""Compose services' versions: which image each replica runs and which it ran before, and
recreating a replica on another image.

Compose keeps no previous version, so the deploy records it: the replicas carry a label
(``remediator.previous-image`` by default, set by the deploy, e.g. ``labels:`` in the
Compose file) naming the image they replaced. A replica recreated by a rollback carries
the ``remediator.rolled-back-from`` label (the image it was rolled back from), so a
rollback is never rolled back again by accident, and the previous-image label then names
that image (for rolling forward).

Recreating keeps the container's configuration (command, env, mounts, networks, restart
policy, ports) except what came from the old image: an env entry, label, command,
entrypoint, working dir, user, exposed port, volume, healthcheck or stop signal equal to the
old image's default is left for the new image to set. Images are never pulled: the image
rolled back to must be present. The swap for one replica: stop the old container and rename
it aside, create and start the new one under the old name, wait until it runs, then remove
the old one; if the new one does not start, it is removed and the old one is renamed back
and started again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker.errors

from receiver.adapters.docker import COMPOSE_NUMBER
from receiver.remediation.deploy_targets import ROLLED_BACK_FROM


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ComposeReplica:
    id: str
    name: str
    number: int
    status: str
    image: str
    """The image reference the container was created from (``Config.Image``)."""
    image_id: str
    previous_image: str | None
    rolled_back_from: str | None
    created: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id[:12],
            "name": self.name,
            "number": self.number,
            "status": self.status,
            "image": self.image,
            "image_id": self.image_id,
            "previous_image": self.previous_image,
            "rolled_back_from": self.rolled_back_from,
            "created": self.created.isoformat() if self.created else None,
        }


@dataclass(frozen=True)
class ComposeRevision:
    project: str
    service: str
    replicas: list[ComposeReplica] = field(default_factory=list)


def replica_of(attrs: Mapping[str, Any], number: int, previous_label: str) -> ComposeReplica:
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    return ComposeReplica(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        number=number,
        status=str((attrs.get("State") or {}).get("Status", "unknown")),
        image=str(config.get("Image", "")),
        image_id=str(attrs.get("Image", "")),
        previous_image=labels.get(previous_label) or None,
        rolled_back_from=labels.get(ROLLED_BACK_FROM) or None,
        created=parse_time(attrs.get("Created")),
    )


def _without_image_defaults(
    config: Mapping[str, Any], image_config: Mapping[str, Any]
) -> dict[str, Any]:
    """The container's own settings: what equals the old image's default is dropped."""
    own: dict[str, Any] = {}
    image_env = set(image_config.get("Env") or [])
    own["Env"] = [e for e in config.get("Env") or [] if e not in image_env]
    image_labels = image_config.get("Labels") or {}
    own["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items()
                     if image_labels.get(k) != v}
    for key in ("Cmd", "Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal"):
        value = config.get(key)
        own[key] = None if value == image_config.get(key) or value in ("", []) else value
    for key in ("ExposedPorts", "Volumes"):
        mine = dict(config.get(key) or {})
        for inherited in image_config.get(key) or {}:
            mine.pop(inherited, None)
        own[key] = mine or None
    return own


def recreate_config(
    api: Any,
    attrs: Mapping[str, Any],
    image: str,
    set_labels: Mapping[str, str],
    drop_labels: tuple[str, ...],
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The create-container config of ``attrs`` on ``image``, and the networks to connect."""
    config = attrs["Config"]
    try:
        old_image = api.inspect_image(attrs["Image"])["Config"] or {}
    except docker.errors.NotFound:
        old_image = {}
    own = _without_image_defaults(config, old_image)
    labels = {k: v for k, v in own["Labels"].items() if k not in drop_labels}
    labels.update(set_labels)
    host = dict(attrs.get("HostConfig") or {})
    networks = dict((attrs.get("NetworkSettings") or {}).get("Networks") or {})
    mode = str(host.get("NetworkMode") or "")
    first = networks.pop(mode, None) if mode in networks else None
    networking = None
    if first is not None:
        networking = api.create_networking_config(
            {mode: api.create_endpoint_config(aliases=_aliases(first, attrs))}
        )
    created = api.create_container_config(
        image=image,
        command=own["Cmd"],
        entrypoint=own["Entrypoint"],
        environment=own["Env"],
        working_dir=own["WorkingDir"],
        user=own["User"],
        labels=labels,
        stop_signal=own["StopSignal"],
        healthcheck=own["Healthcheck"],
        tty=bool(config.get("Tty")),
        stdin_open=bool(config.get("OpenStdin")),
        host_config=host,
        networking_config=networking,
        detach=True,
    )
    created["ExposedPorts"] = own["ExposedPorts"]
    created["Volumes"] = own["Volumes"]
    extra = [(name, {"aliases": _aliases(endpoint, attrs)}) for name, endpoint in networks.items()]
    return created, extra


def _aliases(endpoint: Mapping[str, Any], attrs: Mapping[str, Any]) -> list[str]:
    """The endpoint's aliases without the container's short id (the engine adds its own)."""
    short = str(attrs["Id"])[:12]
    return [a for a in endpoint.get("Aliases") or [] if a != short]


def number_of(config: Mapping[str, Any], default: int) -> int:
    raw = str((config.get("Labels") or {}).get(COMPOSE_NUMBER, ""))
    return int(raw) if raw.isdigit() else default
