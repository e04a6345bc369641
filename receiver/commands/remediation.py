"""Steering automatic remediation by hand: the kill switch (``pause``/``resume``), a rule's
circuit breaker, and approving or denying a job that awaits approval. All audited."""

from __future__ import annotations

import sys

import click

from receiver.commands.options import CONFIG_OPTION, actor_name, load_config_or_exit, store_for


@click.command()
@CONFIG_OPTION
@click.option("--rule", help="pause only this rule.")
@click.option("--reason", required=True, help="why; recorded in the audit log.")
@click.option("--as", "actor", required=True, help="who is pausing.")
def pause(config_path: str, rule: str | None, reason: str, actor: str) -> None:
    """Kill switch: stop all automatic remediation (or one rule's). Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = load_config_or_exit(config_path)
    if rule is not None and config.rule(rule) is None:
        raise click.BadParameter(f"no rule named {rule!r}", param_hint="--rule")
    store = store_for(config)
    try:
        controls.pause(store, actor=f"user:{actor_name(actor)}", reason=reason, now=utcnow(),
                       rule=rule)
    finally:
        store.close()
    click.echo(f"paused {'rule ' + rule if rule else 'all remediation'}")


@click.command()
@CONFIG_OPTION
@click.option("--rule", help="resume only this rule.")
@click.option("--reason", default="resumed", help="why; recorded in the audit log.")
@click.option("--as", "actor", required=True, help="who is resuming.")
def resume(config_path: str, rule: str | None, reason: str, actor: str) -> None:
    """Lift a pause set by ``remediator pause``. Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        controls.resume(store, actor=f"user:{actor_name(actor)}", reason=reason, now=utcnow(),
                        rule=rule)
    finally:
        store.close()
    click.echo(f"resumed {'rule ' + rule if rule else 'all remediation'}")


@click.command("reset-breaker")
@CONFIG_OPTION
@click.argument("rule")
@click.option("--reason", required=True)
@click.option("--as", "actor", required=True)
def reset_breaker(config_path: str, rule: str, reason: str, actor: str) -> None:
    """Close a rule's circuit breaker so its jobs run automatically again. Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        controls.reset_breaker(store, rule, actor=f"user:{actor_name(actor)}", reason=reason,
                               now=utcnow())
    finally:
        store.close()
    click.echo(f"circuit breaker of {rule} reset")


def _decide(config_path: str, job_id: int, approve: bool, actor: str, reason: str) -> None:
    from receiver.approvals import DecisionError, decide_job
    from receiver.engine import utcnow

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        row = decide_job(store, config, job_id, approve=approve, user=actor_name(actor),
                         reason=reason, now=utcnow(), origin={"via": "cli"})
    except DecisionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"job #{job_id}: {row['state']}")


@click.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "actor", required=True, help="the approver.")
@click.option("--reason", default="", help="optional note.")
def approve(config_path: str, job_id: int, actor: str, reason: str) -> None:
    """Approve a job that awaits approval. Audited; same checks as the approval page."""
    _decide(config_path, job_id, True, actor, reason)


@click.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "actor", required=True, help="the approver.")
@click.option("--reason", required=True, help="why it is denied.")
def deny(config_path: str, job_id: int, actor: str, reason: str) -> None:
    """Deny a job that awaits approval. Audited."""
    _decide(config_path, job_id, False, actor, reason)
