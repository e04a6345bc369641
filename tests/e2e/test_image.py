"""The container image, built by ``scripts/build-image.sh`` (wheels made outside the build, a
local Debian base made with debootstrap and cached by tag) and run as shipped: the
Dockerfile's CMD, an unprivileged user, a read-only config mount, and dockerd's socket
mounted so that a restart playbook acts on a real container.

One build and one running container serve every test of this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import IMAGE, OWNER_LABEL, PREFIX, RUN_ID, STOPS_FAST, wait_for
from tests.support import http

pytestmark = pytest.mark.slow

TAG = "local/remediator:e2e"
TOKEN = f"image-webhook-{uuid.uuid4().hex}"
API_TOKEN = f"image-api-{uuid.uuid4().hex}"
ALERT = "ImageTestContainerDown"
BUILD_TIMEOUT = 900


@dataclass
class Running:
    container: Any
    url: str
    target: Any  # the busybox container the restart rule may touch

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> Any:
    """Build the image once; print its size and the build's times."""
    started = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh"), TAG],
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert out.returncode == 0, f"build-image.sh failed:\n{out.stdout}\n{out.stderr[-4000:]}"
    built = docker_client.images.get(TAG)
    print(f"\n{out.stdout.strip()}\nbuilt in {time.monotonic() - started:.0f}s")
    return built


def _config(tmp: Path, target: str) -> Path:
    """remediator.example.yml with data_dir inside the container and one restart rule."""
    cfg = yaml.safe_load((ROOT / "remediator.example.yml").read_text(encoding="utf-8"))
    cfg["data_dir"] = "/var/lib/remediator/data"
    cfg["store"]["url"] = "sqlite:///remediator.db"
    cfg["rules"] = [{
        "name": "restart-image-target",
        "match": {"alertname": ALERT},
        "playbook": "restart_container",
        "params": {"name": "{{ labels.container }}", "stop_timeout_s": 2},
        "approval": {"mode": "auto"},
        "guards": {"cooldown": "0s"},
    }]
    cfg["targets"] = {"containers": {"names": [target]}}
    cfg["remediation"] = {"rate_budget": {"max": 100, "per": "1h"}}
    cfg["people"] = {
        "users": {"image-reader": {"groups": []}},
        "api_tokens": {"image": {"token": "env:IMAGE_API_TOKEN", "user": "image-reader",
                                 "scope": "read"}},
    }
    path = tmp / "remediator.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    path.chmod(0o644)  # read by the image's unprivileged user through the bind mount
    return path


@pytest.fixture(scope="module")
def running(image: Any, docker_client: docker.DockerClient,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("image")
    tmp.chmod(0o755)
    target = docker_client.containers.run(
        IMAGE, STOPS_FAST, name=f"{PREFIX}-image-target", detach=True,
        labels={OWNER_LABEL: RUN_ID}, network_mode="none")
    config = _config(tmp, target.name)
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    container = docker_client.containers.run(
        TAG, name=f"{PREFIX}-image-remediator", detach=True, labels={OWNER_LABEL: RUN_ID},
        environment={"REMEDIATOR_WEBHOOK_TOKEN": TOKEN, "IMAGE_API_TOKEN": API_TOKEN},
        volumes={str(config): {"bind": "/etc/remediator/remediator.yml", "mode": "ro"},
                 "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}},
        group_add=[str(socket_gid)], ports={"9095/tcp": ("127.0.0.1", None)})
    try:
        def published() -> str | None:
            container.reload()
            if container.status == "exited":
                raise RuntimeError(f"the image's container exited:\n{container.logs().decode()}")
            bound = (container.attrs["NetworkSettings"]["Ports"] or {}).get("9095/tcp")
            return f"http://127.0.0.1:{bound[0]['HostPort']}" if bound else None

        url = wait_for(published, 30, "the published port")
        run = Running(container, url, target)

        def ready() -> bool:
            published()
            try:
                return http("GET", url + "/readyz", timeout=1)[0] == 200
            except OSError:
                return False

        try:
            wait_for(ready, 60, "the image's /readyz")
        except (TimeoutError, RuntimeError):
            print(run.logs())
            raise
        yield run
    finally:
        for c in (container, target):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


def _post(url: str, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, raw = http("POST", url + "/api/v1/alerts", body=body, headers=headers)
    return status, json.loads(raw) if raw else None


def _notification(alerts: list[dict[str, Any]], group: str) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="{group}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "remediator", "groupLabels": {"alertname": group},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example:9093",
        "alerts": alerts,
    }


def _alert(name: str, **labels: str) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": name, **labels},
            "annotations": {"summary": "from the image test"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom.example/graph", "fingerprint": uuid.uuid4().hex[:16]}


def test_image_answers_healthz_and_readyz(running: Running) -> None:
    """The shipped CMD serves /healthz and a ready store."""
    status, body = http("GET", running.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = http("GET", running.url + "/readyz")
    assert status == 200 and json.loads(body)["store"] == "sqlite"


def test_image_runs_as_an_unprivileged_user(image: Any, running: Running) -> None:
    """The image's user is remediator, and the serving processes are not root."""
    assert image.attrs["Config"]["User"] == "remediator"
    result = running.container.exec_run(["id", "-u"])
    assert result.exit_code == 0 and result.output.strip() != b"0"
    top = running.container.top(ps_args="-o pid,user,args")
    users = {p[1] for p in top["Processes"] if "remediator" in p[2] or "gunicorn" in p[2]}
    assert users and "root" not in users, top


def test_image_webhook_needs_the_token(running: Running) -> None:
    """Without the token the webhook is refused (401) and with it an incident opens."""
    body = _notification([_alert("ImageTestOther")], "ImageTestOther")
    status, answer = _post(running.url, body, None)
    assert status == 401 and answer["error"] == "unauthorized"
    status, answer = _post(running.url, body, "not-the-token-at-all")
    assert status == 401
    status, answer = _post(running.url, body, TOKEN)
    assert status == 200, answer
    assert answer["opened"] is True and answer["incident_id"] >= 1


def test_image_restarts_a_container_through_the_mounted_socket(running: Running) -> None:
    """An alert naming the allowlisted container makes the image's worker restart it."""
    target = running.target
    target.reload()
    before = target.attrs["State"]["StartedAt"]
    body = _notification([_alert(ALERT, container=target.name, severity="warning")], ALERT)
    status, answer = _post(running.url, body, TOKEN)
    assert status == 200, answer

    def restarted() -> str | None:
        target.reload()
        started = target.attrs["State"]["StartedAt"]
        return started if started != before and target.status == "running" else None

    try:
        wait_for(restarted, 45, "the target's restart", interval=0.5)
    except TimeoutError:
        print(running.logs())
        raise

    def succeeded() -> list[str] | None:
        status, raw = http("GET", f"{running.url}/api/v1/incidents/{answer['incident_id']}",
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert status == 200, raw
        kinds = [e["kind"] for e in json.loads(raw)["timeline"]]
        return kinds if "job_succeeded" in kinds else None

    wait_for(succeeded, 30, "the job's success in the incident's timeline", interval=0.5)


BUILD_TOOLS = re.compile(r"^(usr/(local/)?bin/(gcc|cc|c\+\+|g\+\+|make|ld|as)(-\d+)?)$")


def test_image_holds_no_build_tools_or_secrets(image: Any, docker_client: docker.DockerClient,
                                               tmp_path: Path) -> None:
    """The image's filesystem has no compiler, no pip in remediator's venv (a base such as
    python:3.11-slim brings its own), no wheel or pip cache, no source tree, .git, config
    file, key or token."""
    created = docker_client.containers.create(TAG, labels={OWNER_LABEL: RUN_ID})
    try:
        archive = tmp_path / "image.tar"
        with archive.open("wb") as f:
            for chunk in created.export():
                f.write(chunk)
    finally:
        created.remove(force=True)
    with tarfile.open(archive) as tar:
        names = [m.name.removeprefix("./") for m in tar.getmembers()]
    assert "opt/remediator/bin/remediator" in names  # the walk did see the image's files
    assert any(n.startswith("opt/remediator/lib/python3.11/site-packages/receiver/")
               for n in names)
    bad = [n for n in names if BUILD_TOOLS.match(n)
           or n.startswith(("wheels/", "build/", "src/", "app/", "root/.cache/"))
           or "/.cache/pip" in n or n.endswith(".whl") and "python-wheels/" not in n
           or n.startswith("opt/remediator/bin/pip")
           or n.startswith("opt/remediator/lib/python3.11/site-packages/pip/")
           or any(part == ".git" for part in n.split("/"))
           or n.rsplit("/", 1)[-1] in ("remediator.yml", "remediator.example.yml", ".env",
                                       "secret_key", "audit_key", "id_rsa", "id_ed25519")]
    assert not bad, bad
    env = " ".join(image.attrs["Config"]["Env"])
    assert not re.search(r"TOKEN|PASSWORD|SECRET|DB_URL", env), env
    assert image.attrs["Config"]["Cmd"] == ["remediator", "serve", "--bind", "0.0.0.0:9095"]
