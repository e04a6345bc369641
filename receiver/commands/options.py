"""What every command shares: the ``--config`` option, loading that file (exit 1 with the
bad fields), opening its store, and checking a ``--as`` user name."""

from __future__ import annotations

import sys
from typing import Any

import click

from receiver.config import Config, load_config
from receiver.errors import ConfigError

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


def load_config_or_exit(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def store_for(config: Config, *, create_audit_key: bool = True) -> Any:
    """The configured store, chaining audit entries with the deployment's audit key."""
    from receiver.audit.checkpoints import store_options
    from receiver.secrets import redactor_for
    from receiver.store import open_store

    store = open_store(config.store_url(), pool_min=0, pool_max=4,
                       **store_options(config, create_key=create_audit_key))
    store.redact_with(redactor_for(config))
    return store


def actor_name(value: str) -> str:
    if not value or len(value) > 100 or any(c in value for c in "\r\n\x00"):
        raise click.BadParameter("a user name, 1-100 characters, one line")
    return value
