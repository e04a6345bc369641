"""The ``remediator`` command line: the ``main`` group and its core commands (check-config,
migrate, hash-password). The other commands live in :mod:`receiver.commands`, one module per
thing they act on, and are registered on ``main`` here.

Heavy modules (the Flask app, prometheus_client) are imported inside the commands:
``serve`` must set PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported.
"""

from __future__ import annotations

import sys

import click

from receiver.commands.audit import audit
from receiver.commands.backup import backup
from receiver.commands.configtest import replay, test_command
from receiver.commands.gameday import gameday
from receiver.commands.incidents import incident, postmortem, report
from receiver.commands.oncall import oncall
from receiver.commands.options import CONFIG_OPTION, load_config_or_exit
from receiver.commands.processes import serve, worker
from receiver.commands.remediation import approve, deny, pause, reset_breaker, resume
from receiver.commands.rules import rules
from receiver.commands.simulate import simulate
from receiver.commands.undo import undo
from receiver.errors import StoreError


@click.group()
@click.version_option(package_name="remediator")
def main() -> None:
    """remediator: Alertmanager webhook receiver and guarded auto-remediator."""


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a config file; print the path to each bad field and exit 1 if any."""
    config = load_config_or_exit(path)
    click.echo(
        f"{path}: ok ({len(config.severity.rules)} severity rules, {len(config.rules)} "
        f"remediation rules, store {config.store_url().split(':', 1)[0]}, "
        f"auth {'on' if config.auth.configured else 'NOT CONFIGURED'})"
    )
    from receiver.commands.simulate import review_rules

    for line in review_rules(config):
        click.echo(f"  {line}")


@main.command()
@CONFIG_OPTION
def migrate(config_path: str) -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from receiver.store import open_store

    config = load_config_or_exit(config_path)
    store = open_store(config.store_url(), pool_min=0, pool_max=2)
    try:
        applied = store.migrate()
    except StoreError as exc:
        click.echo(f"migration failed: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo("applied: " + ", ".join(applied) if applied else "up to date")


@main.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password(password: str) -> None:
    """Print a password hash for people.users.<name>.password_hash."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))


for _command in (serve, worker, simulate, pause, resume, reset_breaker, approve, deny, incident,
                 postmortem, report, audit, backup, oncall, test_command,
                 replay, gameday, undo, rules):
    main.add_command(_command)
