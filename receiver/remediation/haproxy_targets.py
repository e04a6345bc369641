"""The HAProxy part of the targets allowlist (``targets.haproxy.<name>``).

Each entry names one HAProxy's admin socket (the runtime API, ``stats socket ... level
admin``) and, per backend, the servers whose state remediation may change::

    haproxy:
      edge:
        socket: /run/haproxy/admin.sock
        backends:
          app: {servers: [web1, web2], min_ready: 1}
          api: {servers: ["*"]}

A server is allowed when its backend is listed and its name is in that backend's
``servers`` (``"*"``: any server of that backend). Names are checked exactly, after the
playbook's ``Params`` pattern, so a label value such as ``app/web1;shutdown`` or ``*`` never
names more than one listed server. ``min_ready``: a change that would leave fewer servers of
the backend serving (neither in maintenance nor draining, and not down by their health
check) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from receiver.errors import TargetNotAllowed

if TYPE_CHECKING:
    from receiver.remediation.targets import TargetsConfig

# HAProxy's own rule for proxy and server names (letters, digits, '-', '_', '.', ':'),
# bounded; no space, '/', ';', '#' or control character, so a name is one word of a runtime
# API command and never a separator or a second command.
HaproxyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
ServerOrWildcard = Annotated[
    str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$")
]

WILDCARD = "*"


def _show(value: object, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


class HaproxyBackend(BaseModel):
    """The servers of one backend that may be put into maintenance, drained or made ready."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[ServerOrWildcard] = Field(min_length=1, max_length=1000)
    min_ready: int = Field(default=0, ge=0, le=1000)


class HaproxyTarget(BaseModel):
    """One HAProxy, reached through its admin socket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: Path
    backends: dict[HaproxyName, HaproxyBackend] = Field(min_length=1)
    timeout_s: float = Field(default=5, gt=0, le=60)

    @model_validator(mode="after")
    def _absolute(self) -> HaproxyTarget:
        if not self.socket.is_absolute():
            raise ValueError("socket must be an absolute path")
        return self

    def backend(self, backend: str, target: str) -> HaproxyBackend:
        found = self.backends.get(backend)
        if found is None:
            raise TargetNotAllowed(
                f"backend {_show(backend)} is not in targets.haproxy.{target}.backends"
            )
        return found

    def check_server(self, backend: str, server: str, target: str) -> HaproxyBackend:
        """The backend's entry when ``backend/server`` is allowed; TargetNotAllowed otherwise."""
        entry = self.backend(backend, target)
        if WILDCARD not in entry.servers and server not in entry.servers:
            raise TargetNotAllowed(
                f"server {_show(server)} is not in "
                f"targets.haproxy.{target}.backends.{backend}.servers"
            )
        return entry


def haproxy_target(targets: TargetsConfig, name: str) -> HaproxyTarget:
    """The allowlisted HAProxy called ``name``; TargetNotAllowed when there is none."""
    found = targets.haproxy.get(name)
    if found is None:
        raise TargetNotAllowed(f"haproxy target {_show(name)} is not in targets.haproxy")
    return found
