"""The ``remediator`` command line: serve, migrate, check-config, simulate.

Heavy modules (the Flask app, prometheus_client) are imported inside the commands:
``serve`` must set PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import click
from pydantic import ValidationError

from receiver.config import Config, load_config
from receiver.errors import ConfigError, StoreError

CONFIG_OPTION = click.option(
    "--config",
    "-c",
    "config_path",
    envvar="REMEDIATOR_CONFIG",
    default="remediator.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Path to remediator.yml (env REMEDIATOR_CONFIG).",
)


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@click.group()
@click.version_option(package_name="remediator")
def main() -> None:
    """remediator: Alertmanager webhook receiver and guarded auto-remediator."""


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a config file; print the path to each bad field and exit 1 if any."""
    config = _load(path)
    click.echo(
        f"{path}: ok ({len(config.severity.rules)} severity rules, {len(config.rules)} "
        f"remediation rules, store {config.store_url().split(':', 1)[0]}, "
        f"auth {'on' if config.auth.configured else 'NOT CONFIGURED'})"
    )


@main.command()
@CONFIG_OPTION
def migrate(config_path: str) -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from receiver.store import open_store

    config = _load(config_path)
    store = open_store(config.store_url(), pool_min=0, pool_max=2)
    try:
        applied = store.migrate()
    except StoreError as exc:
        click.echo(f"migration failed: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo("applied: " + ", ".join(applied) if applied else "up to date")


@main.command()
@CONFIG_OPTION
@click.option("--bind", help="host:port to listen on (overrides server.bind).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 64), help="threads per worker.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept unauthenticated webhooks and API calls when no auth is configured.",
)
def serve(
    config_path: str,
    bind: str | None,
    workers: int | None,
    threads: int | None,
    insecure_no_auth: bool,
) -> None:
    """Run the receiver under gunicorn."""
    config = _load(config_path)
    if not config.auth.configured and not insecure_no_auth:
        click.echo(
            "refusing to start: no webhook auth configured (auth.bearer_token or auth.basic).\n"
            "Configure it, or pass --insecure-no-auth to accept unauthenticated requests.",
            err=True,
        )
        sys.exit(2)
    if not config.auth.configured:
        click.echo("WARNING: --insecure-no-auth: webhook and API are unauthenticated", err=True)

    metrics_dir = config.data_dir / "prometheus-multiproc"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from receiver.logs import configure_logging
    from receiver.server import run_gunicorn

    configure_logging(config.logging.level, config.logging.format)
    if config.store.migrate_on_start:
        from receiver.store import open_store

        store = open_store(config.store_url(), pool_min=0, pool_max=2)
        try:
            store.migrate()
        except StoreError as exc:
            click.echo(f"migration failed: {exc}", err=True)
            sys.exit(1)
        finally:
            store.close()
    run_gunicorn(
        config,
        bind=bind or config.server.bind,
        workers=workers or config.server.workers,
        threads=threads or config.server.threads,
        insecure_no_auth=insecure_no_auth,
    )


@main.command()
@CONFIG_OPTION
@click.argument("payload", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def simulate(config_path: str, payload: Any, as_json: bool) -> None:
    """Show what a webhook payload would do: severity, incident key, rules. No side effects."""
    from receiver.alertmanager import Notification
    from receiver.engine import Intake

    config = _load(config_path)
    body = payload.read()
    try:
        n = Notification.model_validate_json(body)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"]) or "(body)"
            click.echo(f"{loc}: {err['msg']}", err=True)
        sys.exit(1)
    intake = Intake(config, None)
    records, severity, reason = intake.classify(n)
    matches = intake.match_rules(n, severity)
    report: dict[str, Any] = {
        "incident_key": intake.incident_key(n),
        "severity": severity.value,
        "severity_reason": reason,
        "ack_due_in": str(intake.sla.ack_due(severity, intake.clock()) - intake.clock()),
        "alerts": [
            {
                "fingerprint": r.fingerprint,
                "alertname": r.alertname,
                "status": r.status,
                "severity": r.severity.value,
                "severity_reason": r.severity_reason,
                "rules": [
                    {
                        "rule": m.rule,
                        "playbook": m.playbook,
                        "params": m.params,
                        "error": m.error,
                        "approval": m.approval,
                    }
                    for m in matches
                    if m.alert_fingerprint == r.fingerprint
                ],
            }
            for r in records
        ],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"incident key: {report['incident_key']}")
    click.echo(
        f"severity:     {severity.value} ({reason}); acknowledge within {report['ack_due_in']}"
    )
    for a in report["alerts"]:
        click.echo(f"- {a['alertname'] or '?'} [{a['fingerprint']}] {a['status']} -> "
                   f"{a['severity']} ({a['severity_reason']})")
        for m in a["rules"]:
            what = f"error: {m['error']}" if m["error"] else json.dumps(m["params"])
            gate = {"required": "approval required", "auto": "automatic",
                    "risk": "approval if high risk"}[m["approval"]]
            click.echo(f"    rule {m['rule']} -> {m['playbook']} ({gate}) {what}")
        if not a["rules"]:
            click.echo("    no remediation rule matches")
