"""``remediator undo JOB``: take back what a job did, as a job of its own. Audited.

Acts as the person the OS account maps to, or as the owner of the operator API token it is
given (see :mod:`receiver.commands.identity`), like ``approve``.
"""

from __future__ import annotations

import sys

import click

from receiver.commands.identity import TOKEN_OPTION, resolve
from receiver.commands.options import CONFIG_OPTION, actor_name, load_config_or_exit, store_for

AS_HELP = "check that you act as this person (who you are comes from your OS account or --token)."


@click.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--reason", default="", help="why; recorded in the audit log.")
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
def undo(config_path: str, job_id: int, reason: str, as_user: str | None,
         token_ref: str | None) -> None:
    """Undo a job that acted (its playbook's undo, e.g. scale back, maintenance off), as
    yourself (OS account or --token). The undo is a job of its own (guards, locks, approval
    policy); a job is undone at most once. Audited."""
    from receiver.errors import ActionError
    from receiver.intake.engine import utcnow
    from receiver.remediation.undo import request

    config = load_config_or_exit(config_path)
    who = resolve(config, actor_name(as_user) if as_user is not None else None, token_ref)
    assert who.person is not None  # noqa: S101 - resolve() refuses unmapped accounts here
    store = store_for(config)
    try:
        job = request(store, job_id, user=who.person, reason=reason, now=utcnow(), via="cli",
                      origin=who.origin())
    except ActionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"job #{job_id}: undo queued as job #{job.id} (by {who.person})")
