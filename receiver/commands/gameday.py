"""``remediator gameday``: practise incident response on the real path.

    remediator gameday start SCENARIO.yml [--alertmanager URL]...
    remediator gameday report ID [--json]
    remediator gameday end ID
    remediator gameday list

``start`` and ``end`` act as the person the OS account maps to (or the owner of
``--token``) and are audited; see :mod:`receiver.gameday.drill`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from receiver.commands.identity import TOKEN_OPTION, resolve
from receiver.commands.options import CONFIG_OPTION, load_config_or_exit, store_for
from receiver.errors import ConfigError, TargetNotAllowed


@click.group()
def gameday() -> None:
    """Game days: fire a scenario's alerts through Alertmanager, then report the drill."""


@gameday.command()
@CONFIG_OPTION
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--alertmanager", "alertmanagers", multiple=True, metavar="URL",
              help="Alertmanager base URL to post to (repeat for each peer; default: "
                   "gameday.alertmanagers). Its host:port must be in targets.http.hosts.")
@TOKEN_OPTION
def start(config_path: str, scenario_path: str, alertmanagers: tuple[str, ...],
          token_ref: str | None) -> None:
    """Start a game day: record it, then post SCENARIO's alerts with gameday="<id>"."""
    from receiver.gameday import drill
    from receiver.gameday.scenario import load_scenario

    config = load_config_or_exit(config_path)
    try:
        scenario = load_scenario(scenario_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    try:
        urls = drill.alertmanagers_for(config, alertmanagers)
    except (TargetNotAllowed, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--alertmanager") from exc
    who = resolve(config, None, token_ref)
    store = store_for(config)
    try:
        posted = drill.start(config, store, scenario, alertmanagers=urls, actor=who.actor,
                             origin=who.origin(), now=datetime.now(UTC))
    finally:
        store.close()
    g = posted.gameday
    for url, why in posted.failed.items():
        click.echo(f"  {url}: {why}", err=True)
    if not posted.delivered:
        click.echo(f"game day {g.id} ended: no Alertmanager took its alerts", err=True)
        sys.exit(1)
    live = ", ".join(g.targets) if g.targets else "none: every job runs dry"
    click.echo(f"game day {g.id} started: {len(scenario.alerts)} alert(s) posted to "
               f"{', '.join(posted.delivered)}; time limit {g.deadline_at:%H:%M:%S} UTC; "
               f"live targets: {live}")
    click.echo(g.id)


@gameday.command()
@CONFIG_OPTION
@click.argument("gameday_id", metavar="ID")
@TOKEN_OPTION
def end(config_path: str, gameday_id: str, token_ref: str | None) -> None:
    """End a game day and resolve its alerts in Alertmanager. Audited."""
    from receiver.gameday import drill

    config = load_config_or_exit(config_path)
    who = resolve(config, None, token_ref)
    store = store_for(config)
    try:
        posted = drill.end(config, store, gameday_id, actor=who.actor, origin=who.origin(),
                           now=datetime.now(UTC))
    finally:
        store.close()
    if posted is None:
        raise click.ClickException(f"no running game day {gameday_id!r}")
    for url, why in posted.failed.items():
        click.echo(f"  {url}: could not resolve the alerts: {why}", err=True)
    click.echo(f"game day {gameday_id} ended by {who.actor}")


@gameday.command()
@CONFIG_OPTION
@click.argument("gameday_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON.")
def report(config_path: str, gameday_id: str, as_json: bool) -> None:
    """The drill's timeline, times to acknowledge and mitigate, steps met or missed."""
    from receiver.gameday.report import build, render

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        found = build(store, gameday_id, now=datetime.now(UTC))
    finally:
        store.close()
    if found is None:
        raise click.ClickException(f"no game day {gameday_id!r}")
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=True))
        return
    for line in render(found):
        click.echo(line)


@gameday.command("list")
@CONFIG_OPTION
def list_command(config_path: str) -> None:
    """The most recent game days."""
    from receiver.gameday.report import plain

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        with store.unit(write=False) as uow:
            found = uow.gamedays.recent()
    finally:
        store.close()
    now = datetime.now(UTC)
    if not found:
        click.echo("no game days")
    for g in found:
        state = "running" if g.running(now) else "ended" if g.ended_at else "time limit reached"
        click.echo(f"{g.id} {state}: {plain(g.name)} (started {g.started_at:%Y-%m-%d %H:%M} "
                   f"UTC by {g.started_by})")
