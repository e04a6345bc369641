"""``remediator oncall``: who is on duty now and next, and temporary overrides (audited).

    remediator oncall [--at 2026-12-24T20:00:00+01:00]
    remediator oncall override ROLE USER --until 8h [--from ...] --reason "swap with bob"
    remediator oncall overrides
    remediator oncall revoke OVERRIDE_ID

Overrides act as the person the OS account maps to (or the owner of ``--token``), like
the other commands that change what the service does (:mod:`receiver.commands.identity`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from receiver.commands.identity import TOKEN_OPTION, resolve
from receiver.commands.options import CONFIG_OPTION, load_config_or_exit, store_for
from receiver.durations import parse_duration


def _moment(value: str | None, *, now: datetime, param: str) -> datetime:
    """An ISO-8601 time with its offset, or a duration from now (``8h``, ``2d``)."""
    if value is None:
        return now
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now + parse_duration(value)
        except ValueError:
            raise click.BadParameter("give an ISO-8601 time with its offset or a duration "
                                     "such as 8h", param_hint=param) from None
    if at.tzinfo is None:
        raise click.BadParameter("give the time's UTC offset (for example +01:00)",
                                 param_hint=param)
    return at.astimezone(UTC)


def _who(name: str | None, backup: str | None) -> str:
    return f"{name} (backup {backup})" if backup else str(name)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "-"


@click.group(invoke_without_command=True)
@CONFIG_OPTION
@click.option("--at", "at_text", help="another moment than now (ISO-8601 with offset).")
@click.pass_context
def oncall(ctx: click.Context, config_path: str, at_text: str | None) -> None:
    """Who is on duty now, and who is next, for each role of ``oncall.roles``."""
    if ctx.invoked_subcommand is not None:
        return
    from receiver.people.roster import roster

    config = load_config_or_exit(config_path)
    at = _moment(at_text, now=datetime.now(UTC), param="--at")
    if not config.oncall.roles:
        click.echo("no roles configured (oncall.roles)")
        return
    store = store_for(config)
    try:
        with store.unit(write=False) as uow:
            overrides = uow.oncall.overrides(live_at=at)
    finally:
        store.close()
    click.echo(f"on duty at {_when(at)}")
    for now, nxt in roster(config.oncall, at, overrides):
        how = f" [override #{now.override_id}]" if now.override_id else ""
        line = f"  {now.role}: {_who(now.primary, now.backup)}{how}, until {_when(now.until)}"
        if nxt is not None:
            line += f"; next {nxt.primary} from {_when(nxt.since)}"
        click.echo(line)


@oncall.command()
@CONFIG_OPTION
@click.argument("role")
@click.argument("user")
@click.option("--until", "until_text", required=True,
              help="when it ends: ISO-8601 with offset, or a duration from now (8h).")
@click.option("--from", "from_text", help="when it starts (default now).")
@click.option("--reason", required=True, help="why; recorded in the audit log.")
@TOKEN_OPTION
def override(config_path: str, role: str, user: str, until_text: str, from_text: str | None,
             reason: str, token_ref: str | None) -> None:
    """USER takes ROLE (as primary) for a while. Audited."""
    config = load_config_or_exit(config_path)
    if role not in config.oncall.roles:
        known = ", ".join(config.oncall.roles) or "none configured"
        raise click.BadParameter(f"no role named {role!r} (roles: {known})", param_hint="ROLE")
    if user not in config.people.users:
        raise click.BadParameter(f"{user!r} is not in people.users", param_hint="USER")
    who = resolve(config, None, token_ref)
    now = datetime.now(UTC)
    starts = _moment(from_text, now=now, param="--from")
    ends = _moment(until_text, now=now, param="--until")
    if ends <= starts:
        raise click.BadParameter("must be after the start", param_hint="--until")
    store = store_for(config)
    try:
        with store.unit() as uow:
            made = uow.oncall.add_override(role=role, user=user, starts_at=starts,
                                           ends_at=ends, reason=reason, actor=who.actor,
                                           now=now)
    finally:
        store.close()
    click.echo(f"override #{made.id}: {user} is {role} from {_when(starts)} until "
               f"{_when(ends)} (by {who.actor})")


@oncall.command()
@CONFIG_OPTION
def overrides(config_path: str) -> None:
    """Overrides now in force or still to come."""
    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        with store.unit(write=False) as uow:
            found = uow.oncall.overrides(live_at=datetime.now(UTC))
    finally:
        store.close()
    if not found:
        click.echo("no overrides")
    for o in found:
        click.echo(f"#{o.id} {o.role}: {o.user_name} {_when(o.starts_at)} .. {_when(o.ends_at)}"
                   f" by {o.created_by}: {o.reason}")


@oncall.command()
@CONFIG_OPTION
@click.argument("override_id", type=int)
@TOKEN_OPTION
def revoke(config_path: str, override_id: int, token_ref: str | None) -> None:
    """End an override now. Audited."""
    config = load_config_or_exit(config_path)
    who = resolve(config, None, token_ref)
    store = store_for(config)
    try:
        with store.unit() as uow:
            gone = uow.oncall.revoke_override(override_id, actor=who.actor,
                                              now=datetime.now(UTC))
    finally:
        store.close()
    if gone is None:
        raise click.ClickException(f"no live override #{override_id}")
    click.echo(f"override #{gone.id} ended ({gone.user_name} no longer {gone.role})")
