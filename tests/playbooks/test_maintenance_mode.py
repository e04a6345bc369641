"""maintenance_mode against a real HAProxy (Debian's ``haproxy``) that this module starts on
loopback, with an admin socket and two backends served by small local HTTP servers: ``app``
(the application) and ``maintenance`` (the maintenance page), which the frontend uses when
``app`` has no server left. A third backend, ``pool``, has two servers for the allowlist
and ``min_ready`` tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from pydantic import ValidationError

from playbooks.base import RunResult
from playbooks.maintenance_mode import MaintenanceMode, MaintenanceModeParams
from receiver.adapters import AdapterFactory, HaproxyApi
from receiver.adapters.haproxy import HaproxyAdapter, parse_servers_state
from receiver.config import parse_config
from receiver.errors import AdapterError, ConfigError, PlaybookError, TargetNotAllowed
from receiver.remediation.targets import TargetsConfig
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.playbooks.conftest import make_ctx, make_targets
from tests.playbooks.test_hostile_params import FAST, hostile, job_for
from tests.support import free_port, http, wait_until

PLAYBOOK = MaintenanceMode()
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - the standard library's handler name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return


def serve(body: bytes) -> tuple[ThreadingHTTPServer, int]:
    handler = type("Page", (_Page,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@dataclass
class Haproxy:
    socket: Path
    frontend: int
    admin: HaproxyAdapter

    def page(self) -> bytes:
        status, body = http("GET", f"http://127.0.0.1:{self.frontend}/")
        assert status == 200, (status, body)
        return body

    def state(self, backend: str, server: str) -> str:
        found = self.admin.server(backend, server)
        assert found is not None
        return found.admin

    def reset(self) -> None:
        for backend, servers in (("app", ["web1"]), ("pool", ["p1", "p2"])):
            for server in servers:
                self.admin.set_state(backend, server, "ready")


CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    stats timeout 10s
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{frontend}
    use_backend maintenance if {{ nbsrv(app) eq 0 }}
    default_backend app
backend app
    server web1 127.0.0.1:{app}
backend maintenance
    server page 127.0.0.1:{maintenance}
backend pool
    server p1 127.0.0.1:{app}
    server p2 127.0.0.1:{app}
backend checked
    server up 127.0.0.1:{app} check inter 100ms fall 1 rise 1
    server down 127.0.0.1:{closed} check inter 100ms fall 1 rise 1
"""


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Haproxy]:
    """A real HAProxy on loopback, in front of an app server and a maintenance page."""
    workdir = tmp_path_factory.mktemp("haproxy")
    app, app_port = serve(b"app v1\n")
    maintenance, maintenance_port = serve(b"down for maintenance\n")
    sock = workdir / "admin.sock"
    frontend = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(CONFIG.format(socket=sock, frontend=frontend, app=app_port,
                                    maintenance=maintenance_port, closed=free_port()))
    proc = subprocess.Popen(  # noqa: S603 - fixed argv of the test's own haproxy
        [HAPROXY, "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = HaproxyAdapter(sock, timeout_s=5)

    def answers() -> bool:
        try:
            return bool(admin.version())
        except (AdapterError, PlaybookError):
            return False

    try:
        wait_until(answers, 15, "haproxy's admin socket")
        yield Haproxy(sock, frontend, admin)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        app.shutdown()
        maintenance.shutdown()


@pytest.fixture
def lb(haproxy: Haproxy) -> Iterator[Haproxy]:
    haproxy.reset()
    yield haproxy
    haproxy.reset()


def lb_targets(lb: Haproxy, **backends: Any) -> TargetsConfig:
    return make_targets(haproxy={"edge": {"socket": str(lb.socket), "backends": backends or {
        "app": {"servers": ["web1"]},
        "pool": {"servers": ["p1"], "min_ready": 1},
    }}})


def params(**over: Any) -> MaintenanceModeParams:
    values: dict[str, Any] = {"target": "edge", "backend": "app", "server": "web1"}
    values.update(over)
    return MaintenanceModeParams.model_validate(values)


def test_traffic_goes_to_the_maintenance_page_and_back_to_the_app(lb: Haproxy) -> None:
    """Through HAProxy the app answers; after the playbook the server is MAINT and the
    maintenance page answers; after undo the app answers again."""
    ctx = make_ctx(lb_targets(lb))
    assert lb.page() == b"app v1\n"
    plan = PLAYBOOK.plan(params(), ctx)
    assert (plan.detail["current"], plan.detail["desired"]) == ("ready", "maint")
    assert lb.state("app", "web1") == "ready"  # plan changed nothing

    result = PLAYBOOK.run(params(), ctx)
    assert result.ok, result.summary
    assert (result.detail["before"], result.detail["after"]) == ("ready", "maint")
    assert lb.state("app", "web1") == "maint"
    assert PLAYBOOK.verify(params(), ctx, result).ok
    assert lb.page() == b"down for maintenance\n"

    stored = RunResult.from_dict(json.loads(json.dumps(result.as_dict())))  # as the job keeps it
    undo_plan = PLAYBOOK.undo_plan(params(), ctx, stored)
    assert (undo_plan.detail["current"], undo_plan.detail["desired"]) == ("maint", "ready")
    undone = PLAYBOOK.undo(params(), ctx, stored)
    assert undone.ok, undone.summary
    assert lb.state("app", "web1") == "ready"
    assert lb.page() == b"app v1\n"


def test_ready_takes_the_server_out_of_maintenance(lb: Haproxy) -> None:
    """state: ready puts a server in maintenance back into rotation, at low risk."""
    ctx = make_ctx(lb_targets(lb))
    PLAYBOOK.run(params(), ctx)
    assert lb.page() == b"down for maintenance\n"
    assert PLAYBOOK.risk_for(params(state="ready"), ctx).value == "low"
    assert PLAYBOOK.risk_for(params(), ctx).value == "high"
    result = PLAYBOOK.run(params(state="ready"), ctx)
    assert result.ok and result.detail["before"] == "maint"
    assert lb.page() == b"app v1\n"


def test_drain_is_read_back_and_a_rerun_changes_nothing(lb: Haproxy) -> None:
    """drain is set and read back as drain; a second run reports no change."""
    ctx = make_ctx(lb_targets(lb))
    first = PLAYBOOK.run(params(state="drain"), ctx)
    assert first.ok and first.detail["changed"] is True
    assert lb.state("app", "web1") == "drain"
    again = PLAYBOOK.run(params(state="drain"), ctx)
    assert again.ok and again.detail["changed"] is False
    assert PLAYBOOK.undo(params(state="drain"), ctx, again).detail == {"changed": False}
    assert lb.state("app", "web1") == "drain"


def test_dry_run_changes_nothing(lb: Haproxy) -> None:
    """With dry_run the plan is returned and the server stays ready."""
    result = PLAYBOOK.run(params(), make_ctx(lb_targets(lb), dry_run=True))
    assert result.detail["dry_run"] is True
    assert lb.state("app", "web1") == "ready"


def test_min_ready_refuses_taking_the_last_ready_server_out(lb: Haproxy) -> None:
    """With min_ready 1, p1 may go into maintenance while p2 serves, not after p2 went."""
    ctx = make_ctx(lb_targets(lb, pool={"servers": ["p1"], "min_ready": 1}))
    p1 = params(backend="pool", server="p1")
    assert PLAYBOOK.run(p1, ctx).ok
    PLAYBOOK.run(p1.model_copy(update={"state": "ready"}), ctx)
    lb.admin.set_state("pool", "p2", "maint")
    with pytest.raises(TargetNotAllowed, match="min_ready"):
        PLAYBOOK.run(p1, ctx)
    assert lb.state("pool", "p1") == "ready"


def test_min_ready_does_not_count_a_server_down_by_its_health_check(lb: Haproxy) -> None:
    """`down` is in rotation but fails its health check: taking `up` out would leave no
    server serving, so min_ready 1 refuses it."""
    ctx = make_ctx(lb_targets(lb, checked={"servers": ["up"], "min_ready": 1}))
    wait_until(lambda: [s.operational for s in lb.admin.servers("checked")]
               == ["running", "stopped"], 10, "the health checks to settle")
    assert lb.state("checked", "down") == "ready"
    with pytest.raises(TargetNotAllowed, match="leave 0 server"):
        PLAYBOOK.run(params(backend="checked", server="up"), ctx)
    assert lb.state("checked", "up") == "ready"


def test_servers_and_backends_outside_the_allowlist_are_refused(lb: Haproxy) -> None:
    """p2 (not listed), the maintenance backend (not listed) and an unknown target are refused
    before anything is read or changed."""
    ctx = make_ctx(lb_targets(lb))
    with pytest.raises(TargetNotAllowed, match=r"backends\.pool\.servers"):
        PLAYBOOK.run(params(backend="pool", server="p2"), ctx)
    with pytest.raises(TargetNotAllowed, match="backend 'maintenance'"):
        PLAYBOOK.run(params(backend="maintenance", server="page"), ctx)
    with pytest.raises(TargetNotAllowed, match="targets.haproxy"):
        PLAYBOOK.run(params(target="other"), ctx)
    assert lb.state("pool", "p2") == "ready"


def test_wildcard_allows_any_server_of_that_backend_only(lb: Haproxy) -> None:
    """servers: ["*"] allows every server of its backend; a server HAProxy does not have is
    a PlaybookError."""
    ctx = make_ctx(lb_targets(lb, pool={"servers": ["*"]}))
    assert PLAYBOOK.run(params(backend="pool", server="p2"), ctx).ok
    assert lb.state("pool", "p2") == "maint"
    with pytest.raises(PlaybookError, match="not found"):
        PLAYBOOK.run(params(backend="pool", server="p9"), ctx)
    with pytest.raises(TargetNotAllowed):
        PLAYBOOK.run(params(), ctx)


def test_undo_refuses_when_the_server_changed_since(lb: Haproxy) -> None:
    """After a run to maint and someone else's drain, undo leaves the server alone."""
    ctx = make_ctx(lb_targets(lb))
    result = PLAYBOOK.run(params(), ctx)
    lb.admin.set_state("app", "web1", "drain")
    with pytest.raises(PlaybookError, match="changed since"):
        PLAYBOOK.undo_plan(params(), ctx, result)
    with pytest.raises(PlaybookError, match="changed since"):
        PLAYBOOK.undo(params(), ctx, result)
    assert lb.state("app", "web1") == "drain"


def test_unreachable_socket_is_an_adapter_error(tmp_path: Path) -> None:
    """No HAProxy behind the socket path: plan and run raise AdapterError."""
    ctx = make_ctx(make_targets(haproxy={"edge": {
        "socket": str(tmp_path / "none.sock"), "backends": {"app": {"servers": ["web1"]}}}}))
    with pytest.raises(AdapterError):
        PLAYBOOK.plan(params(), ctx)
    with pytest.raises(AdapterError):
        PLAYBOOK.run(params(), ctx)


@pytest.mark.parametrize("name", ["web1;shutdown sessions server app/web1", "web1 state maint",
                                  "app/web1", "web1\nset server pool/p2 state maint", "*", ""])
def test_adapter_refuses_names_that_are_not_one_word(lb: Haproxy, name: str) -> None:
    """The adapter itself refuses a name that could add a word or a command, and HAProxy's
    servers keep their state."""
    with pytest.raises(PlaybookError, match="not a plain HAProxy name"):
        lb.admin.set_state("pool", name, "maint")
    with pytest.raises(PlaybookError, match="not a plain HAProxy name"):
        lb.admin.set_state(name, "p1", "maint")
    assert (lb.state("pool", "p1"), lb.state("pool", "p2")) == ("ready", "ready")


def test_the_factory_builds_the_haproxy_adapter(lb: Haproxy) -> None:
    """AdapterFactory.haproxy gives an adapter of the HaproxyApi protocol on the target's
    socket, which reads the real servers."""
    api = AdapterFactory().haproxy(lb_targets(lb).haproxy["edge"])
    assert isinstance(api, HaproxyApi)
    assert [s.name for s in api.servers("pool")] == ["p1", "p2"]
    assert api.version().startswith("2.")


def test_haproxy_refusals_are_playbook_errors(lb: Haproxy) -> None:
    """HAProxy's own answers to a bad backend or server are raised with its text."""
    with pytest.raises(PlaybookError, match="No such server"):
        lb.admin.set_state("pool", "p9", "maint")
    with pytest.raises(PlaybookError, match="haproxy refused to show backend"):
        lb.admin.servers("nope")


def test_servers_state_parser_reads_admin_bits() -> None:
    """srv_admin_state bits map to maint (forced/inherited/config/resolution) and drain."""
    head = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight"
    rows = "\n".join(f"3 app {i} s{i} 127.0.0.1 2 {bits} 1" for i, bits in
                     enumerate([0, 1, 2, 4, 8, 16, 32, 9]))
    states = [s.admin for s in parse_servers_state(f"{head}\n{rows}\n\n")]
    assert states == ["ready", "maint", "maint", "maint", "drain", "drain", "maint", "maint"]
    with pytest.raises(PlaybookError):
        parse_servers_state("No such backend.\n")


@pytest.mark.parametrize("socket", ["relative.sock", ""])
def test_socket_must_be_an_absolute_path(socket: str) -> None:
    with pytest.raises(ValidationError):
        make_targets(haproxy={"edge": {"socket": socket, "backends": {"app": {"servers": ["a"]}}}})


ALLOWED = {"p1"}


@FAST
@given(hostile("p1", "p2", "app/p1", "*", "P1"))
@example("p1;shutdown")
@example("b/s;shutdown")
@example("p1\nset server pool/p2 state maint")
@example("*")
@example("p1 ")
@example("P1")
@example("p1/p2")
def test_label_server_names_never_widen_the_allowlist(lb: Haproxy, name: str) -> None:
    """A server (or backend) name from an alert label is refused unless it is exactly an
    allowlisted one; running every accepted job leaves the unlisted p2 ready."""
    targets = lb_targets(lb)
    for rule_params, labels in (
        ({"target": "edge", "backend": "pool", "server": "{{ labels.server }}"}, {"server": name}),
        ({"target": "edge", "backend": "{{ labels.be }}", "server": "p1"}, {"be": name}),
        ({"target": "{{ labels.t }}", "backend": "pool", "server": "p1"}, {"t": name}),
    ):
        job = job_for("maintenance_mode", rule_params, labels, targets)
        if job is None:
            continue
        assert (job.params.target, job.params.backend, job.params.server) == ("edge", "pool", "p1")
        assert job.playbook.targets(job.params) == ["haproxy:edge/pool/p1"]
        assert job.playbook.run(job.params, job.ctx).ok
        lb.admin.set_state("pool", "p1", "ready")
    assert lb.state("pool", "p2") == "ready"


def config_problems(targets: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config({"targets": targets}, "remediator.yml")
    return dict(err.value.problems)


def test_config_refuses_bad_haproxy_and_deployment_fields_with_their_path() -> None:
    """Bad fields of targets.haproxy and targets.deployments are refused at load, each
    named by its path."""
    found = config_problems({
        "haproxy": {"edge": {"socket": "admin.sock", "backends": {
            "app": {"servers": ["web1;shutdown"], "min_ready": -1},
            "b/s": {"servers": ["x"]},
        }, "colour": "red"}},
        "deployments": {"swarm_services": ["web", "bad name"], "max_age_limit": "soon"},
    })
    assert set(found) >= {
        "targets.haproxy.edge.backends.app.servers[0]",
        "targets.haproxy.edge.backends.app.min_ready",
        "targets.haproxy.edge.backends.b/s.[key]",
        "targets.haproxy.edge.colour",
        "targets.deployments.swarm_services[1]",
        "targets.deployments.max_age_limit",
    }, found
    assert "absolute" in config_problems(
        {"haproxy": {"edge": {"socket": "admin.sock", "backends": {"app": {"servers": ["a"]}}}}}
    )["targets.haproxy.edge"]
    assert "targets.haproxy.edge.backends" in config_problems(
        {"haproxy": {"edge": {"socket": "/run/a.sock", "backends": {}}}})
    ok = parse_config({"targets": {"haproxy": {"edge": {
        "socket": "/run/haproxy/admin.sock", "backends": {"app": {"servers": ["*"]}}}},
        "deployments": {"swarm_services": ["web"], "max_age_limit": "2d"}}})
    assert ok.targets.haproxy["edge"].backends["app"].servers == ["*"]


def worker_kit(store: Store, clock: Clock, lb: Haproxy, **rule_over: Any) -> Kit:
    rule = {"name": "maintenance-page", "matchers": ['alertname="WebBackendFailing"'],
            "playbook": "maintenance_mode",
            "params": {"target": "edge", "backend": "app", "server": "{{ labels.server }}"}}
    rule.update(rule_over)
    targets = {"haproxy": {"edge": {"socket": str(lb.socket),
                                    "backends": {"app": {"servers": ["web1"]}}}}}
    return Kit(store, clock, [rule], playbook=PLAYBOOK, targets=targets)  # type: ignore[arg-type]


def fire_backend(kit: Kit, server: str) -> int:
    alert = make_alert(alertname="WebBackendFailing", labels={"server": server})
    return int(kit.fire(make_notification([alert], group_key=f"g-{server}")).incident_id)


def test_worker_runs_the_rule_and_the_maintenance_page_is_served(
    store: Store, clock: Clock, lb: Haproxy
) -> None:
    """An alert naming web1, a rule with approval auto: the worker runs maintenance_mode, the
    job succeeds and HAProxy serves the maintenance page."""
    kit = worker_kit(store, clock, lb, approval={"mode": "auto"})
    fire_backend(kit, "web1")
    assert kit.drain() == 1
    assert [j["state"] for j in kit.jobs()] == ["succeeded"]
    assert lb.state("app", "web1") == "maint"
    assert lb.page() == b"down for maintenance\n"


def test_worker_waits_for_approval_by_the_playbook_class_risk(
    store: Store, clock: Clock, lb: Haproxy
) -> None:
    """Under the default policy, maintenance (high risk on the class) waits for approval and
    HAProxy is untouched; a hostile label value is refused."""
    kit = worker_kit(store, clock, lb)
    fire_backend(kit, "web1")
    fire_backend(kit, "web1;shutdown sessions server app/web1")
    kit.drain()
    assert sorted(j["state"] for j in kit.jobs()) == ["awaiting_approval", "refused"]
    assert lb.state("app", "web1") == "ready"
    assert lb.page() == b"app v1\n"
