"""The Docker adapter: containers, Swarm services and Compose replicas, through the docker SDK.

Errors: an unreachable daemon (no socket, connection refused, timeout) raises
:class:`AdapterError`; the daemon refusing an action raises :class:`PlaybookError`.
Lookups by name return ``None`` when nothing has exactly that name (a name is never taken as
an id prefix).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions

from receiver.adapters.base import ClosingAdapter
from receiver.errors import AdapterError, PlaybookError

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"

_DEFAULT_NETWORK_MODES = {"default", "bridge", "host", "none", ""}


@dataclass(frozen=True)
class ContainerState:
    """What a playbook needs to know about one container."""

    id: str
    name: str
    status: str
    health: str | None
    restart_count: int
    started_at: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Running, and healthy when the container has a healthcheck."""
        return self.status == "running" and self.health in (None, "healthy")

    @property
    def compose_number(self) -> int:
        raw = self.labels.get(COMPOSE_NUMBER, "")
        if raw.isdigit():
            return int(raw)
        match = re.search(r"[-_](\d+)$", self.name)
        return int(match.group(1)) if match else 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("labels")
        return out


@dataclass(frozen=True)
class ServiceState:
    """A Swarm service: its mode, desired replicas (None when global) and running tasks."""

    id: str
    name: str
    mode: str
    replicas: int | None
    running: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _container_state(attrs: Mapping[str, Any]) -> ContainerState:
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    return ContainerState(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        status=state.get("Status", "unknown"),
        health=health.get("Status") or None,
        restart_count=int(attrs.get("RestartCount", 0)),
        started_at=state.get("StartedAt", ""),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
    )


@dataclass(frozen=True)
class ContainerDetails:
    """Read-only facts for diagnostics: state, restarts, image, and when it (re)started."""

    id: str
    name: str
    status: str
    health: str | None
    restart_count: int
    started_at: str
    finished_at: str
    exit_code: int | None
    oom_killed: bool
    image: str
    image_id: str
    created: str
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("labels")
        return out


def _container_details(attrs: Mapping[str, Any]) -> ContainerDetails:
    base = _container_state(attrs)
    state = attrs.get("State") or {}
    exit_code = state.get("ExitCode")
    return ContainerDetails(
        id=base.id,
        name=base.name,
        status=base.status,
        health=base.health,
        restart_count=base.restart_count,
        started_at=base.started_at,
        finished_at=str(state.get("FinishedAt", "")),
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        oom_killed=bool(state.get("OOMKilled", False)),
        image=str((attrs.get("Config") or {}).get("Image", "")),
        image_id=str(attrs.get("Image", "")),
        created=str(attrs.get("Created", "")),
        labels=base.labels,
    )


class DockerAdapter(ClosingAdapter):
    """A small interface over one Docker daemon. Use it as a context manager."""

    def __init__(
        self, base_url: str | None = None, timeout_s: int = 30, poll_interval_s: float = 0.25
    ) -> None:
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._poll_s = poll_interval_s
        self._client: docker.DockerClient | None = None

    @property
    def where(self) -> str:
        return self._base_url or "the default Docker endpoint"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def _calls(self, action: str) -> Iterator[None]:
        """Translate the SDK's errors: unreachable -> AdapterError, refused -> PlaybookError."""
        try:
            yield
        except docker.errors.APIError as exc:
            raise PlaybookError(f"docker refused to {action}: {exc.explanation or exc}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise AdapterError(
                f"docker daemon unreachable at {self.where} while trying to {action}: {exc}"
            ) from exc

    def _api(self) -> Any:
        if self._client is None:
            with self._calls("connect"):
                if self._base_url is None:
                    self._client = docker.from_env(timeout=self._timeout_s)
                else:
                    self._client = docker.DockerClient(
                        base_url=self._base_url, timeout=self._timeout_s
                    )
        return self._client.api

    def ping(self) -> None:
        with self._calls("ping"):
            self._api().ping()

    # -- containers -------------------------------------------------------------------------

    def container(self, name_or_id: str, *, exact_name: bool = True) -> ContainerState | None:
        """The container with exactly this name (or this full id), or None."""
        api = self._api()
        with self._calls(f"inspect container {name_or_id!r}"):
            try:
                attrs = api.inspect_container(name_or_id)
            except docker.errors.NotFound:
                return None
        found = _container_state(attrs)
        if exact_name and name_or_id not in (found.name, found.id):
            return None
        return found

    def details(self, name: str) -> ContainerDetails | None:
        """Read-only: the container with exactly this name, with image and exit facts."""
        api = self._api()
        with self._calls(f"inspect container {name!r}"):
            try:
                attrs = api.inspect_container(name)
            except docker.errors.NotFound:
                return None
        found = _container_details(attrs)
        return found if name in (found.name, found.id) else None

    def logs(self, container_id: str, *, tail: int) -> str:
        """Read-only: the last ``tail`` lines of stdout and stderr, as text."""
        api = self._api()
        with self._calls(f"read the logs of {container_id[:12]}"):
            raw = api.logs(container_id, stdout=True, stderr=True, tail=tail, timestamps=False)
        data = raw if isinstance(raw, bytes) else b"".join(raw)
        return data.decode("utf-8", "replace")

    def containers(self, labels: Mapping[str, str]) -> list[ContainerState]:
        """Every container (running or not) carrying all of these labels, sorted by name."""
        api = self._api()
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with self._calls("list containers"):
            summaries = api.containers(all=True, filters=filters)
        found = []
        for summary in summaries:
            state = self.container(summary["Id"], exact_name=False)
            if state is not None:
                found.append(state)
        return sorted(found, key=lambda c: c.name)

    def restart(self, container_id: str, stop_timeout_s: int) -> None:
        api = self._api()
        with self._calls(f"restart container {container_id[:12]}"):
            try:
                api.restart(container_id, timeout=stop_timeout_s)
            except docker.errors.NotFound as exc:
                raise PlaybookError(f"container {container_id[:12]} is gone") from exc

    def wait_ready(self, container_id: str, timeout_s: float) -> ContainerState:
        """Poll until running (and healthy if it has a healthcheck); return the last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.container(container_id, exact_name=False)
            if state is None:
                raise PlaybookError(f"container {container_id[:12]} disappeared while waiting")
            if state.ready or time.monotonic() >= deadline:
                return state
            time.sleep(self._poll_s)

    def remove(self, container_id: str, stop_timeout_s: int) -> None:
        api = self._api()
        with self._calls(f"remove container {container_id[:12]}"):
            try:
                api.stop(container_id, timeout=stop_timeout_s)
                api.remove_container(container_id)
            except docker.errors.NotFound:
                return

    # -- swarm ------------------------------------------------------------------------------

    def service(self, name: str) -> ServiceState | None:
        api = self._api()
        with self._calls(f"inspect service {name!r}"):
            try:
                attrs = api.inspect_service(name)
            except docker.errors.NotFound:
                return None
            if attrs["Spec"]["Name"] != name:
                return None
            tasks = api.tasks(filters={"service": attrs["ID"], "desired-state": "running"})
        mode_spec = attrs["Spec"].get("Mode") or {}
        replicated = mode_spec.get("Replicated")
        running = sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running")
        return ServiceState(
            id=attrs["ID"],
            name=name,
            mode="replicated" if replicated is not None else "global",
            replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
            running=running,
        )

    def scale_service(self, name: str, replicas: int) -> None:
        client = self._api()
        with self._calls(f"scale service {name!r}"):
            attrs = client.inspect_service(name)
            if "Replicated" not in (attrs["Spec"].get("Mode") or {}):
                raise PlaybookError(f"service {name!r} is global; it has no replica count")
            client.update_service(
                attrs["ID"],
                attrs["Version"]["Index"],
                mode=docker.types.ServiceMode("replicated", replicas),
                fetch_current_spec=True,
            )

    def wait_service(self, name: str, replicas: int, timeout_s: float) -> ServiceState:
        """Poll until exactly ``replicas`` tasks run; return the last state seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.service(name)
            if state is None:
                raise PlaybookError(f"service {name!r} disappeared while waiting")
            if state.running == replicas or time.monotonic() >= deadline:
                return state
            time.sleep(self._poll_s)

    # -- compose ----------------------------------------------------------------------------

    def compose_replicas(self, project: str, service: str) -> list[ContainerState]:
        """A Compose service's containers (one-off ``run`` containers excluded), by number."""
        found = self.containers({COMPOSE_PROJECT: project, COMPOSE_SERVICE: service})
        replicas = [c for c in found if c.labels.get(COMPOSE_ONEOFF, "False") != "True"]
        return sorted(replicas, key=lambda c: (c.compose_number, c.name))

    def create_compose_replica(self, template_id: str, number: int) -> ContainerState:
        """Create and start replica ``number`` from an existing replica's configuration."""
        api = self._api()
        with self._calls(f"create a replica from {template_id[:12]}"):
            attrs = api.inspect_container(template_id)
            config, name, extra_networks = _replica_config(api, attrs, number)
            created = api.create_container_from_config(config, name=name)
            for network, aliases in extra_networks:
                api.connect_container_to_network(created["Id"], network, aliases=aliases)
            api.start(created["Id"])
        state = self.container(created["Id"], exact_name=False)
        if state is None:
            raise PlaybookError(f"replica {name!r} disappeared right after it was created")
        return state


def replica_name(template_name: str, project: str, service: str, number: int) -> str:
    """``web-3`` from ``web-1`` (or ``web_3`` from ``web_1``); ``project-service-N`` otherwise."""
    match = re.fullmatch(r"(.*[-_])\d+", template_name)
    if match:
        return f"{match.group(1)}{number}"
    return f"{project}-{service}-{number}"


def _replica_config(
    api: Any, attrs: Mapping[str, Any], number: int
) -> tuple[dict[str, Any], str, list[tuple[str, list[str]]]]:
    cfg = attrs["Config"]
    labels = dict(cfg.get("Labels") or {})
    project, service = labels.get(COMPOSE_PROJECT, ""), labels.get(COMPOSE_SERVICE, "")
    labels[COMPOSE_NUMBER] = str(number)
    host = dict(attrs.get("HostConfig") or {})
    for bindings in (host.get("PortBindings") or {}).values():
        if any(b.get("HostPort") for b in bindings or []):
            raise PlaybookError(
                f"{service!r} publishes fixed host ports; another replica could not bind them"
            )
    name = replica_name(str(attrs["Name"]).lstrip("/"), project, service, number)
    networks = list(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    mode = str(host.get("NetworkMode") or "")
    networking = None
    extra: list[tuple[str, list[str]]] = []
    if mode not in _DEFAULT_NETWORK_MODES and not mode.startswith("container:"):
        aliases = [service] if service else []
        networking = api.create_networking_config(
            {mode: api.create_endpoint_config(aliases=aliases)}
        )
        extra = [(net, aliases) for net in networks if net != mode]
    config = api.create_container_config(
        image=cfg["Image"],
        command=cfg.get("Cmd"),
        entrypoint=cfg.get("Entrypoint"),
        environment=cfg.get("Env"),
        working_dir=cfg.get("WorkingDir") or None,
        user=cfg.get("User") or None,
        labels=labels,
        stop_signal=cfg.get("StopSignal"),
        healthcheck=cfg.get("Healthcheck"),
        tty=bool(cfg.get("Tty")),
        stdin_open=bool(cfg.get("OpenStdin")),
        host_config=host,
        networking_config=networking,
        detach=True,
    )
    config["ExposedPorts"] = cfg.get("ExposedPorts")
    config["Volumes"] = cfg.get("Volumes")
    return config, name, extra
