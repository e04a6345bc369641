"""A real ``remediator serve`` on loopback, and headless Chromium (Debian's) through Playwright.

One receiver serves the whole session (starting gunicorn, its embedded worker and the
migrations costs seconds): ``remediator serve`` from ``remediator.example.yml`` with the
data dir, store (a fresh PostgreSQL database), auth, people, rules, targets and a
notification channel filled in. Its remediation target is the real Redis that
``scripts/services.sh`` starts (db 5, keys prefixed per test), flushed by the real
``flush_cache`` playbook once approved in the browser.

Approval links come from where an approver gets them: the notification channel is a local
HTTP endpoint (an apprise ``json://`` URL) that collects what the worker sends. When no
process sends the outbox yet (``notify.deliver_due`` is not called by any loop), the links
are made from the store exactly as the sender would make them
(``receiver.people.tokens.approval_links``); :attr:`Server.links_source` says which was used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from werkzeug.security import generate_password_hash

import receiver
from receiver.config import Config, load_config
from receiver.people.tokens import approval_links
from receiver.store import Store, open_store
from receiver.store import approvals as approval_store
from receiver.store import jobs as job_store
from tests.conftest import PG_DSN, ROOT, drop_pg_database, new_pg_database, pg_url
from tests.factories import make_alert, make_notification
from tests.git_repo import make_git_repo
from tests.integration.conftest import wait_until
from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                         "has_touch": True, "device_scale_factor": 2}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
SCREENSHOTS = ROOT / "test-output" / "screenshots"

REDIS_URL = os.environ.get("REMEDIATOR_TEST_REDIS_BASE_URL", "redis://127.0.0.1:63790")
REDIS_DB = 5
PASSWORD = "browser test password 42"
RUN_ID = uuid.uuid4().hex[:8]
START_TIMEOUT = 40.0
JOB_TIMEOUT = 30.0
DEPLOY_COMMITS = ("release 1.0", "release 1.1 <img src=x onerror=alert(1)>")
"""The commits of the repository the ``recent-deploys`` check reads, oldest first."""

# What the receiver's config refers to (env:NAME); set in this process and the server's.
ENV = {
    "RMBROWSER_WEBHOOK_TOKEN": f"webhook-{RUN_ID}-{uuid.uuid4().hex}",
    "RMBROWSER_ALICE_TOKEN": f"alice-{uuid.uuid4().hex}",
    "RMBROWSER_BOB_TOKEN": f"bob-{uuid.uuid4().hex}",
    "RMBROWSER_READ_TOKEN": f"read-{uuid.uuid4().hex}",
    "RMBROWSER_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
    "RMBROWSER_REDIS_URL": REDIS_URL,
}


def bearer(who: str) -> dict[str, str]:
    """The Authorization header of an API token: ``alice``/``bob`` (operator), ``reader``."""
    env = {"alice": "RMBROWSER_ALICE_TOKEN", "bob": "RMBROWSER_BOB_TOKEN",
           "reader": "RMBROWSER_READ_TOKEN"}[who]
    return {"Authorization": f"Bearer {ENV[env]}"}


def wait_for(check: Callable[[], Any], what: str, timeout: float = JOB_TIMEOUT,
             interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    return wait_until(check, timeout, what, interval)


# -- the notification channel -------------------------------------------------------------
@dataclass
class NotificationSink:
    """A local HTTP endpoint that a ``json://`` apprise channel posts to; keeps every body."""

    port: int
    bodies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def links_for(self, job_id: int) -> dict[str, str]:
        """The approve/deny links of the ``job_awaiting_approval`` message for ``job_id``."""
        with self.lock:
            bodies = list(self.bodies)
        for raw in bodies:
            try:
                text = str(json.loads(raw).get("message", ""))
            except ValueError:
                continue
            if f"job #{job_id} awaiting approval" not in text:
                continue
            found = dict(re.findall(r"^- (\S+): (https?://\S+/approvals/\S+)$", text, re.M))
            if found:
                return found
        return {}


def _start_sink() -> tuple[NotificationSink, ThreadingHTTPServer]:
    sink = NotificationSink(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size).decode("utf-8", errors="replace")
            with sink.lock:
                sink.bodies.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", sink.port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return sink, httpd


def outbox_is_sent() -> bool:
    """Whether some loop in the receiver calls ``notify.deliver_due`` (sends the outbox)."""
    pkg = Path(receiver.__file__).parent
    return any("deliver_due(" in p.read_text(encoding="utf-8")
               for p in pkg.rglob("*.py") if p.name != "notify.py")


# -- the receiver -------------------------------------------------------------------------
def _people() -> dict[str, Any]:
    pw = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")  # cheap for tests
    return {
        "users": {
            "alice": {"groups": ["oncall", "dba"], "password_hash": pw},
            "bob": {"groups": ["dba"], "password_hash": pw},
            "carol": {"groups": ["web"], "password_hash": pw},
        },
        "api_tokens": {
            "alice-ops": {"token": "env:RMBROWSER_ALICE_TOKEN", "user": "alice",
                          "scope": "operator"},
            "bob-ops": {"token": "env:RMBROWSER_BOB_TOKEN", "user": "bob", "scope": "operator"},
            "reader": {"token": "env:RMBROWSER_READ_TOKEN", "user": "carol", "scope": "read"},
        },
        # A browser context that sends X-Forwarded-User stands for a user behind the proxy.
        "trusted_proxy": {"header": "X-Forwarded-User", "addresses": ["127.0.0.1/32"]},
    }


def _flush_rule(name: str, alertname: str, approval: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "matchers": [f'alertname="{alertname}"'],
        "playbook": "flush_cache",
        "params": {"target": "cache", "mode": "pattern", "pattern": "{{ labels.key_prefix }}:*",
                   "db": REDIS_DB},
        "approval": approval,
        # Several tests flush the same target within minutes; cooldown is not under test here.
        "guards": {"cooldown": "0s"},
    }


def write_config(tmp: Path, port: int, sink: NotificationSink) -> Path:
    """remediator.example.yml with what a deployment with approvers fills in."""
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = str(tmp / "data")
    cfg["store"]["url"] = "env:REMEDIATOR_DB_URL"
    cfg["auth"] = {"bearer_token": "env:RMBROWSER_WEBHOOK_TOKEN"}
    cfg["server"].update({
        "public_url": f"http://127.0.0.1:{port}",
        "secret_key": "env:RMBROWSER_SECRET_KEY",
        # Plain HTTP on loopback: a Secure cookie would never be sent back by the browser.
        # Production keeps the default (true) behind TLS.
        "secure_cookies": False,
    })
    cfg["people"] = _people()
    cfg["remediation"] = {"poll_interval": "200ms"}
    cfg["rules"] = [
        _flush_rule("flush-sessions", "SessionCacheStale", {"mode": "required"}),
        _flush_rule("flush-shared", "SharedCacheStale",
                    {"mode": "required", "approvers": 2, "groups": ["dba"]}),
    ]
    cfg["targets"] = {"redis": {"cache": {"url": "env:RMBROWSER_REDIS_URL", "dbs": [REDIS_DB]}}}
    make_git_repo(tmp / "app-repo", list(DEPLOY_COMMITS))
    cfg["diagnostics"] = {"checks": [{  # git only: the Swarm side is in tests/playbooks
        "name": "recent-deploys", "match": {"alertname": "DeployContext"},
        "deploys": {"git": {"path": str(tmp / "app-repo"), "commits": 3}}}]}
    os.environ["RMBROWSER_NOTIFY_URL"] = f"json://127.0.0.1:{sink.port}/hook"
    cfg["notifications"] = {
        "channels": {"oncall-chat": {"url": "env:RMBROWSER_NOTIFY_URL",
                                     "events": ["job_awaiting_approval"]}},
        "retry": {"backoff_initial": "1s", "backoff_max": "2s"},
    }
    path = tmp / "remediator.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Server:
    """A running ``remediator serve`` and what the tests need to drive and observe it."""

    url: str
    config: Config
    store: Store
    log_path: Path
    sink: NotificationSink
    links_source: str  # "notification" or "store"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def fire(self, alertname: str, labels: dict[str, str],
             annotations: dict[str, str] | None = None, **extra: Any) -> int:
        """POST one firing alert to the webhook (bearer auth); return its incident id."""
        body = make_notification(
            [make_alert(alertname=alertname, labels=labels, annotations=annotations,
                        starts_at=datetime.now(UTC) - timedelta(seconds=5))],
            group_key=f'{{}}:{{alertname="{alertname}",run="{uuid.uuid4().hex}"}}', **extra)
        r = requests.post(f"{self.url}/api/v1/alerts", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {ENV['RMBROWSER_WEBHOOK_TOKEN']}"})
        assert r.status_code == 200, r.text
        incident: int = r.json()["incident_id"]
        return incident

    def api(self, path: str, who: str = "reader") -> Any:
        """GET the JSON API with the API token of ``who`` (alice, bob: operators; reader)."""
        r = requests.get(self.url + path, timeout=10, headers=bearer(who))
        assert r.status_code == 200, f"GET {path} -> {r.status_code}: {r.text[:300]}"
        return r.json()

    def post_api(self, path: str, body: dict[str, Any], who: str) -> Any:
        r = requests.post(self.url + path, json=body, timeout=10, headers=bearer(who))
        assert r.status_code == 200, f"POST {path} -> {r.status_code}: {r.text[:300]}"
        return r.json()

    def job_of(self, incident_id: int) -> dict[str, Any]:
        """The incident's one job, read from the store."""
        with self.store.db.transaction(write=False) as tx:
            rows = job_store.list_for_incident(tx, incident_id)
        assert len(rows) == 1, rows
        return dict(rows[0])

    def wait_job_state(self, incident_id: int, state: str,
                       timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Poll the incident API until its job is in ``state``; fail early on another final one."""
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            nonlocal last
            jobs = self.api(f"/api/v1/incidents/{incident_id}")["jobs"]
            if not jobs:
                return None
            last = jobs[0]
            if last["state"] != state and last["state"] in job_store.FINAL:
                pytest.fail(f"job #{last['id']} ended {last['state']}, not {state}: "
                            f"{last.get('reason')}")
            return last if last["state"] == state else None

        job: dict[str, Any] = wait_for(check, f"incident {incident_id}'s job to be {state}",
                                       timeout)
        return job

    def approval(self, job_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The job's approval row and its votes, straight from the store."""
        with self.store.db.transaction(write=False) as tx:
            row = approval_store.for_job(tx, job_id)
            assert row is not None, f"job {job_id} has no approval"
            votes = approval_store.votes(tx, row["id"])
        return dict(row), [dict(v) for v in votes]

    def links(self, job_id: int) -> dict[str, str]:
        """Each eligible approver's link for a parked job (user -> URL)."""
        if self.links_source == "notification":
            found: dict[str, str] = wait_for(lambda: self.sink.links_for(job_id),
                                             f"the approval notification for job {job_id}")
            return found
        with self.store.unit(write=False) as uow:
            approval = uow.approvals.for_job(job_id)
            job = uow.jobs.get(job_id)
        assert approval is not None and job is not None
        return approval_links(self.config, approval)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group this fixture started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError):  # the embedded worker, if it outlived serve
        os.killpg(proc.pid, signal.SIGKILL)


def _services_up() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except (redis.RedisError, psycopg.Error) as exc:
        pytest.fail(f"the real services are not running ({exc}); run: bash scripts/services.sh")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``remediator serve`` (gunicorn + embedded worker) on a free port, on a fresh database."""
    _services_up()
    tmp = tmp_path_factory.mktemp("browser-receiver")
    sink, httpd = _start_sink()
    dbname = new_pg_database(None)  # empty: `serve` applies the migrations itself
    saved = {k: os.environ.get(k) for k in [*ENV, "REMEDIATOR_DB_URL", "RMBROWSER_NOTIFY_URL"]}
    os.environ.update(ENV)
    os.environ["REMEDIATOR_DB_URL"] = pg_url(dbname)
    port = free_port()
    config_path = write_config(tmp, port, sink)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["remediator", "serve", "-c", str(config_path), "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    store = None
    srv = None
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"remediator serve exited with {proc.returncode}:\n"
                            f"{log_path.read_text(errors='replace')}")
            try:
                return requests.get(url + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, "the receiver's /readyz", START_TIMEOUT, interval=0.2)
        config = load_config(config_path)
        store = open_store(pg_url(dbname), pool_min=0, pool_max=4)
        srv = Server(url, config, store, log_path, sink,
                     "notification" if outbox_is_sent() else "store")
        yield srv
    finally:
        _stop(proc)
        httpd.shutdown()
        if store is not None:
            store.close()
        drop_pg_database(dbname)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.stash[_FAILED] = rep.failed
    return rep


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _server_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the tail of the receiver's log when a test fails."""
    yield
    if request.node.stash.get(_FAILED, False) and "server" in request.fixturenames:
        srv: Server = request.getfixturevalue("server")
        print("----- remediator serve log (tail) -----\n" + srv.log()[-8000:])


# -- Redis, the remediation target -----------------------------------------------------------
@pytest.fixture(scope="session")
def cache() -> Iterator[redis.Redis]:
    """The real Redis db that the ``cache`` target allows; this run's keys are removed after."""
    client = redis.Redis.from_url(REDIS_URL, db=REDIS_DB, decode_responses=True)
    yield client
    for key in client.scan_iter(match=f"*{RUN_ID}*", count=500):
        client.unlink(key)
    client.close()


def key_prefix(name: str) -> str:
    """A key prefix unique to this run and test (Redis key patterns and label values)."""
    return f"{name}-{RUN_ID}-{uuid.uuid4().hex[:6]}"


# -- the browser ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """A factory of isolated browser contexts (own cookies), closed after the test."""
    made: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def phone(new_context: Callable[..., BrowserContext]) -> Page:
    """A page in a phone-sized, touch, mobile context."""
    return new_context(**PHONE).new_page()


@pytest.fixture
def desktop(new_context: Callable[..., BrowserContext]) -> Page:
    return new_context(**DESKTOP).new_page()


def log_in(page: Page, base: str, user: str, then: str | None = None) -> None:
    """Open ``then`` (or the login page), fill the login form that it leads to, submit it."""
    page.goto(then or f"{base}/login")
    assert "/login" in page.url, f"expected the login form, got {page.url}"
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit].primary")
    assert "/login" not in page.url, page.content()[:500]


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
