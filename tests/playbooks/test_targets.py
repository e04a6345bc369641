"""The targets allowlist and the playbooks' Params models: pure validation, no service needed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from playbooks import REGISTRY, load_registry
from playbooks.base import Playbook, PlaybookContext, Risk
from playbooks.flush_cache import FlushCacheParams
from playbooks.kill_query import KillQueryParams, select_backends, truncate
from playbooks.restart_container import RestartContainer, RestartContainerParams
from playbooks.restore_database import RestoreDatabaseParams
from playbooks.scale_service import ScaleService, ScaleServiceParams, desired_replicas
from receiver.adapters.postgres import Backend
from receiver.errors import TargetNotAllowed
from receiver.remediation.targets import TargetsConfig
from tests.playbooks.conftest import PG_DSN_ENV, REDIS_URL_ENV, make_ctx, make_targets

HOSTILE = ["$(reboot)", "web1; rm -rf /", "../../etc", "a" * 10_240, "web1\n", "-rf", "`id`", ""]


def full_targets(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "containers": {
            "names": ["web1"],
            "patterns": ["worker-*"],
            "labels": [{"com.example.remediate": "true"}],
        },
        "swarm_services": {"api": {"min_replicas": 1, "max_replicas": 4}},
        "compose_services": [
            {"project": "shop", "service": "worker", "min_replicas": 1, "max_replicas": 3}
        ],
        "postgres": {"main": {"dsn": f"env:{PG_DSN_ENV}", "databases": ["app"], "roles": ["*"]}},
        "redis": {"cache": {"url": f"env:{REDIS_URL_ENV}", "dbs": [0, 2]}},
        "backups": {
            "app": {"directory": "/var/backups/app", "postgres": "main", "database": "app"}
        },
    }
    base.update(over)
    return base


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("model", "field", "extra"),
    [
        (RestartContainerParams, "name", {}),
        (ScaleServiceParams, "service", {"replicas": 2}),
        (ScaleServiceParams, "project", {"kind": "compose", "service": "w", "replicas": 2}),
        (KillQueryParams, "target", {}),
        (KillQueryParams, "database", {"target": "main"}),
        (KillQueryParams, "user", {"target": "main"}),
        (FlushCacheParams, "target", {"pattern": "x:*"}),
        (RestoreDatabaseParams, "location", {}),
        (RestoreDatabaseParams, "backup", {"location": "app"}),
    ],
)
def test_hostile_label_values_are_refused_by_params(
    model: type, field: str, extra: dict[str, Any], value: str
) -> None:
    """A hostile value substituted from an alert label fails the Params model's pattern."""
    with pytest.raises(ValidationError) as info:
        model.model_validate({**extra, field: value})
    assert any(err["loc"][0] == field for err in info.value.errors())


def test_hostile_selector_value_never_passes_the_allowlist() -> None:
    """A label selector value is only compared, and one the allowlist lacks is refused."""
    params = RestartContainerParams(selector={"com.example.remediate": "$(reboot)"})
    ctx = make_ctx(make_targets(**full_targets()))
    with pytest.raises(TargetNotAllowed, match="label selector"):
        RestartContainer().check_allowed(params, ctx)


def test_unknown_params_are_refused() -> None:
    """StrictParams rejects keys a playbook does not know (no smuggled options)."""
    with pytest.raises(ValidationError, match="extra"):
        RestartContainerParams.model_validate({"name": "web1", "shell": "sh -c reboot"})


def test_container_allowlist_by_name_pattern_and_labels() -> None:
    """Names, fnmatch patterns and label selectors each allow; anything else is refused."""
    targets = make_targets(**full_targets())
    assert targets.container_allowed("web1")
    assert targets.container_allowed("worker-7")
    assert targets.container_allowed("db", {"com.example.remediate": "true", "x": "y"})
    assert not targets.container_allowed("db", {"com.example.remediate": "false"})
    assert not targets.container_allowed("web10")
    with pytest.raises(TargetNotAllowed, match=r"container 'web2' is not allowed"):
        targets.check_container("web2")


def test_refusal_message_is_bounded_for_huge_values() -> None:
    """A 10 kB name reaching the allowlist gives a short, clear error, not a 10 kB one."""
    targets = make_targets(**full_targets())
    with pytest.raises(TargetNotAllowed) as info:
        targets.check_container("a" * 10_240)
    assert len(str(info.value)) < 300
    assert "chars" in str(info.value)


def test_selector_must_be_as_narrow_as_an_allowed_one() -> None:
    """A selector wider than every allowlisted selector is refused; a narrower one passes."""
    targets = make_targets(**full_targets())
    targets.check_label_selector({"com.example.remediate": "true", "tier": "web"})
    with pytest.raises(TargetNotAllowed):
        targets.check_label_selector({"tier": "web"})


def test_data_store_targets_must_be_listed() -> None:
    """Unknown postgres/redis/backup/service names raise TargetNotAllowed naming the section."""
    targets = make_targets(**full_targets())
    for call, section in [
        (lambda: targets.postgres_target("other"), "targets.postgres"),
        (lambda: targets.redis_target("other"), "targets.redis"),
        (lambda: targets.backup_location("other"), "targets.backups"),
        (lambda: targets.swarm_service("other"), "targets.swarm_services"),
        (lambda: targets.compose_service("shop", "web"), "targets.compose_services"),
    ]:
        with pytest.raises(TargetNotAllowed, match=section):
            call()


def test_backups_must_point_at_an_allowed_database() -> None:
    """A backup location for a database the postgres target does not list is a config error."""
    bad = full_targets(backups={"x": {"directory": "/b", "postgres": "main", "database": "secret"}})
    with pytest.raises(ValidationError, match="not in postgres.main.databases"):
        make_targets(**bad)


def test_replica_bounds_must_be_ordered() -> None:
    """min_replicas above max_replicas is refused when the config loads."""
    with pytest.raises(ValidationError, match="min_replicas"):
        make_targets(swarm_services={"api": {"min_replicas": 5, "max_replicas": 2}})


def test_inline_secrets_are_refused_and_resolved_ones_never_print() -> None:
    """A literal DSN is refused; a resolved one shows as its reference in repr and dumps."""
    with pytest.raises(ValidationError, match="env:NAME"):
        make_targets(postgres={"m": {"dsn": "postgresql://u:hunter2@h/db", "databases": ["a"]}})
    targets = make_targets(**full_targets())
    assert targets.postgres_target("main").dsn.reveal().startswith("postgresql://")
    text = repr(targets) + str(targets.model_dump(mode="json"))
    assert targets.postgres_target("main").dsn.reveal() not in text
    assert f"env:{PG_DSN_ENV}" in text


def test_absolute_replicas_out_of_bounds_are_refused_statically() -> None:
    """check_allowed refuses an absolute count outside min/max and says the range."""
    ctx = make_ctx(make_targets(**full_targets()))
    with pytest.raises(TargetNotAllowed, match=r"outside the allowed range 1\.\.4"):
        ScaleService().check_allowed(ScaleServiceParams(service="api", replicas=9), ctx)
    ScaleService().check_allowed(ScaleServiceParams(service="api", replicas=4), ctx)


@pytest.mark.parametrize(
    ("current", "step", "expected", "clamped"),
    [(2, 1, 3, False), (3, 5, 4, True), (2, -5, 1, True), (6, 1, 6, True), (0, -1, 0, True)],
)
def test_steps_are_clamped_and_never_reverse(
    current: int, step: int, expected: int, clamped: bool
) -> None:
    """A step lands inside 1..4, and never moves against its own direction."""
    bounds = make_targets(**full_targets()).swarm_service("api")
    params = ScaleServiceParams(service="api", step=step)
    desired, note = desired_replicas(current, params, bounds)
    assert (desired, note is not None) == (expected, clamped)


def test_step_from_a_label_string_parses() -> None:
    """'+2' and '-1' from label substitution are steps."""
    assert ScaleServiceParams.model_validate({"service": "api", "step": "+2"}).step == 2
    assert ScaleServiceParams.model_validate({"service": "api", "step": "-1"}).step == -1


def make_backend(**over: Any) -> Backend:
    values: dict[str, Any] = {
        "pid": 100,
        "datname": "app",
        "usename": "app_rw",
        "application_name": "web",
        "backend_type": "client backend",
        "state": "active",
        "query": "SELECT pg_sleep(60)",
        "duration_s": 600.0,
        "superuser": False,
        "backend_start": datetime(2026, 1, 1, tzinfo=UTC),
        "query_start": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(over)
    return Backend(**values)


def test_protected_backends_need_params_and_allowlist() -> None:
    """Superuser, walsender and autovacuum backends are selected only when both sides allow."""
    targets = full_targets()
    backends = [
        make_backend(pid=1, superuser=True),
        make_backend(pid=2, backend_type="walsender"),
        make_backend(pid=3, backend_type="autovacuum worker", usename=None),
        make_backend(pid=4, backend_type="background worker"),
        make_backend(pid=5),
    ]
    strict = make_targets(**targets).postgres_target("main")
    everything = KillQueryParams(
        target="main", include_superusers=True, include_replication=True, include_autovacuum=True
    )
    chosen, skipped = select_backends(backends, everything, strict)
    assert [b.pid for b in chosen] == [5]
    assert skipped["protected superuser backend"] == 1
    targets["postgres"]["main"].update(
        allow_superuser=True, allow_replication=True, allow_autovacuum=True
    )
    lenient = make_targets(**targets).postgres_target("main")
    chosen, _ = select_backends(backends, everything, lenient)
    assert sorted(b.pid for b in chosen) == [1, 2, 3, 5]
    chosen, _ = select_backends(backends, KillQueryParams(target="main"), lenient)
    assert [b.pid for b in chosen] == [5]


def test_selection_filters_and_caps_longest_first() -> None:
    """Filters narrow the set and max_queries keeps the longest-running ones."""
    target = make_targets(**full_targets()).postgres_target("main")
    backends = [
        make_backend(pid=1, duration_s=400),
        make_backend(pid=2, duration_s=900),
        make_backend(pid=3, duration_s=700, query="SELECT 1 FROM report"),
        make_backend(pid=4, datname="postgres"),
        make_backend(pid=5, duration_s=10),
    ]
    chosen, skipped = select_backends(
        backends, KillQueryParams(target="main", max_queries=2), target
    )
    assert [b.pid for b in chosen] == [2, 3]
    assert skipped == {"database not allowlisted": 1, "too short": 1, "over max_queries": 1}
    chosen, _ = select_backends(
        backends, KillQueryParams(target="main", query_regex=r"\breport\b"), target
    )
    assert [b.pid for b in chosen] == [3]


def test_query_regex_and_texts_are_bounded() -> None:
    """A regex that does not compile is refused; reported query texts are cut at 200 chars."""
    with pytest.raises(ValidationError, match="does not compile"):
        KillQueryParams(target="main", query_regex="(unclosed")
    assert len(truncate("x" * 5000)) == 200


@pytest.mark.parametrize("pattern", ["*", "**?", "a\x00b", "k\r\n*", "x" * 257])
def test_redis_patterns_are_validated(pattern: str) -> None:
    """Wildcard-only, control-character and over-long patterns are refused."""
    with pytest.raises(ValidationError):
        FlushCacheParams(target="cache", pattern=pattern)


def test_flush_risk_depends_on_mode_and_key_prefixes() -> None:
    """Pattern mode is low risk only under the target's key_prefixes; db and all are high."""
    flush = REGISTRY["flush_cache"]
    cache = {"url": f"env:{REDIS_URL_ENV}", "key_prefixes": ["s:"]}
    ctx = PlaybookContext(targets=TargetsConfig.model_validate({"redis": {"c": cache}}))
    bare = PlaybookContext(
        targets=TargetsConfig.model_validate({"redis": {"c": {"url": f"env:{REDIS_URL_ENV}"}}})
    )

    def risk(raw: dict[str, object], on: PlaybookContext = ctx) -> Risk:
        return flush.risk_for(flush.parse_params(raw), on)

    assert risk({"target": "c", "pattern": "s:*"}) is Risk.LOW
    assert risk({"target": "c", "pattern": "t:*"}) is Risk.HIGH
    assert risk({"target": "c", "pattern": "s:*"}, bare) is Risk.HIGH
    assert risk({"target": "c", "mode": "db"}) is Risk.HIGH
    assert risk({"target": "c", "mode": "all"}) is Risk.HIGH


def test_registry_declares_every_playbook() -> None:
    """The registry holds the built-in playbooks with their idempotency and default risk."""
    declared = {name: (pb.idempotent, pb.risk) for name, pb in load_registry().items()}
    assert declared == {
        "restart_container": (True, Risk.LOW),
        "scale_service": (True, Risk.LOW),
        "kill_query": (False, Risk.HIGH),
        "flush_cache": (False, Risk.HIGH),
        "restore_database": (False, Risk.HIGH),
        "maintenance_mode": (True, Risk.HIGH),
        "rollback_deployment": (False, Risk.HIGH),
    }
    assert all(isinstance(pb, Playbook) for pb in REGISTRY.values())


def test_importing_playbooks_loads_no_client_library() -> None:
    """`import playbooks` builds the registry without importing docker, psycopg or redis."""
    code = (
        "import sys, playbooks; "
        "print(sorted(m for m in ('docker', 'psycopg', 'redis') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
