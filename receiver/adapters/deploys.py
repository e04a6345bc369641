"""Swarm service versions: the current and previous spec of a service, and the engine's own
rollback to the previous one (what ``docker service rollback`` asks for).

:class:`DeploysAdapter` is the Docker adapter plus these calls. A service's spec may hold
secrets (environment variables), so nothing here returns a spec: a revision carries the
image and a digest (sha256 of the canonical JSON) of the current and previous spec, which is
enough to tell versions apart and to check that nobody deployed in between.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import docker.errors

from receiver.adapters.compose_deploys import (
    ComposeReplica,
    ComposeRevision,
    number_of,
    recreate_config,
    replica_of,
)
from receiver.adapters.docker import DockerAdapter
from receiver.errors import PlaybookError

# UpdateStatus.State values of a rollback (started by hand or by an update's failure action).
ROLLBACK_STATES = frozenset({"rollback_started", "rollback_paused", "rollback_completed"})
SETTLED_STATES = frozenset({"completed", "rollback_completed", "paused", "rollback_paused"})


def spec_digest(spec: Any) -> str:
    """sha256 of a spec's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, ``Z``), as aware datetimes."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class ServiceRevision:
    """A Swarm service's version: what runs now, what ran before, and its update status."""

    id: str
    name: str
    version: int
    updated_at: datetime | None
    update_state: str | None
    update_message: str | None
    image: str
    spec_digest: str
    template_digest: str
    """Digest of the spec's task template: what the tasks run (image, command, env...)."""
    previous_image: str | None
    previous_digest: str | None
    previous_template_digest: str | None
    replicas: int | None
    running: int
    running_current: int
    """Running tasks whose container spec is the service's current one."""

    @property
    def is_rollback(self) -> bool:
        """The current spec came from a rollback (by hand or an update's failure action)."""
        return self.update_state in ROLLBACK_STATES

    @property
    def settled(self) -> bool:
        """No update or rollback is in progress."""
        return self.update_state is None or self.update_state in SETTLED_STATES

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return out


def _image(spec: Any) -> str:
    return str(((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))


def _revision(attrs: dict[str, Any], tasks: list[dict[str, Any]]) -> ServiceRevision:
    spec = attrs["Spec"]
    previous = attrs.get("PreviousSpec")
    status = attrs.get("UpdateStatus") or {}
    replicated = (spec.get("Mode") or {}).get("Replicated")
    current_container = spec_digest((spec.get("TaskTemplate") or {}).get("ContainerSpec"))
    running = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
    on_current = [
        t for t in running
        if spec_digest((t.get("Spec") or {}).get("ContainerSpec")) == current_container
    ]
    return ServiceRevision(
        id=attrs["ID"],
        name=spec["Name"],
        version=int(attrs["Version"]["Index"]),
        updated_at=parse_time(attrs.get("UpdatedAt")),
        update_state=status.get("State") or None,
        update_message=status.get("Message") or None,
        image=_image(spec),
        spec_digest=spec_digest(spec),
        template_digest=spec_digest(spec.get("TaskTemplate")),
        previous_image=_image(previous) if previous else None,
        previous_digest=spec_digest(previous) if previous else None,
        previous_template_digest=spec_digest(previous.get("TaskTemplate")) if previous else None,
        replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
        running=len(running),
        running_current=len(on_current),
    )


class DeploysAdapter(DockerAdapter):
    """The Docker adapter, plus Swarm service revisions and rollback."""

    def revision(self, name: str) -> ServiceRevision | None:
        """The service called exactly ``name``, or None."""
        api = self._api()
        with self._calls(f"inspect service {name!r}"):
            try:
                attrs = api.inspect_service(name)
            except docker.errors.NotFound:
                return None
            if attrs["Spec"]["Name"] != name:
                return None
            tasks = api.tasks(filters={"service": attrs["ID"], "desired-state": "running"})
        return _revision(attrs, tasks)

    def rollback_service(self, name: str, version: int) -> None:
        """Ask the engine to put the service back on its previous spec (a server-side
        rollback: the engine swaps the spec and the previous spec, and marks the update
        status as a rollback). ``version`` is the service version this decision was made on:
        the engine refuses the call ("update out of sequence") if the service changed since.
        """
        api = self._api()
        with self._calls(f"roll back service {name!r}"):
            try:
                attrs = api.inspect_service(name)
            except docker.errors.NotFound as exc:
                raise PlaybookError(f"service {name!r} is gone") from exc
            if attrs["Spec"]["Name"] != name:
                raise PlaybookError(f"service {name!r} is gone")
            # docker-py's update_service has no parameter for the engine's rollback
            # (``?rollback=previous``, the call `docker service rollback` makes), so the
            # request goes through the client's own helpers; the body is ignored by the engine.
            response = api._post_json(
                api._url("/services/{0}/update", attrs["ID"]),
                data=attrs["Spec"],
                params={"version": version, "rollback": "previous"},
            )
            api._raise_for_status(response)

    def wait_rollout(self, name: str, timeout_s: float) -> ServiceRevision:
        """Poll until the service's update has settled and every replica runs its current
        spec; return the last revision seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            revision = self.revision(name)
            if revision is None:
                raise PlaybookError(f"service {name!r} disappeared while waiting")
            if revision.update_state in ("paused", "rollback_paused"):
                return revision  # the engine stopped it; waiting longer changes nothing
            done = revision.settled
            if revision.replicas is not None:
                done = done and revision.running_current == revision.replicas == revision.running
            if done or time.monotonic() >= deadline:
                return revision
            time.sleep(self._poll_s)

    # -- compose ----------------------------------------------------------------------------

    def compose_revision(self, project: str, service: str, previous_label: str) -> ComposeRevision:
        """A Compose service's replicas with their image, the previous image recorded in
        ``previous_label``, whether they came from a rollback, and when they were created."""
        api = self._api()
        replicas = []
        for state in self.compose_replicas(project, service):
            with self._calls(f"inspect container {state.name!r}"):
                try:
                    attrs = api.inspect_container(state.id)
                except docker.errors.NotFound:
                    continue
            replicas.append(replica_of(attrs, state.compose_number, previous_label))
        return ComposeRevision(project, service, replicas)

    def image_id(self, reference: str) -> str | None:
        """The id of a local image (never pulled), or None when it is not here."""
        api = self._api()
        with self._calls(f"inspect image {reference[:80]!r}"):
            try:
                return str(api.inspect_image(reference)["Id"])
            except docker.errors.NotFound:
                return None

    def recreate_on_image(
        self,
        container_id: str,
        image: str,
        *,
        set_labels: dict[str, str],
        drop_labels: tuple[str, ...],
        previous_label: str,
        stop_timeout_s: int,
        wait_timeout_s: float,
    ) -> ComposeReplica:
        """Replace a container by one of the same name and configuration on ``image`` (see
        :mod:`receiver.adapters.compose_deploys`); the old one is put back if the new one
        does not run."""
        api = self._api()
        with self._calls(f"recreate container {container_id[:12]}"):
            attrs = api.inspect_container(container_id)
            name = str(attrs["Name"]).lstrip("/")
            config, networks = recreate_config(api, attrs, image, set_labels, drop_labels)
            api.stop(container_id, timeout=stop_timeout_s)
            aside = f"{name}-replaced-{container_id[:12]}"
            api.rename(container_id, aside)
            new_id: str | None = None
            try:
                new_id = str(api.create_container_from_config(config, name=name)["Id"])
                for network, endpoint in networks:
                    api.connect_container_to_network(new_id, network, **endpoint)
                api.start(new_id)
            except docker.errors.APIError:
                self._put_back(api, container_id, name, new_id)
                raise
        state = self.wait_ready(new_id, wait_timeout_s)
        if not state.ready:
            with self._calls(f"put back container {name!r}"):
                self._put_back(api, container_id, name, new_id)
            raise PlaybookError(
                f"{name!r} on {image!r} did not become ready ({state.status}); the old "
                "container was put back"
            )
        with self._calls(f"remove the replaced container {aside!r}"):
            api.remove_container(container_id)
        with self._calls(f"inspect container {name!r}"):
            attrs = api.inspect_container(new_id)
        return replica_of(attrs, number_of(config, state.compose_number), previous_label)

    @staticmethod
    def _put_back(api: Any, old_id: str, name: str, new_id: str | None) -> None:
        if new_id is not None:
            api.remove_container(new_id, force=True)
        api.rename(old_id, name)
        api.start(old_id)
