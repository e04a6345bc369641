"""Fixtures for the playbook tests, on the real services that scripts/services.sh starts.

PostgreSQL, Redis and dockerd are reached at ``REMEDIATOR_TEST_PG_DSN``,
``REMEDIATOR_TEST_REDIS_URL`` and the default Docker socket. Everything a test creates carries
a unique prefix and is removed in teardown: a fresh database per module, a distinct Redis db
(``REMEDIATOR_TEST_REDIS_DB``, 13 by default) with prefixed keys, prefixed containers,
services and networks. Nothing here mocks a client: tests arrange and observe with the real
SDKs and act through the playbooks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psycopg
import psycopg.conninfo
import pytest
import redis
from psycopg import sql

from playbooks.base import PlaybookContext
from receiver.remediation.targets import TargetsConfig
from tests.support import free_port, wait_until

PG_DSN = os.environ.get("REMEDIATOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS_URL", "redis://127.0.0.1:63790/0")
REDIS_DB = int(os.environ.get("REMEDIATOR_TEST_REDIS_DB", "13"))
IMAGE = "local/busybox:test"
PG_BIN = Path(os.environ.get("REMEDIATOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"rmtest-{RUN_ID}"
OWNER_LABEL = "remediator.test.run"

# The secrets that targets refer to (env:NAME); set for the whole session.
PG_DSN_ENV = f"RMTEST_{RUN_ID}_PG_DSN"
CLOSED_PG_ENV = f"RMTEST_{RUN_ID}_PG_CLOSED"
REDIS_URL_ENV = f"RMTEST_{RUN_ID}_REDIS_URL"
CLOSED_REDIS_ENV = f"RMTEST_{RUN_ID}_REDIS_CLOSED"


def make_targets(**sections: Any) -> TargetsConfig:
    """A TargetsConfig from plain dicts, the way remediator.yml would give it."""
    return TargetsConfig.model_validate(sections)


def make_ctx(targets: TargetsConfig, **over: Any) -> PlaybookContext:
    return PlaybookContext(targets=targets, **over)


@pytest.fixture(scope="session", autouse=True)
def secret_env() -> Iterator[None]:
    """Secrets as the allowlist wants them: references to environment variables."""
    values = {
        PG_DSN_ENV: PG_DSN,
        CLOSED_PG_ENV: f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        REDIS_URL_ENV: REDIS_URL,
        CLOSED_REDIS_ENV: f"redis://127.0.0.1:{free_port()}/0",
    }
    os.environ.update(values)
    yield
    for name in values:
        os.environ.pop(name, None)


# -- docker ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.images.get(IMAGE)
    except docker.errors.DockerException as exc:
        pytest.fail(f"dockerd or {IMAGE} unavailable ({exc}); run: bash scripts/services.sh")
    yield client
    for service in client.services.list(filters={"label": f"{OWNER_LABEL}={RUN_ID}"}):
        service.remove()
    for container in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": f"{OWNER_LABEL}={RUN_ID}"}):
        network.remove()
    client.close()


@dataclass
class DockerFactory:
    """Creates prefixed containers, services and networks; removes them on teardown."""

    client: docker.DockerClient
    containers: list[Any] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)

    def name(self, suffix: str) -> str:
        return f"{PREFIX}-{suffix}-{uuid.uuid4().hex[:4]}"

    def container(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        command: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        created = self.client.containers.run(
            IMAGE,
            command or ["sleep", "3600"],
            name=name,
            detach=True,
            labels={OWNER_LABEL: RUN_ID, **(labels or {})},
            stop_signal="SIGKILL",
            **kwargs,
        )
        self.containers.append(created)
        return created

    def service(self, name: str, replicas: int = 1) -> Any:
        created = self.client.services.create(
            IMAGE,
            ["sleep", "3600"],
            name=name,
            labels={OWNER_LABEL: RUN_ID},
            mode=docker.types.ServiceMode("replicated", replicas),
            stop_grace_period=1_000_000_000,
        )
        self.services.append(created)
        return created

    def network(self, name: str) -> Any:
        created = self.client.networks.create(name, labels={OWNER_LABEL: RUN_ID})
        self.networks.append(created)
        return created

    def cleanup(self) -> None:
        for service in self.services:
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
        owned = self.client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={RUN_ID}"})
        for container in owned:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for network in self.networks:
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()


@pytest.fixture
def dockerf(docker_client: docker.DockerClient) -> Iterator[DockerFactory]:
    factory = DockerFactory(docker_client)
    yield factory
    factory.cleanup()


# -- postgresql -----------------------------------------------------------------------------


def pg_url(dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(PG_DSN, dbname=dbname)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unavailable at {PG_DSN} ({exc}); run: bash scripts/services.sh")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def app_role(pg_admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A plain LOGIN role, so that 'never superusers' can be tested both ways."""
    role = f"rmtest_app_{RUN_ID}"
    pg_admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    pg_admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def pg_database(pg_admin: psycopg.Connection[Any], app_role: str) -> Iterator[str]:
    """A fresh database for one test module, dropped (with its sessions) afterwards."""
    name = f"rmtest_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    ident = sql.Identifier(name)
    pg_admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    yield name
    pg_admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@dataclass
class Sleeper:
    """A query running on its own connection in a thread; ``error`` is what it raised."""

    thread: threading.Thread
    pid: int
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float = 10) -> BaseException | None:
        assert self.finished.wait(timeout), f"query of backend {self.pid} still runs"
        return self.error


def start_query(
    dbname: str, query: str, *, user: str = "postgres", application_name: str = "rmtest"
) -> Sleeper:
    """Start ``query`` from another connection and return once the server shows it active."""
    conn = psycopg.connect(
        pg_url(dbname), user=user, autocommit=True, application_name=application_name
    )
    pid = conn.info.backend_pid
    sleeper = Sleeper(threading.Thread(daemon=True), pid)

    def target() -> None:
        try:
            conn.execute(query)
        except BaseException as exc:  # noqa: BLE001  # recorded for the test to inspect
            sleeper.error = exc
        finally:
            with contextlib.suppress(Exception):
                conn.close()
            sleeper.finished.set()

    sleeper.thread = threading.Thread(target=target, daemon=True)
    sleeper.thread.start()
    return sleeper


def wait_active(pg_admin: psycopg.Connection[Any], pid: int, seconds: float) -> None:
    """Wait until backend ``pid`` has been running its query for at least ``seconds``."""

    def running_long_enough() -> bool:
        row = pg_admin.execute(
            "SELECT clock_timestamp() - query_start >= make_interval(secs => %s)"
            " FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
            (seconds, pid),
        ).fetchone()
        return bool(row and row[0])

    wait_until(running_long_enough, 15, f"backend {pid} to run for {seconds}s")


# -- redis ----------------------------------------------------------------------------------


def redis_at(url: str, db: int) -> redis.Redis:
    """A client on ``db`` whatever db the URL names (in redis-py the URL's db would win)."""
    pool = redis.ConnectionPool.from_url(url)
    pool.connection_kwargs["db"] = db
    return redis.Redis(connection_pool=pool)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """The distinct test db of the shared Redis; this run's keys are deleted afterwards."""
    client = redis_at(REDIS_URL, REDIS_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis unavailable at {REDIS_URL} ({exc}); run: bash scripts/services.sh")
    yield client
    keys = list(client.scan_iter(match=f"{PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class PrivateRedis:
    url: str
    client: redis.Redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of our own on a free port, for FLUSHALL (never on the shared one)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    try:
        wait_until(answers, 10, "the private redis-server")
        yield PrivateRedis(f"redis://127.0.0.1:{port}/0", client)
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
