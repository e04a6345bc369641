"""Alert data never widens what a playbook touches.

Label and annotation values are attacker input. Each test here drives them through the path
the worker takes (render the rule's params from the alert, store them as JSON, validate them
with the playbook's Params model, check the allowlist knowing which params alert data
filled, then plan) and asserts the invariant: the job is refused, or everything it would
touch is inside the allowlist. Generated values (hypothesis) mix globs, regex and LIKE
metacharacters, separators, traversal, whitespace, NUL, unicode look-alikes, case changes
and very long strings; counterexamples are kept as explicit ``@example`` cases.

Real services: Redis (a db of its own, ``REMEDIATOR_TEST_HOSTILE_REDIS_DB``, 11 by default,
only this run's keys), dockerd, PostgreSQL with pg_dump/pg_restore.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psycopg
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from playbooks import REGISTRY
from playbooks.base import Playbook, PlaybookContext, Risk
from playbooks.kill_query import select_backends
from playbooks.scale_service import desired_replicas
from receiver.adapters.redis import RedisAdapter
from receiver.errors import PlaybookError, TargetNotAllowed
from receiver.remediation import backups
from receiver.remediation.rules import (
    RemediationRule,
    TemplateError,
    params_from_alert,
    render_rule_params,
)
from receiver.remediation.targets import TargetsConfig, literal_prefix
from receiver.secrets import Secret
from tests.playbooks.conftest import (
    IMAGE,
    OWNER_LABEL,
    PG_BIN,
    PG_DSN_ENV,
    PREFIX,
    REDIS_URL,
    REDIS_URL_ENV,
    RUN_ID,
    make_targets,
    pg_url,
    redis_at,
)
from tests.playbooks.test_targets import make_backend

HOSTILE_DB = int(os.environ.get("REMEDIATOR_TEST_HOSTILE_REDIS_DB", "11"))

FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIVE = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- hostile values -------------------------------------------------------------------------

GLOBS = ["*", "?", "[", "]", "[^~]", "[a-z]", "[!a]", "\\", "\\x", "\\*", "^", "!", "{a,b}",
         ".*", ".+", "(?s)", "|", "$", "%", "_", "\\%"]
SEPARATORS = ["/", ":", ".", "..", ",", ";", "=", "@", "#", "&", "-", "+", " ", "\t", "\n",
              "\r", "\x00", "\x1b", "../", "..\\", "/..", "%2e%2e%2f", "%00", "\u2028", "\u00a0",
              "\ufeff", "\u200b"]
LOOKALIKES = ["ѕ", "е", "о", "а", "ｗ", "Ｗ", "K", "ſ", "ß", "İ", "ı", "ﬁ", "\u0301"]


def hostile(*seeds: str) -> st.SearchStrategy[str]:
    """Values built around ``seeds`` (allowed and disallowed names) from hostile pieces."""
    seed = st.sampled_from(seeds or ("x",))
    piece = st.one_of(
        seed,
        st.sampled_from(GLOBS + SEPARATORS + LOOKALIKES),
        st.text(max_size=6),
    )
    return st.one_of(
        st.lists(piece, min_size=1, max_size=6).map("".join),
        st.tuples(seed, st.sampled_from(GLOBS + SEPARATORS + LOOKALIKES)).map("".join),
        seed.map(str.upper),
        seed.map(str.swapcase),
        st.tuples(seed, st.integers(2, 400)).map(lambda t: t[0] * t[1]),
        st.text(min_size=0, max_size=40),
    )


# -- the worker's path ----------------------------------------------------------------------


@dataclass
class Job:
    playbook: Playbook[Any]
    params: Any
    ctx: PlaybookContext


def job_for(
    playbook: str,
    rule_params: dict[str, Any],
    labels: dict[str, str],
    targets: TargetsConfig,
    annotations: dict[str, str] | None = None,
) -> Job | None:
    """The job the worker would run for this alert, or None when it refuses it."""
    rule = RemediationRule.model_validate(
        {"name": "hostile", "match": {"alertname": "Hostile"}, "playbook": playbook,
         "params": rule_params}
    )
    try:
        rendered = render_rule_params(rule, labels, annotations or {})
    except TemplateError:
        return None
    stored = json.loads(json.dumps(rendered))  # as the job row keeps them
    pb = REGISTRY[playbook]
    try:
        params = pb.parse_params(stored)
    except ValidationError:
        return None
    ctx = PlaybookContext(targets=targets, from_alert=params_from_alert(rule.params, stored))
    try:
        pb.check_allowed(params, ctx)
    except TargetNotAllowed:
        return None
    return Job(pb, params, ctx)


# -- flush_cache: pure ----------------------------------------------------------------------

ALLOWED_PREFIXES = ["session:", "cache:"]


def redis_targets(**over: Any) -> TargetsConfig:
    cache = {"url": f"env:{REDIS_URL_ENV}", "dbs": [0, 3], "key_prefixes": ALLOWED_PREFIXES}
    cache.update(over)
    return make_targets(redis={"cache": {k: v for k, v in cache.items() if v is not None}})


@FAST
@given(hostile("session:", "sessions", "sess", "cache:", "cach", "", "SESSION:", "ѕession:"))
@example("[^~]*")
@example("*")
@example("\\x")
@example("sessions*")
@example("session\\:*")
@example("session[:]*")
@example("SESSION:*")
@example("ѕession:*")
@example("cache")
def test_label_pattern_is_refused_unless_under_key_prefixes(keys: str) -> None:
    """A pattern from a label runs only if its literal prefix is under key_prefixes, and
    then at low risk; anything else is refused."""
    job = job_for("flush_cache", {"target": "cache", "pattern": "{{ labels.keys }}"},
                  {"keys": keys}, redis_targets())
    if job is None:
        return
    literal = literal_prefix(job.params.pattern)
    assert any(literal.startswith(p) for p in ALLOWED_PREFIXES), keys
    assert job.playbook.risk_for(job.params, job.ctx) is Risk.LOW
    assert job.playbook.targets(job.params) == ["redis:cache/default"]


@FAST
@given(hostile("", "*", "[^~]", "../", "x"))
@example("[^~]*")
@example("*")
def test_label_inside_a_prefixed_pattern_stays_under_it(key: str) -> None:
    """`session:{{ labels.id }}`: whatever the label, the pattern stays under `session:`."""
    job = job_for("flush_cache", {"target": "cache", "pattern": "session:{{ labels.id }}"},
                  {"id": key}, redis_targets())
    if job is not None:
        assert literal_prefix(job.params.pattern).startswith("session:")
        assert job.playbook.risk_for(job.params, job.ctx) is Risk.LOW


@FAST
@given(st.one_of(st.integers(-5, 2000).map(str), hostile("0", "3", "1", "00", "1e3", "+3")))
@example("3 ")
@example("0x3")
@example("3.0")
def test_label_db_is_an_allowlisted_db(db: str) -> None:
    """A db number from a label is one of the target's dbs, or the job is refused."""
    job = job_for("flush_cache", {"target": "cache", "pattern": "session:*", "db": "{{ labels.db }}"},
                  {"db": db}, redis_targets())
    if job is not None:
        assert job.params.db in (0, 3)


@FAST
@given(hostile("cache", "other", "CACHE", "cache "))
@example("cache\n")
@example("cache\x00")
@example("ｃache")
def test_label_target_name_is_exactly_allowlisted(name: str) -> None:
    """The Redis target named by a label is exactly a listed one."""
    job = job_for("flush_cache", {"target": "{{ labels.t }}", "pattern": "session:*"},
                  {"t": name}, redis_targets())
    if job is not None:
        assert job.params.target == "cache"


def test_literal_pattern_outside_key_prefixes_needs_approval_not_refusal() -> None:
    """Written in the rule, a pattern outside key_prefixes is allowed at high risk (with the
    reason); the same text from a label is refused; without key_prefixes it is high risk."""
    literal = job_for("flush_cache", {"target": "cache", "pattern": "tmp:*"}, {}, redis_targets())
    assert literal is not None
    assert literal.playbook.risk_for(literal.params, literal.ctx) is Risk.HIGH
    assert "key_prefixes" in (literal.playbook.risk_note(literal.params, literal.ctx) or "")
    assert job_for("flush_cache", {"target": "cache", "pattern": "{{ labels.k }}"},
                   {"k": "tmp:*"}, redis_targets()) is None
    bare = job_for("flush_cache", {"target": "cache", "pattern": "{{ labels.k }}"},
                   {"k": "[^~]*"}, redis_targets(key_prefixes=None))
    assert bare is not None
    assert bare.playbook.risk_for(bare.params, bare.ctx) is Risk.HIGH


def test_unknown_provenance_counts_as_alert_data() -> None:
    """A context that does not say which params alert data filled treats them all so."""
    pb = REGISTRY["flush_cache"]
    params = pb.parse_params({"target": "cache", "pattern": "[^~]*"})
    with pytest.raises(TargetNotAllowed, match="key_prefixes"):
        pb.check_allowed(params, PlaybookContext(targets=redis_targets()))


def test_an_edited_rule_does_not_make_label_data_literal() -> None:
    """Params rendered from a label under an older rule still count as alert data when the
    rule now holds a different literal value."""
    assert params_from_alert({"pattern": "tmp:*"}, {"pattern": "[^~]*"}) == {"pattern"}
    assert params_from_alert({"pattern": "tmp:*"}, {"pattern": "tmp:*"}) == frozenset()
    assert params_from_alert({"pattern": "{{ labels.k }}"}, {"pattern": "tmp:*"}) == {"pattern"}


@pytest.mark.parametrize("prefix", ["", "a*", "a?", "a[b", "a\\", "x\n", "x\x00", "x" * 257])
def test_key_prefixes_must_be_literal_text(prefix: str) -> None:
    """A key prefix with a glob metacharacter, a control character, empty or too long, or an
    empty list, is a config error."""
    with pytest.raises(ValidationError):
        redis_targets(key_prefixes=[prefix])
    with pytest.raises(ValidationError):
        redis_targets(key_prefixes=[])


# -- flush_cache: real Redis ----------------------------------------------------------------

P = f"{PREFIX}-hostile"
R_ALLOWED = [f"{P}:session:", f"{P}:cache:"]
R_KEYS_IN = [f"{P}:session:{i}" for i in range(3)] + [f"{P}:cache:{i}" for i in range(3)]
R_KEYS_OUT = [f"{P}:sessions{i}" for i in range(2)] + [
    f"{P}:SESSION:0", f"{P}:ѕession:0", f"{P}:session", f"{P}:sess", f"{P}:other:0",
    f"{P}:cache", f"{P}:cachex:0", f"{P}:*", f"{P}:[^~]", f"{P}\\x",
]


@pytest.fixture(scope="module")
def hostile_redis() -> Iterator[redis.Redis]:
    """The hostile-input test db of the shared Redis; this run's keys are removed after."""
    client = redis_at(REDIS_URL, HOSTILE_DB)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis unavailable at {REDIS_URL} ({exc}); run: bash scripts/services.sh")
    yield client
    mine = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
    if mine:
        client.delete(*mine)
    client.close()


def refill(client: redis.Redis) -> None:
    client.mset({k: "v" for k in R_KEYS_IN + R_KEYS_OUT})


def live_targets(**over: Any) -> TargetsConfig:
    cache = {"url": f"env:{REDIS_URL_ENV}", "dbs": [HOSTILE_DB], "key_prefixes": R_ALLOWED,
             **over}
    return make_targets(redis={"cache": {k: v for k, v in cache.items() if v is not None}})


def flush_with_label(keys: str, targets: TargetsConfig) -> Job | None:
    """plan + run of `pattern: "{{ labels.keys }}"` on the hostile db; the job or None."""
    job = job_for("flush_cache", {"target": "cache", "pattern": "{{ labels.keys }}"},
                  {"keys": keys}, targets)
    if job is not None:
        job.playbook.plan(job.params, job.ctx)
        job.playbook.run(job.params, job.ctx)
    return job


def outside_left(client: redis.Redis) -> list[str]:
    """The keys outside the allowed prefixes that are gone."""
    return [k for k in R_KEYS_OUT if not client.exists(k)]


@LIVE
@given(hostile(f"{P}:session:", f"{P}:sessions", f"{P}:sess", f"{P}:cache:", f"{P}:", "",
               f"{P}:SESSION:", f"{P}:ѕession:", f"{P}:cache"))
@example("[^~]*")
@example("*")
@example("\\x")
@example(f"{P}:session:*")
@example(f"{P}:sessions*")
@example(f"{P}:session*")
@example(f"{P}:[sS]ession:*")
@example(f"{P}:session\\:*")
def test_hostile_label_patterns_never_unlink_outside_key_prefixes(
    hostile_redis: redis.Redis, keys: str
) -> None:
    """Against real Redis: whatever pattern a label gives, plan + run never remove a key
    outside key_prefixes (the job is refused, or stays under them)."""
    refill(hostile_redis)
    flush_with_label(keys, live_targets())
    assert outside_left(hostile_redis) == []


@pytest.mark.parametrize(
    ("keys", "runs"),
    [
        ("[^~]*", False),
        ("*", False),
        ("\\x", False),
        (f"{P}:sessions*", False),
        (f"{P}:session*", False),
        (f"{P}:session:*", True),
    ],
)
def test_hostile_patterns_regression(hostile_redis: redis.Redis, keys: str, runs: bool) -> None:
    """The patterns of the report: only `<prefix>session:*` runs, and removes just the
    session keys."""
    refill(hostile_redis)
    job = flush_with_label(keys, live_targets())
    assert (job is not None) == runs
    assert outside_left(hostile_redis) == []
    gone = [k for k in R_KEYS_IN if not hostile_redis.exists(k)]
    assert gone == ([k for k in R_KEYS_IN if ":session:" in k] if runs else [])


def test_unlink_checks_each_key_not_only_scan_match(hostile_redis: redis.Redis) -> None:
    """A key SCAN MATCH returns but that is outside key_prefixes is kept and counted."""
    refill(hostile_redis)
    adapter = RedisAdapter(Secret(REDIS_URL, "test"), db=HOSTILE_DB)
    with adapter:
        counted, _ = adapter.count_matching(f"{P}:sess*", batch=100, limit=1000,
                                            key_prefixes=[f"{P}:session:"])
        result = adapter.unlink_matching(f"{P}:sess*", batch=100, max_keys=1000,
                                         key_prefixes=[f"{P}:session:"])
    assert counted == 3
    assert (result.unlinked, result.skipped) == (3, 4)  # sessions0/1, session, sess kept
    assert outside_left(hostile_redis) == []


def test_approved_literal_pattern_without_cover_checks_the_literal_prefix(
    hostile_redis: redis.Redis,
) -> None:
    """A literal rule pattern outside key_prefixes (high risk, run once approved) removes
    only keys under its own literal prefix."""
    refill(hostile_redis)
    job = job_for("flush_cache", {"target": "cache", "pattern": f"{P}:other:*"}, {},
                  live_targets())
    assert job is not None
    assert job.playbook.risk_for(job.params, job.ctx) is Risk.HIGH
    result = job.playbook.run(job.params, job.ctx)
    assert result.detail["unlinked"] == 1
    assert outside_left(hostile_redis) == [f"{P}:other:0"]


# -- flush_cache through the real worker ----------------------------------------------------


def test_worker_refuses_a_label_pattern_outside_key_prefixes(
    hostile_redis: redis.Redis, store: Any, clock: Any
) -> None:
    """The reported attack: `pattern: "{{ labels.keys }}"` with `[^~]*` ran unattended and
    emptied the db. Now the worker refuses it, runs `<prefix>session:*` (low risk) and parks a
    literal pattern outside key_prefixes for approval."""
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from receiver.remediation.worker import Worker
    from tests.conftest import make_config
    from tests.factories import make_alert, make_notification

    cache = {"url": f"env:{REDIS_URL_ENV}", "dbs": [HOSTILE_DB], "key_prefixes": R_ALLOWED}
    rules = [
        {"name": "flush-label", "match": {"alertname": "CacheStale"}, "playbook": "flush_cache",
         "params": {"target": "cache", "pattern": "{{ labels.keys }}"},
         "guards": {"cooldown": "0s"}},
        {"name": "flush-literal", "match": {"alertname": "TmpStale"}, "playbook": "flush_cache",
         "params": {"target": "cache", "pattern": f"{P}:other:*"}},
    ]
    config = make_config(rules=rules, targets={"redis": {"cache": cache}})
    intake = Intake(config, store, clock)
    worker = Worker(config, store, clock=clock, worker_id="w-hostile", sleep=lambda _s: None)

    def fire(alertname: str, **labels: str) -> dict[str, Any]:
        body = make_notification([make_alert(alertname=alertname, labels=labels)])
        raw = json.dumps(body)
        intake.accept(Notification.model_validate_json(raw), raw)
        assert worker.run_once()
        with store.db.transaction(write=False) as tx:
            row = tx.fetchone("SELECT state, reason FROM jobs ORDER BY id DESC LIMIT 1", {})
        assert row is not None
        return dict(row)

    refill(hostile_redis)
    refused = fire("CacheStale", keys="[^~]*", instance="a")
    assert refused["state"] == "refused"
    assert "key_prefixes" in refused["reason"]
    assert all(hostile_redis.exists(k) for k in R_KEYS_IN + R_KEYS_OUT)

    ran = fire("CacheStale", keys=f"{P}:session:*", instance="b")
    assert ran["state"] == "succeeded"
    assert [k for k in R_KEYS_IN if not hostile_redis.exists(k)] == R_KEYS_IN[:3]
    assert outside_left(hostile_redis) == []

    parked = fire("TmpStale", instance="c")
    assert parked["state"] == "awaiting_approval"
    assert hostile_redis.exists(f"{P}:other:0")


# -- kill_query: pure (the selection the plan and the run both make) ------------------------

PG_ALLOW = {"dsn": f"env:{PG_DSN_ENV}", "databases": ["app"], "roles": ["app_rw", "reporting"]}

UNIVERSE = [
    make_backend(pid=i, datname=db, usename=user, application_name=app, query=query,
                 backend_type=kind, superuser=su)
    for i, (db, user, app, query, kind, su) in enumerate([
        ("app", "app_rw", "web", "SELECT * FROM orders", "client backend", False),
        ("app", "reporting", "report%", "SELECT count(*) FROM orders_", "client backend", False),
        ("app", "reporting", "report_x", "SELECT .* FROM t", "client backend", False),
        ("app", "admin", "web", "VACUUM orders", "client backend", False),
        ("app", "postgres", "psql", "SELECT 1", "client backend", True),
        ("app", None, "web", "SELECT orphan", "client backend", False),
        ("other", "app_rw", "web", "SELECT * FROM orders", "client backend", False),
        ("App", "app_rw", "web", "SELECT * FROM orders", "client backend", False),
        ("app", "replicator", "walreceiver", "", "walsender", False),
        ("app", None, "", "autovacuum: VACUUM orders", "autovacuum worker", False),
        ("app", "APP_RW", "Web", "select * from ORDERS", "client backend", False),
    ], start=1)
]


def check_selection(job: Job, labels: dict[str, str]) -> None:
    target = job.ctx.targets.postgres_target("main")
    chosen, _ = select_backends(UNIVERSE, job.params, target)
    for b in chosen:
        assert b.kind == "client"
        assert b.datname == "app"
        assert b.usename in ("app_rw", "reporting")
        if "database" in labels:
            assert b.datname == labels["database"]
        if "user" in labels:
            assert b.usename == labels["user"]
        if "app" in labels:
            assert b.application_name == labels["app"]
        if "q" in labels:
            assert labels["q"] in b.query  # the label is literal text inside the regex


@FAST
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "database": hostile("app", "App", "other", "%", "_", "*", "ap_", "a%"),
            "user": hostile("app_rw", "reporting", "admin", "postgres", "%", "_", "*", "app_r_"),
            "app": hostile("web", "report%", "report_", "%", "_", "*", "Web"),
            "q": hostile(".*", "orders", "SELECT", "(a+)+$", "|", "^", "%", "_"),
        },
    )
)
@example({"q": ".*"})
@example({"q": "|"})
@example({"q": "(?i)orders"})
@example({"app": "%"})
@example({"app": "report_"})
@example({"database": "App"})
@example({"user": "APP_RW"})
def test_kill_query_filters_from_labels_only_narrow(labels: dict[str, str]) -> None:
    """database/user/application_name from labels are exact matches, a label in the query
    regex is literal text, and nothing outside the target's databases and roles is chosen."""
    rule_params: dict[str, Any] = {"target": "main", "min_duration_s": 1}
    for key, param in (("database", "database"), ("user", "user"), ("app", "application_name")):
        if key in labels:
            rule_params[param] = f"{{{{ labels.{key} }}}}"
    if "q" in labels:
        rule_params["query_regex"] = "FROM .*{{ labels.q }}"
    job = job_for("kill_query", rule_params, labels, make_targets(postgres={"main": PG_ALLOW}))
    if job is not None:
        check_selection(job, labels)


def test_label_in_query_regex_is_escaped_at_render() -> None:
    """`.*` from a label is matched literally: it selects the one query holding `.*`."""
    job = job_for("kill_query", {"target": "main", "min_duration_s": 1,
                                 "query_regex": "{{ labels.q }}"}, {"q": ".*"},
                  make_targets(postgres={"main": PG_ALLOW}))
    assert job is not None
    assert job.params.query_regex == re.escape(".*")
    chosen, _ = select_backends(UNIVERSE, job.params, job.ctx.targets.postgres_target("main"))
    assert [b.pid for b in chosen] == [3]


def test_client_backend_without_a_role_is_not_selected() -> None:
    """A client backend whose role was dropped (no user name) is not allowlisted by roles."""
    target = make_targets(postgres={"main": PG_ALLOW}).postgres_target("main")
    params = REGISTRY["kill_query"].parse_params({"target": "main", "min_duration_s": 1})
    chosen, skipped = select_backends(UNIVERSE, params, target)
    assert 6 not in [b.pid for b in chosen]
    assert skipped["role not allowlisted"] >= 2


@FAST
@given(hostile("true", "false", "1", "yes", "on"))
def test_protected_backends_stay_protected_whatever_the_label(flag: str) -> None:
    """`include_superusers` from a label never reaches a superuser the target protects."""
    job = job_for("kill_query", {"target": "main", "min_duration_s": 1,
                                 "include_superusers": "{{ labels.f }}"}, {"f": flag},
                  make_targets(postgres={"main": PG_ALLOW}))
    if job is not None:
        check_selection(job, {})


# -- scale_service: pure ----------------------------------------------------------------------

SCALE_ALLOW = {
    "swarm_services": {"web": {"min_replicas": 2, "max_replicas": 5}},
    "compose_services": [{"project": "shop", "service": "worker", "min_replicas": 1,
                          "max_replicas": 3}],
}


@FAST
@given(
    service=hostile("web", "WEB", "web-", "web.1", "db", "worker"),
    project=hostile("shop", "SHOP", "shop_", "other"),
    count=st.one_of(st.integers(-2000, 2000).map(str), hostile("3", "+1", "-1", "1e3", "0")),
    kind=st.sampled_from(["swarm", "compose"]),
    absolute=st.booleans(),
    current=st.integers(0, 1000),
)
@example(service="web", project="shop", count="+1000", kind="swarm", absolute=False, current=4)
@example(service="web", project="shop", count="1e3", kind="swarm", absolute=True, current=4)
@example(service="worker", project="shop ", count="2", kind="compose", absolute=True, current=1)
def test_scale_targets_and_counts_stay_in_bounds(
    service: str, project: str, count: str, kind: str, absolute: bool, current: int
) -> None:
    """The service scaled is an allowlisted one, and the count it is set to is inside its
    bounds (a step never moves it against its direction, nor out of the range)."""
    rule_params: dict[str, Any] = {"kind": kind, "service": "{{ labels.service }}",
                                   ("replicas" if absolute else "step"): "{{ labels.count }}"}
    if kind == "compose":
        rule_params["project"] = "{{ labels.project }}"
    job = job_for("scale_service", rule_params,
                  {"service": service, "project": project, "count": count},
                  make_targets(**SCALE_ALLOW))
    if job is None:
        return
    assert job.playbook.targets(job.params) in (["swarm_service:web"],
                                                ["compose_service:shop/worker"])
    bounds = job.playbook._bounds(job.params, job.ctx)  # noqa: SLF001 - the plan's own bounds
    desired, _ = desired_replicas(current, job.params, bounds)
    assert desired == current or bounds.min_replicas <= desired <= bounds.max_replicas


# -- restart_container: real Docker (plan) ----------------------------------------------------

C = f"{PREFIX}-h"
SEL_KEY = "rm.hostile"


@dataclass
class Containers:
    allowed: set[str]
    forbidden: dict[str, str]  # name -> id
    targets: TargetsConfig


@pytest.fixture(scope="module")
def hostile_containers(docker_client: docker.DockerClient) -> Iterator[Containers]:
    """web (by name), api-1 (by pattern), lab (by label selector) and db (not allowed)."""
    made = []
    specs = {
        f"{C}-web": {},
        f"{C}-api-1": {},
        f"{C}-lab": {SEL_KEY: f"ok-{RUN_ID}"},
        f"{C}-db": {SEL_KEY: f"no-{RUN_ID}", "app": "db"},
    }
    try:
        for name, labels in specs.items():
            made.append(docker_client.containers.create(
                IMAGE, ["sleep", "3600"], name=name, labels={OWNER_LABEL: RUN_ID, **labels}))
        targets = make_targets(containers={
            "names": [f"{C}-web"],
            "patterns": [f"{C}-api-*"],
            "labels": [{SEL_KEY: f"ok-{RUN_ID}"}],
        })
        db = next(c for c in made if c.name == f"{C}-db")
        yield Containers({f"{C}-web", f"{C}-api-1", f"{C}-lab"}, {db.name: db.id}, targets)
    finally:
        for c in made:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


def planned(job: Job | None) -> list[str]:
    """The container names the plan would restart (none when refused or not found)."""
    if job is None:
        return []
    try:
        plan = job.playbook.plan(job.params, job.ctx)
    except (PlaybookError, TargetNotAllowed):
        return []
    return [c["name"] for c in plan.detail["containers"]]


def db_id_prefix(docker_client: docker.DockerClient) -> str:
    return docker_client.containers.get(f"{C}-db").id[:12]


@LIVE
@given(hostile(f"{C}-web", f"{C}-api-1", f"{C}-api-", f"{C}-db", f"{C}-lab", "/", C))
@example(f"{C}-db")
@example(f"/{C}-db")
@example(f"{C}-api-1/../{C}-db")
@example(f"{C}-api-*")
@example(f"{C}-DB")
@example(f"{C}-db\n")
@example(f"{C}-web ")
def test_restart_by_label_name_stays_in_the_allowlist(
    hostile_containers: Containers, name: str
) -> None:
    """A container name from a label restarts an allowlisted container or nothing."""
    job = job_for("restart_container", {"name": "{{ labels.container }}"},
                  {"container": name}, hostile_containers.targets)
    assert set(planned(job)) <= hostile_containers.allowed


def test_restart_by_id_or_id_prefix_of_a_forbidden_container_is_refused(
    hostile_containers: Containers,
) -> None:
    """A label naming the forbidden container by its id or an id prefix plans nothing."""
    (db_id,) = hostile_containers.forbidden.values()
    for value in (db_id, db_id[:12], db_id[:4]):
        job = job_for("restart_container", {"name": "{{ labels.container }}"},
                      {"container": value}, hostile_containers.targets)
        assert planned(job) == []


def test_an_ambiguous_id_prefix_from_a_label_is_refused(
    hostile_containers: Containers, docker_client: docker.DockerClient
) -> None:
    """A label holding an id prefix that several containers share (Docker answers 500) is
    refused by the allowlist check, not a crash of the job (found by hypothesis)."""
    made: list[Any] = []
    try:
        ids = {c.id for c in docker_client.containers.list(all=True)}
        shared = None
        while shared is None and len(made) < 60:
            made.append(docker_client.containers.create(
                IMAGE, ["sleep", "1"], labels={OWNER_LABEL: RUN_ID}))
            ids.add(made[-1].id)
            firsts = [i[0] for i in ids]
            shared = next((ch for ch in firsts if firsts.count(ch) > 1), None)
        assert shared is not None
        job = job_for("restart_container", {"name": "{{ labels.container }}"},
                      {"container": shared}, hostile_containers.targets)
        assert job is None
    finally:
        for c in made:
            c.remove(force=True)


@LIVE
@given(hostile(f"ok-{RUN_ID}", f"no-{RUN_ID}", "ok-", "*", "", "db"))
@example(f"ok-{RUN_ID}")
@example(f"no-{RUN_ID}")
@example(f"ok-{RUN_ID} ")
@example("")
def test_restart_by_label_selector_stays_in_the_allowlist(
    hostile_containers: Containers, value: str
) -> None:
    """A selector value from a label finds only containers an allowlisted selector covers."""
    job = job_for("restart_container", {"selector": {SEL_KEY: "{{ labels.v }}"}},
                  {"v": value}, hostile_containers.targets)
    names = planned(job)
    assert set(names) <= hostile_containers.allowed
    assert names in ([], [f"{C}-lab"])


# -- restore_database: real backups (plan) ----------------------------------------------------


@dataclass
class Backups:
    targets: TargetsConfig
    directory: Path
    names: set[str]
    sibling: set[str]


@pytest.fixture(scope="module")
def hostile_backups(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Backups:
    """Location `app` with two real dumps; a sibling directory (not a location of this
    allowlist) with one of its own."""
    root = tmp_path_factory.mktemp("hostile-backups")
    with psycopg.connect(pg_url(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY)")
        conn.execute("INSERT INTO items VALUES (1) ON CONFLICT DO NOTHING")

    def location(directory: Path) -> dict[str, Any]:
        return {"directory": str(directory), "postgres": "main", "database": pg_database}

    pg = {"main": {"dsn": f"env:{PG_DSN_ENV}", "databases": [pg_database],
                   "bin_dir": str(PG_BIN)}}
    setup = make_targets(postgres=pg, backups={"app": location(root / "app"),
                                               "sib": location(root / "sibling")})
    mine = {backups.create_backup(setup, "app").name,
            backups.create_backup(setup, "app", fmt="sql.gz").name}
    other = {backups.create_backup(setup, "sib").name}
    targets = make_targets(postgres=pg, backups={"app": location(root / "app")})
    return Backups(targets, root / "app", mine, other)


@LIVE
@given(location=hostile("app", "APP", "sib", "app/..", "../sibling"),
       backup=st.one_of(st.just(None), hostile("dump", ".dump", ".sql.gz", "..", "../sibling/",
                                               "*", "?")))
@example(location="app", backup="../sibling/x.dump")
@example(location="app", backup="*")
@example(location="sib", backup=None)
def test_restore_picks_only_a_backup_of_the_allowlisted_location(
    hostile_backups: Backups, location: str, backup: str | None
) -> None:
    """Location and backup file name from labels: the plan's backup is a file of the listed
    location's own directory (with that exact name), or there is none."""
    rule_params: dict[str, Any] = {"location": "{{ labels.location }}"}
    labels = {"location": location}
    if backup is not None:
        rule_params["backup"] = "{{ labels.backup }}"
        labels["backup"] = backup
    job = job_for("restore_database", rule_params, labels, hostile_backups.targets)
    if job is None:
        return
    assert job.playbook.targets(job.params) == ["backups:app"]
    plan = job.playbook.plan(job.params, job.ctx)
    chosen = plan.detail["backup"]
    if chosen is not None:
        assert chosen["name"] in hostile_backups.names
        assert Path(chosen["path"]).parent == hostile_backups.directory
        if backup is not None:
            assert chosen["name"] == backup


def test_restore_by_an_exact_backup_name_from_a_label_works(hostile_backups: Backups) -> None:
    """The allowed case still works: a label naming one of the location's backups picks it."""
    name = sorted(hostile_backups.names)[0]
    job = job_for("restore_database", {"location": "app", "backup": "{{ labels.b }}"},
                  {"b": name}, hostile_backups.targets)
    assert job is not None
    plan = job.playbook.plan(job.params, job.ctx)
    assert plan.detail["backup"] is not None, plan.detail["rejected"]
    assert plan.detail["backup"]["name"] == name
    sibling = sorted(hostile_backups.sibling)[0]
    job = job_for("restore_database", {"location": "app", "backup": "{{ labels.b }}"},
                  {"b": sibling}, hostile_backups.targets)
    assert job is not None
    assert job.playbook.plan(job.params, job.ctx).detail["backup"] is None


def test_literal_pattern_outside_key_prefixes_needs_approval_even_under_auto(
    hostile_redis: redis.Redis, store: Any, clock: Any
) -> None:
    """A pattern written in the rule but outside the target's key_prefixes waits for a person
    even when the rule says `approval: auto`; one under a key prefix runs unattended."""
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake
    from receiver.remediation.worker import Worker
    from tests.conftest import make_config
    from tests.factories import make_alert, make_notification

    cache = {"url": f"env:{REDIS_URL_ENV}", "dbs": [HOSTILE_DB], "key_prefixes": R_ALLOWED}
    rules = [
        {"name": "flush-outside", "match": {"alertname": "TmpStale"}, "playbook": "flush_cache",
         "params": {"target": "cache", "pattern": f"{P}:other:*"},
         "approval": {"mode": "auto"}, "guards": {"cooldown": "0s"}},
        {"name": "flush-inside", "match": {"alertname": "SessStale"}, "playbook": "flush_cache",
         "params": {"target": "cache", "pattern": f"{P}:session:*"},
         "approval": {"mode": "auto"}, "guards": {"cooldown": "0s"}},
    ]
    config = make_config(rules=rules, targets={"redis": {"cache": cache}})
    intake = Intake(config, store, clock)
    worker = Worker(config, store, clock=clock, worker_id="w-auto", sleep=lambda _s: None)
    refill(hostile_redis)
    for name in ("TmpStale", "SessStale"):
        body = make_notification([make_alert(alertname=name, labels={"instance": name})])
        raw = json.dumps(body)
        intake.accept(Notification.model_validate_json(raw), raw)
        assert worker.run_once()
    with store.db.transaction(write=False) as tx:
        rows = {r["rule"]: dict(r) for r in tx.fetchall("SELECT rule, state, reason FROM jobs", {})}
    assert rows["flush-outside"]["state"] == "awaiting_approval"
    assert "key_prefixes" in rows["flush-outside"]["reason"]
    assert hostile_redis.exists(f"{P}:other:0")
    assert rows["flush-inside"]["state"] == "succeeded"
