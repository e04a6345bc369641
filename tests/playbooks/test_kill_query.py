"""kill_query against the real PostgreSQL, with queries running on other connections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors
import pytest

from playbooks.kill_query import KillQuery, KillQueryParams
from receiver.errors import AdapterError, TargetNotAllowed
from tests.playbooks.conftest import (
    CLOSED_PG_ENV,
    PG_DSN_ENV,
    Sleeper,
    make_ctx,
    make_targets,
    pg_url,
    start_query,
    wait_active,
)

PLAYBOOK = KillQuery()
# A function that swallows cancel requests, so that only pg_terminate_backend stops it.
STUBBORN = """
CREATE FUNCTION stubborn_sleep(secs float8) RETURNS void LANGUAGE plpgsql AS $$
DECLARE until timestamptz := clock_timestamp() + make_interval(secs => secs);
BEGIN
  WHILE clock_timestamp() < until LOOP
    BEGIN
      PERFORM pg_sleep(0.1);
    EXCEPTION WHEN query_canceled THEN
      NULL;
    END;
  END LOOP;
END $$;
"""


@pytest.fixture(scope="module")
def db(pg_database: str, app_role: str) -> str:
    with psycopg.connect(pg_url(pg_database), autocommit=True) as conn:
        conn.execute(STUBBORN)
        conn.execute(f'GRANT EXECUTE ON FUNCTION stubborn_sleep(float8) TO "{app_role}"')
    return pg_database


@pytest.fixture
def sleepers() -> Iterator[list[Sleeper]]:
    """Queries started by a test; any still running at teardown is terminated."""
    started: list[Sleeper] = []
    yield started
    with psycopg.connect(pg_url("postgres"), autocommit=True) as conn:
        for s in started:
            conn.execute("SELECT pg_terminate_backend(%s)", (s.pid,))
    for s in started:
        s.finished.wait(10)


def ctx_for(db: str, **target: Any) -> Any:
    pg = {"dsn": f"env:{PG_DSN_ENV}", "databases": [db], "roles": ["*"], **target}
    return make_ctx(make_targets(postgres={"main": pg}))


def launch(sleepers: list[Sleeper], pg_admin: Any, db: str, query: str, **kw: Any) -> Sleeper:
    s = start_query(db, query, **kw)
    sleepers.append(s)
    wait_active(pg_admin, s.pid, 1.2)
    return s


def fast(**over: Any) -> KillQueryParams:
    values: dict[str, Any] = {"target": "main", "min_duration_s": 1, "grace_s": 1.5}
    values.update(over)
    return KillQueryParams(**values)


def test_plan_lists_the_query_and_cancels_nothing(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """plan() shows the long query's pid and text, and the query keeps running."""
    s = launch(sleepers, pg_admin, db, "SELECT pg_sleep(60)", user=app_role)
    plan = PLAYBOOK.plan(fast(), ctx_for(db))
    assert [q["pid"] for q in plan.detail["queries"]] == [s.pid]
    assert plan.detail["queries"][0]["query"] == "SELECT pg_sleep(60)"
    assert not s.finished.wait(0.5)


def test_cancel_stops_a_long_query(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """A pg_sleep(60) of a plain role is cancelled, its client sees QueryCanceled."""
    s = launch(sleepers, pg_admin, db, "SELECT pg_sleep(60)", user=app_role)
    ctx = ctx_for(db)
    params = fast()
    result = PLAYBOOK.run(params, ctx)
    assert result.ok, result.summary
    assert result.detail["cancelled"] == [s.pid]
    assert result.detail["terminated"] == []
    [query] = result.detail["queries"]
    assert query["user"] == app_role and query["duration_s"] >= 1
    assert isinstance(s.wait(), psycopg.errors.QueryCanceled)
    assert PLAYBOOK.verify(params, ctx, result).ok


def test_terminate_after_grace_when_cancel_is_ignored(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """A query that swallows the cancel is terminated after the grace period."""
    s = launch(sleepers, pg_admin, db, "SELECT stubborn_sleep(60)", user=app_role)
    result = PLAYBOOK.run(fast(grace_s=1), ctx_for(db))
    assert result.ok, result.summary
    assert result.detail["terminated"] == [s.pid]
    assert result.detail["cancelled"] == []
    assert isinstance(s.wait(), psycopg.OperationalError)


def test_superuser_backend_is_not_killed_by_default(
    db: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """A superuser's query is skipped as protected and keeps running."""
    s = launch(sleepers, pg_admin, db, "SELECT pg_sleep(60)", user="postgres")
    result = PLAYBOOK.run(fast(), ctx_for(db))
    assert result.detail["queries"] == []
    assert result.detail["skipped"].get("protected superuser backend") == 1
    assert not s.finished.wait(0.5)


def test_superuser_backend_killed_when_both_allow(
    db: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """With include_superusers in params AND allow_superuser on the target, it is cancelled."""
    s = launch(sleepers, pg_admin, db, "SELECT pg_sleep(60)", user="postgres")
    result = PLAYBOOK.run(fast(include_superusers=True), ctx_for(db, allow_superuser=True))
    assert result.detail["cancelled"] == [s.pid]
    assert isinstance(s.wait(), psycopg.errors.QueryCanceled)


def test_superuser_param_without_allowlist_is_refused(db: str) -> None:
    """Asking for superusers on a target that does not allow them is TargetNotAllowed."""
    with pytest.raises(TargetNotAllowed, match="allow_superuser"):
        PLAYBOOK.run(fast(include_superusers=True), ctx_for(db))


def test_filters_and_max_queries_bound_the_run(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """Only regex-matching queries are touched, at most max_queries of them."""
    queries = [f"SELECT pg_sleep(60) /* report {i} */" for i in range(3)]
    marked = [start_query(db, q, user=app_role) for q in queries]
    other = start_query(db, "SELECT pg_sleep(60) /* api */", user=app_role)
    sleepers.extend([*marked, other])
    for s in sleepers:
        wait_active(pg_admin, s.pid, 1.2)
    result = PLAYBOOK.run(fast(query_regex=r"report \d", max_queries=2), ctx_for(db))
    cancelled = set(result.detail["cancelled"])
    assert len(cancelled) == 2 and cancelled <= {s.pid for s in marked}
    assert result.detail["skipped"]["over max_queries"] == 1
    assert result.detail["skipped"]["query does not match"] >= 1
    for s in marked:
        if s.pid in cancelled:
            assert isinstance(s.wait(), psycopg.errors.QueryCanceled)
    assert sum(1 for s in marked if s.finished.is_set()) == 2
    assert not other.finished.is_set()


def test_application_name_and_user_filters(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """application_name and user select only that client's query."""
    keep = launch(sleepers, pg_admin, db, "SELECT pg_sleep(60)", user=app_role)
    hit = launch(
        sleepers, pg_admin, db, "SELECT pg_sleep(60)", user=app_role, application_name="batch"
    )
    result = PLAYBOOK.run(fast(application_name="batch", user=app_role), ctx_for(db))
    assert result.detail["cancelled"] == [hit.pid]
    assert not keep.finished.wait(0.5)


def test_query_text_is_truncated_to_200_chars(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """A long query text is reported cut to 200 characters."""
    launch(sleepers, pg_admin, db, "SELECT pg_sleep(60) /* " + "x" * 500 + " */", user=app_role)
    result = PLAYBOOK.run(fast(), ctx_for(db))
    [query] = result.detail["queries"]
    assert len(query["query"]) == 200 and query["query"].endswith("...")


def test_database_and_role_outside_the_allowlist_are_refused(db: str) -> None:
    """A database or role that the target does not list is refused before connecting."""
    with pytest.raises(TargetNotAllowed, match="databases"):
        PLAYBOOK.run(fast(database="postgres"), ctx_for(db))
    with pytest.raises(TargetNotAllowed, match="roles"):
        PLAYBOOK.run(fast(user="postgres"), ctx_for(db, roles=["app_rw"]))
    with pytest.raises(TargetNotAllowed, match="postgres target 'other'"):
        PLAYBOOK.run(fast(target="other"), ctx_for(db))


def test_queries_of_other_databases_are_never_touched(
    db: str, app_role: str, pg_admin: Any, sleepers: list[Sleeper]
) -> None:
    """A long query in a database the target does not list keeps running."""
    s = launch(sleepers, pg_admin, "postgres", "SELECT pg_sleep(60)", user=app_role)
    result = PLAYBOOK.run(fast(), ctx_for(db))
    assert s.pid not in result.detail["cancelled"]
    assert not s.finished.wait(0.5)


def test_unreachable_database_is_an_adapter_error(db: str) -> None:
    """A target on a closed port raises AdapterError."""
    ctx = make_ctx(
        make_targets(
            postgres={
                "main": {"dsn": f"env:{CLOSED_PG_ENV}", "databases": [db], "connect_timeout_s": 2}
            }
        )
    )
    with pytest.raises(AdapterError, match="unreachable"):
        PLAYBOOK.run(fast(), ctx)
