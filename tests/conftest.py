"""Shared fixtures: both store backends (a real PostgreSQL started by scripts/services.sh),
app clients, and a movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.store import Store, open_store

PG_DSN = os.environ.get("REMEDIATOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:54329/postgres")
TEMPLATE_DB = f"remediator_tmpl_{os.getpid()}"  # one per pytest process: runs may overlap
ROOT = Path(__file__).resolve().parent.parent
# Alerting-rule files the payload tests are built from: the repository's own by default;
# REMEDIATOR_ALERT_RULES names another folder (a larger public corpus, for instance).
ALERT_RULES = Path(os.environ.get("REMEDIATOR_ALERT_RULES", ROOT / "tests" / "data" / "alert-rules"))


class Clock:
    """A clock that tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: Any) -> datetime:
        self.now += timedelta(**kw)
        return self.now


def pg_url(dbname: str) -> str:
    base, _, _ = PG_DSN.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test copies it (CREATE DATABASE ... TEMPLATE)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    store = open_store(pg_url(TEMPLATE_DB), pool_min=0, pool_max=1)
    store.migrate()
    store.close()
    yield TEMPLATE_DB
    drop_pg_database(TEMPLATE_DB)


def new_pg_database(template: str | None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
        )
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/remediator.db"
        s = open_store(url)
        s.migrate()
        s.close()
        yield url
        return
    template = request.getfixturevalue("pg_template")
    name = new_pg_database(template)
    yield pg_url(name)
    drop_pg_database(name)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url, pool_min=1, pool_max=8)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(**over: Any) -> Config:
    data: dict[str, Any] = {"data_dir": "/tmp/remediator-test-data"}
    data.update(over)
    return parse_config(data)


@pytest.fixture
def config() -> Config:
    return make_config()


TOKEN = "test-token-0123456789"
OP_TOKEN = "operator-token-abcdef"
READ_TOKEN = "read-token-abcdef"
OP = {"Authorization": f"Bearer {OP_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
PASSWORD = "correct horse battery staple"


def people() -> dict[str, Any]:
    from werkzeug.security import generate_password_hash

    pw = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    return {
        "users": {
            "alice": {"groups": ["oncall", "dba"], "password_hash": pw},
            "bob": {"groups": ["dba"], "password_hash": pw},
            "carol": {"groups": ["web"], "password_hash": pw},
        },
        "api_tokens": {
            "ops": {"token": "env:REMEDIATOR_TEST_OP_TOKEN", "user": "alice", "scope": "operator"},
            "ro": {"token": "env:REMEDIATOR_TEST_READ_TOKEN", "user": "carol", "scope": "read"},
        },
    }


@pytest.fixture(autouse=True)
def _token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets that people() and web configs refer to (env:NAME)."""
    monkeypatch.setenv("REMEDIATOR_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_OP_TOKEN", OP_TOKEN)
    monkeypatch.setenv("REMEDIATOR_TEST_READ_TOKEN", READ_TOKEN)


@pytest.fixture
def web_config(tmp_path: Path) -> Config:
    return make_config(auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"}, people=people(),
                       data_dir=str(tmp_path / "data"), server={"secure_cookies": False})


@pytest.fixture
def client(store: Store, clock: Clock, web_config: Config) -> Any:
    """A Flask test client on the store: webhook bearer auth by default; OP/READ headers
    for the operator API."""
    app = create_app(web_config, store=store, clock=clock)
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return c
