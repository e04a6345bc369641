"""The targets allowlist: what remediation may touch (the ``targets:`` section of remediator.yml).

Every playbook parameter that names a real thing (a container, a Swarm service, a Compose
service, a PostgreSQL or Redis target, a backup location) is checked here, after the
playbook's ``Params`` model has validated its shape. A value that came from an alert label
therefore has to pass two gates: a strict pattern with a length bound, and this allowlist.
Anything not listed raises :class:`~receiver.errors.TargetNotAllowed` with a message that says
which section refused it.

The constrained string types below (``ContainerName``, ``TargetName``...) are shared with the
playbooks' ``Params`` models so that both gates use the same patterns.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from receiver.errors import TargetNotAllowed
from receiver.remediation.deploy_targets import DeploymentTargets
from receiver.remediation.haproxy_targets import HaproxyTarget
from receiver.secrets import SecretRef

# Names are ASCII, start with a letter or digit, and are length-bounded, so that neither shell
# metacharacters, path separators nor huge values can pass.
ContainerName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
ContainerPattern = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_.*?\[\]!-]{1,128}$")]
TargetName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")]
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]
ComposeProject = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
DatabaseName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]{0,62}$")]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]{0,62}$")]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,127}$")]
# Label values are only ever compared and passed to the Docker API as filters, never to a
# shell; they are bounded and may not hold control characters.
LabelValue = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{0,256}$")]
NameOrWildcard = Annotated[str, StringConstraints(pattern=r"^(\*|[a-zA-Z_][a-zA-Z0-9_-]{0,62})$")]
LabelSelector = Annotated[dict[LabelKey, LabelValue], Field(min_length=1, max_length=8)]

WILDCARD = "*"


def show(value: object, limit: int = 64) -> str:
    """A bounded ``repr`` for error messages: hostile or huge values never flood a log line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} chars)"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DockerEndpoint(_Model):
    """Where the Docker daemon is; ``base_url`` unset means ``DOCKER_HOST`` or the local socket."""

    base_url: (
        Annotated[str, StringConstraints(pattern=r"^(unix|tcp|ssh|npipe)://\S{1,400}$")] | None
    ) = None
    timeout_s: int = Field(default=30, ge=1, le=600)


class ContainerAllowlist(_Model):
    """Containers that may be restarted: exact names, fnmatch name patterns, or label selectors.

    A container is allowed when its name is listed, or its name matches a pattern, or its labels
    contain every ``key: value`` pair of at least one selector.
    """

    names: list[ContainerName] = Field(default_factory=list)
    patterns: list[ContainerPattern] = Field(default_factory=list)
    labels: list[LabelSelector] = Field(default_factory=list)


class ReplicaBounds(_Model):
    min_replicas: int = Field(default=0, ge=0, le=1000)
    max_replicas: int = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self

    def check(self, replicas: int, what: str) -> None:
        """Refuse an absolute replica count outside ``[min_replicas, max_replicas]``."""
        if not self.min_replicas <= replicas <= self.max_replicas:
            raise TargetNotAllowed(
                f"{replicas} replicas for {what} is outside the allowed range "
                f"{self.min_replicas}..{self.max_replicas} (targets allowlist)"
            )

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


class ComposeService(ReplicaBounds):
    """A Compose project's service, identified by the ``com.docker.compose.*`` labels."""

    project: ComposeProject
    service: ServiceName


def _name_allowed(name: str, allowed: list[str]) -> bool:
    return WILDCARD in allowed or name in allowed


class PostgresTarget(_Model):
    """A PostgreSQL server and what may be acted on there.

    ``databases`` and ``roles`` list exact names; ``"*"`` allows any. Backends of superusers,
    replication (walsender) and autovacuum workers are never touched unless both this target
    and the playbook parameters allow it. ``bin_dir`` pins where pg_dump/pg_restore/psql are
    (default: looked up on PATH).
    """

    dsn: SecretRef
    databases: list[NameOrWildcard] = Field(min_length=1)
    roles: list[NameOrWildcard] = Field(default_factory=list)
    allow_superuser: bool = False
    allow_replication: bool = False
    allow_autovacuum: bool = False
    connect_timeout_s: int = Field(default=5, ge=1, le=60)
    bin_dir: Path | None = None

    def database_allowed(self, database: str) -> bool:
        return _name_allowed(database, self.databases)

    def role_allowed(self, role: str) -> bool:
        return _name_allowed(role, self.roles)

    def check_database(self, database: str, target: str) -> None:
        if not self.database_allowed(database):
            raise TargetNotAllowed(
                f"database {show(database)} is not in targets.postgres.{target}.databases"
            )

    def check_role(self, role: str, target: str) -> None:
        if not self.role_allowed(role):
            raise TargetNotAllowed(f"role {show(role)} is not in targets.postgres.{target}.roles")

    def check_backend_kinds(
        self, target: str, *, superuser: bool, replication: bool, autovacuum: bool
    ) -> None:
        """Refuse parameters asking for protected backends that this target does not allow."""
        for asked, allowed, what in (
            (superuser, self.allow_superuser, "superuser"),
            (replication, self.allow_replication, "replication"),
            (autovacuum, self.allow_autovacuum, "autovacuum"),
        ):
            if asked and not allowed:
                raise TargetNotAllowed(
                    f"{what} backends may not be touched on postgres target {target!r} "
                    f"(set targets.postgres.{target}.allow_{what}: true to allow it)"
                )


# Redis glob metacharacters: a pattern's literal prefix ends at the first of them.
GLOB_SPECIALS = frozenset("*?[\\")
# A key prefix is literal text: no glob metacharacter, no control character, bounded.
KeyPrefix = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f*?\[\\]{1,256}$")]


def literal_prefix(pattern: str) -> str:
    """The characters of a Redis glob before its first ``*``, ``?``, ``[`` or ``\\``.

    Every key the pattern can match starts with it (Redis compares literal characters
    exactly, case included); an escape ends it too, so ``\\x`` has an empty prefix.
    """
    for i, ch in enumerate(pattern):
        if ch in GLOB_SPECIALS:
            return pattern[:i]
    return pattern


class RedisTarget(_Model):
    """A Redis server: which dbs may be flushed, which key prefixes a pattern may reach, and
    whether FLUSHALL is allowed at all.

    ``key_prefixes`` (literal text, e.g. ``session:``): a pattern's literal prefix must start
    with one of them, and every key is checked against it before it is removed. Unset: any
    pattern, but pattern mode is then high risk (it needs approval under the default policy).
    """

    url: SecretRef
    dbs: list[Annotated[int, Field(ge=0, le=1023)]] = Field(
        default_factory=lambda: [0], min_length=1
    )
    key_prefixes: list[KeyPrefix] | None = Field(default=None, min_length=1, max_length=100)
    allow_flushall: bool = False
    socket_timeout_s: float = Field(default=5, gt=0, le=120)

    def prefix_for(self, pattern: str) -> str | None:
        """The listed key prefix that covers ``pattern`` (None when none does, or none is
        listed)."""
        literal = literal_prefix(pattern)
        for prefix in self.key_prefixes or ():
            if literal.startswith(prefix):
                return prefix
        return None

    def check_pattern(self, pattern: str, target: str) -> None:
        """Refuse a pattern that can reach keys outside ``key_prefixes`` (when they are set)."""
        if self.key_prefixes is not None and self.prefix_for(pattern) is None:
            raise TargetNotAllowed(
                f"key pattern {show(pattern)} (literal prefix {show(literal_prefix(pattern))}) "
                f"is not under targets.redis.{target}.key_prefixes"
            )

    def check_db(self, db: int, target: str) -> None:
        if db not in self.dbs:
            raise TargetNotAllowed(f"redis db {show(db)} is not in targets.redis.{target}.dbs")

    def check_flushall(self, target: str) -> None:
        if not self.allow_flushall:
            raise TargetNotAllowed(
                f"FLUSHALL is not allowed on redis target {target!r} "
                f"(targets.redis.{target}.allow_flushall is false)"
            )


class BackupLocation(_Model):
    """A directory of backups of one database on one PostgreSQL target.

    ``verify_query`` runs after a restore; its first column must be truthy. It is written by
    the operator here, never taken from playbook parameters.
    """

    directory: Path
    postgres: TargetName
    database: DatabaseName
    verify_query: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = "SELECT true"
    dump_timeout_s: int = Field(default=1800, ge=1, le=86400)
    restore_timeout_s: int = Field(default=3600, ge=1, le=86400)

    @model_validator(mode="after")
    def _absolute(self) -> BackupLocation:
        if not self.directory.is_absolute():
            raise ValueError("directory must be an absolute path")
        return self


# ``host:port`` with ``*`` allowed in the host (not inside brackets) and as the whole port.
HostGlob = Annotated[
    str,
    StringConstraints(pattern=r"^(\[[0-9a-fA-F:.]{2,45}\]|[a-zA-Z0-9*_.-]{1,253}):(\*|[0-9]{1,5})$"),
]


class HttpTargets(_Model):
    """Hosts that diagnostic and verification checks may call over HTTP (Prometheus too).

    Each entry is a ``host:port`` glob: ``*`` in the host matches within one DNS label (never
    across a dot), a port of ``*`` matches any port, and an IPv6 host is written in brackets
    (``[::1]:8080``). A URL without a port is matched with its scheme's (80, 443). Every hop
    of a redirect must match too. Empty (the default): no HTTP check may call anything.
    """

    hosts: list[HostGlob] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _normal_ipv6(self) -> HttpTargets:
        for glob in self.hosts:
            host = glob.rpartition(":")[0]
            if host.startswith("["):
                try:
                    ipaddress.IPv6Address(host[1:-1])
                except ValueError as exc:
                    raise ValueError(f"{glob!r}: not an IPv6 address in brackets") from exc
        return self

    def allows(self, host: str, port: int) -> bool:
        """Whether ``host:port`` (a hostname, an IPv4 address or a bracketed IPv6 one) is
        listed."""
        key = f"{_normal_host(host)}:{port}"
        return any(_host_glob(glob).fullmatch(key) for glob in self.hosts)


def _normal_host(host: str) -> str:
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return host
    return host


@lru_cache(maxsize=1024)
def _host_glob(glob: str) -> re.Pattern[str]:
    host, _, port = glob.rpartition(":")
    host_re = "[^.:]*".join(re.escape(part) for part in _normal_host(host).split("*"))
    port_re = "[0-9]{1,5}" if port == "*" else re.escape(str(int(port)))
    return re.compile(f"{host_re}:{port_re}")


class TargetsConfig(_Model):
    """The whole allowlist. An empty config allows nothing."""

    docker: DockerEndpoint = Field(default_factory=DockerEndpoint)
    containers: ContainerAllowlist = Field(default_factory=ContainerAllowlist)
    swarm_services: dict[ServiceName, ReplicaBounds] = Field(default_factory=dict)
    compose_services: list[ComposeService] = Field(default_factory=list)
    postgres: dict[TargetName, PostgresTarget] = Field(default_factory=dict)
    redis: dict[TargetName, RedisTarget] = Field(default_factory=dict)
    backups: dict[TargetName, BackupLocation] = Field(default_factory=dict)
    http: HttpTargets = Field(default_factory=HttpTargets)
    haproxy: dict[TargetName, HaproxyTarget] = Field(default_factory=dict)
    deployments: DeploymentTargets = Field(default_factory=DeploymentTargets)

    @model_validator(mode="after")
    def _backups_point_at_allowed_databases(self) -> TargetsConfig:
        for name, location in self.backups.items():
            target = self.postgres.get(location.postgres)
            if target is None:
                raise ValueError(
                    f"backups.{name}.postgres names {location.postgres!r}, "
                    "which is not a postgres target"
                )
            if not target.database_allowed(location.database):
                raise ValueError(
                    f"backups.{name}.database {location.database!r} is not in "
                    f"postgres.{location.postgres}.databases"
                )
        return self

    # -- containers -------------------------------------------------------------------------

    def container_allowed(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        """Whether a container, by its name and (when known) its labels, is allowlisted."""
        allow = self.containers
        if name in allow.names:
            return True
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in allow.patterns):
            return True
        if labels is not None:
            return any(_selector_matches(sel, labels) for sel in allow.labels)
        return False

    def check_container(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        if not self.container_allowed(name, labels):
            raise TargetNotAllowed(
                f"container {show(name)} is not allowed by targets.containers "
                "(not in names, matches no pattern, and no label selector matches)"
            )

    def check_label_selector(self, selector: Mapping[str, str]) -> None:
        """A selector is allowed when it is at least as narrow as one allowlisted selector.

        Every container that it matches then carries an allowlisted selector's labels.
        """
        if not any(_selector_matches(sel, selector) for sel in self.containers.labels):
            raise TargetNotAllowed(
                f"label selector {show(dict(selector))} is not covered by any "
                "selector in targets.containers.labels"
            )

    # -- docker services ----------------------------------------------------------------------

    def swarm_service(self, name: str) -> ReplicaBounds:
        bounds = self.swarm_services.get(name)
        if bounds is None:
            raise TargetNotAllowed(f"swarm service {show(name)} is not in targets.swarm_services")
        return bounds

    def compose_service(self, project: str, service: str) -> ComposeService:
        for entry in self.compose_services:
            if entry.project == project and entry.service == service:
                return entry
        raise TargetNotAllowed(
            f"compose service {show(service)} of project {show(project)} is not in "
            "targets.compose_services"
        )

    # -- data stores ----------------------------------------------------------------------------

    def postgres_target(self, name: str) -> PostgresTarget:
        target = self.postgres.get(name)
        if target is None:
            raise TargetNotAllowed(f"postgres target {show(name)} is not in targets.postgres")
        return target

    def redis_target(self, name: str) -> RedisTarget:
        target = self.redis.get(name)
        if target is None:
            raise TargetNotAllowed(f"redis target {show(name)} is not in targets.redis")
        return target

    def backup_location(self, name: str) -> BackupLocation:
        location = self.backups.get(name)
        if location is None:
            raise TargetNotAllowed(f"backup location {show(name)} is not in targets.backups")
        return location


def _selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
