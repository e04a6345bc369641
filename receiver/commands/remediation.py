"""Steering automatic remediation by hand: the kill switch (``pause``/``resume``), a rule's
circuit breaker, and approving or denying a job that awaits approval. All audited.

Each command acts as the person its OS account maps to, or as the owner of the operator
API token it is given (see :mod:`receiver.commands.identity`); ``--as`` only checks that.
``pause`` is the emergency stop and also works from an OS account that maps to nobody
(audited as ``os:<account>``); everything that re-enables automation or votes needs a
person.
"""

from __future__ import annotations

import sys

import click

from receiver.commands.identity import TOKEN_OPTION, check_one_vote_per_account, resolve
from receiver.commands.options import CONFIG_OPTION, actor_name, load_config_or_exit, store_for

AS_HELP = "check that you act as this person (who you are comes from your OS account or --token)."


def _as(value: str | None) -> str | None:
    return actor_name(value) if value is not None else None


@click.command()
@CONFIG_OPTION
@click.option("--rule", help="pause only this rule.")
@click.option("--reason", required=True, help="why; recorded in the audit log.")
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
def pause(config_path: str, rule: str | None, reason: str, as_user: str | None,
          token_ref: str | None) -> None:
    """Kill switch: stop all automatic remediation (or one rule's). Audited."""
    from receiver.intake.engine import utcnow
    from receiver.remediation import controls

    config = load_config_or_exit(config_path)
    who = resolve(config, _as(as_user), token_ref, allow_unmapped=True)
    if rule is not None and config.rule(rule) is None:
        raise click.BadParameter(f"no rule named {rule!r}", param_hint="--rule")
    store = store_for(config)
    try:
        controls.pause(store, actor=who.actor, reason=reason, now=utcnow(), rule=rule,
                       origin=who.origin())
    finally:
        store.close()
    click.echo(f"paused {'rule ' + rule if rule else 'all remediation'} (as {who.actor})")


@click.command()
@CONFIG_OPTION
@click.option("--rule", help="resume only this rule.")
@click.option("--reason", default="resumed", help="why; recorded in the audit log.")
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
def resume(config_path: str, rule: str | None, reason: str, as_user: str | None,
           token_ref: str | None) -> None:
    """Lift a pause set by ``remediator pause``. Audited."""
    from receiver.intake.engine import utcnow
    from receiver.remediation import controls

    config = load_config_or_exit(config_path)
    who = resolve(config, _as(as_user), token_ref)
    store = store_for(config)
    try:
        controls.resume(store, actor=who.actor, reason=reason, now=utcnow(), rule=rule,
                        origin=who.origin())
    finally:
        store.close()
    click.echo(f"resumed {'rule ' + rule if rule else 'all remediation'} (as {who.actor})")


@click.command("reset-breaker")
@CONFIG_OPTION
@click.argument("rule")
@click.option("--reason", required=True)
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
def reset_breaker(config_path: str, rule: str, reason: str, as_user: str | None,
                  token_ref: str | None) -> None:
    """Close a rule's circuit breaker so its jobs run automatically again. Audited."""
    from receiver.intake.engine import utcnow
    from receiver.remediation import controls, guards

    config = load_config_or_exit(config_path)
    who = resolve(config, _as(as_user), token_ref)
    store = store_for(config)
    try:
        controls.set_control(store, guards.breaker(rule), "closed", actor=who.actor,
                             reason=reason, now=utcnow(), origin=who.origin())
    finally:
        store.close()
    click.echo(f"circuit breaker of {rule} reset (as {who.actor})")


def _decide(config_path: str, job_id: int, approve: bool, as_user: str | None,
            token_ref: str | None, reason: str) -> None:
    from receiver.intake.engine import utcnow
    from receiver.people.approvals import DecisionError, decide_job

    config = load_config_or_exit(config_path)
    who = resolve(config, _as(as_user), token_ref)
    assert who.person is not None  # noqa: S101 - resolve() refuses unmapped accounts here
    store = store_for(config)
    try:
        with store.unit(write=False) as uow:
            approval = uow.approvals.for_job(job_id)
            votes = (uow.approvals.votes(approval.id)
                     if approval is not None and approval.state == "pending" else [])
        check_one_vote_per_account([{"approver": v.approver, "origin": v.origin}
                                    for v in votes], who)
        row = decide_job(store, config, job_id, approve=approve, user=who.person,
                         reason=reason, now=utcnow(), origin=who.origin())
    except DecisionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"job #{job_id}: {row.state} ({'approved' if approve else 'denied'} "
               f"by {who.person})")


@click.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
@click.option("--reason", default="", help="optional note.")
def approve(config_path: str, job_id: int, as_user: str | None, token_ref: str | None,
            reason: str) -> None:
    """Approve a job that awaits approval, as yourself (OS account or --token). Audited;
    same checks as the approval page; one OS account counts as one approver."""
    _decide(config_path, job_id, True, as_user, token_ref, reason)


@click.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
@click.option("--reason", required=True, help="why it is denied.")
def deny(config_path: str, job_id: int, as_user: str | None, token_ref: str | None,
         reason: str) -> None:
    """Deny a job that awaits approval, as yourself (OS account or --token). Audited."""
    _decide(config_path, job_id, False, as_user, token_ref, reason)
