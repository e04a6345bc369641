"""Incidents by hand: ``incident ack|assign|note|resolve|close|false-alarm|severity|diagnose``,
the ``postmortem`` draft and the ``report`` of response metrics.

Incident actions are taken as the person the OS account maps to, or as the owner of the
operator API token given with ``--token`` / ``REMEDIATOR_TOKEN``
(:mod:`receiver.commands.identity`); ``--as`` only checks it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from receiver.commands.identity import TOKEN_OPTION, resolve
from receiver.commands.options import CONFIG_OPTION, actor_name, load_config_or_exit, store_for

AS_HELP = "check that you act as this person (who you are comes from your OS account or --token)."


@click.group()
def incident() -> None:
    """Act on an incident: ack, assign, note, resolve, close, false-alarm, severity."""


def _incident_action(config_path: str, incident_id: int, action: str, as_user: str | None,
                     token_ref: str | None, text: str = "", value: str = "") -> None:
    from receiver.incidents import lifecycle
    from receiver.intake.engine import utcnow

    config = load_config_or_exit(config_path)
    who = resolve(config, actor_name(as_user) if as_user is not None else None, token_ref)
    assert who.person is not None  # noqa: S101 - resolve() refuses unmapped accounts here
    store = store_for(config)
    try:
        row = lifecycle.act(store, config, incident_id, action, user=who.person,
                            now=utcnow(), text=text, value=value, origin=who.origin())
    except lifecycle.ActionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"incident #{incident_id}: {row.state} ({row.severity})"
               + (f", commander {row.assignee}" if row.assignee else ""))


def _incident_command(name: str, action: str, text_arg: str | None = None,
                      value_arg: str | None = None, doc: str = "") -> None:
    @incident.command(name, help=doc)
    @CONFIG_OPTION
    @click.argument("incident_id", type=int)
    @click.option("--as", "as_user", help=AS_HELP)
    @TOKEN_OPTION
    @click.option("--reason", "--text", "text", default="", help="reason or note text.")
    @click.option("--value", default="", help="assignee or severity, where it applies.")
    def command(config_path: str, incident_id: int, as_user: str | None, token_ref: str | None,
                text: str, value: str) -> None:
        _incident_action(config_path, incident_id, action, as_user, token_ref, text, value)


for _name, _action, _doc in (
    ("ack", "acknowledge", "Acknowledge the incident (stops the SLA escalation)."),
    ("assign", "assign", "Set the incident commander: --value USER."),
    ("note", "note", "Add a note to the timeline: --text TEXT."),
    ("resolve", "resolve", "Resolve by hand (allowed while alerts still fire; shown as such)."),
    ("close", "close", "Close after review (P0/P1 need a saved post-mortem)."),
    ("false-alarm", "false_alarm", "Mark as a false alarm."),
    ("severity", "severity", "Change severity: --value P0..P3 --reason TEXT."),
):
    _incident_command(_name, _action, doc=_doc)


@incident.command("diagnose")
@CONFIG_OPTION
@click.argument("incident_id", type=int)
@click.option("--as", "as_user", help=AS_HELP)
@TOKEN_OPTION
def incident_diagnose(config_path: str, incident_id: int, as_user: str | None,
                      token_ref: str | None) -> None:
    """Run the incident's diagnostics again (the worker picks it up)."""
    from receiver.diagnostics import request as request_diagnostics
    from receiver.intake.engine import utcnow

    config = load_config_or_exit(config_path)
    who = resolve(config, actor_name(as_user) if as_user is not None else None, token_ref,
                  allow_unmapped=True)
    store = store_for(config)
    try:
        req = request_diagnostics(store, incident_id, actor=who.actor,
                                  reason="requested from the CLI", now=utcnow())
    finally:
        store.close()
    if req is None:
        click.echo(f"no incident {incident_id}", err=True)
        sys.exit(1)
    click.echo(f"diagnostics requested for incident #{incident_id}")


@click.command()
@CONFIG_OPTION
@click.argument("incident_id", type=int)
def postmortem(config_path: str, incident_id: int) -> None:
    """Print the Markdown post-mortem draft of an incident."""
    from receiver.incidents import postmortem as pm

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        text = pm.render(store, config, incident_id)
    finally:
        store.close()
    if text is None:
        click.echo(f"no incident {incident_id}", err=True)
        sys.exit(1)
    click.echo(text)


@click.command()
@CONFIG_OPTION
@click.option("--since", default="30d", show_default=True, help="window, e.g. 7d, 24h.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True),
              help="also write the report page's charts to this self-contained HTML file.")
def report(config_path: str, since: str, as_json: bool, html_path: str | None) -> None:
    """MTTA/MTTM/MTTR, SLA breaches, false alarms and noise by severity; playbook success;
    remediation effectiveness by rule and playbook."""
    from receiver.commands.progress import progress
    from receiver.durations import parse_duration
    from receiver.incidents import report as rep
    from receiver.intake.engine import utcnow
    from receiver.remediation import effectiveness

    config = load_config_or_exit(config_path)
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    now = utcnow()
    start = now - window
    store = store_for(config)
    try:
        with progress(2 if html_path is None else 4, "report") as step:
            with store.unit(write=False) as uow:
                incidents, jobs = uow.reports.incident_facts(start), uow.reports.job_facts(start)
            step(1)
            built = rep.build(incidents, jobs, since=start, now=now,
                              noise_window=config.sla.noise_window)
            eff = effectiveness.gather(store, config, since=start, until=now)
            step(1)
            if html_path is not None:
                _write_html_report(store, config, start, now, since, html_path, step)
    finally:
        store.close()
    click.echo(json.dumps({**built.as_dict(), "effectiveness": eff.as_dict()}, indent=2)
               if as_json else rep.as_table(built) + "\n\n" + effectiveness.as_table(eff))
    if html_path is not None:
        click.echo(f"wrote {html_path}", err=True)


def _write_html_report(store: Any, config: Any, start: datetime, now: datetime, label: str,
                       path: str, step: Callable[[int], None]) -> None:
    """The /report page's charts for ``[start, now)`` as one self-contained HTML file."""
    from pathlib import Path

    from receiver.incidents import report_view
    from receiver.web.report_pages import standalone_html

    rng = report_view.Range(start, now, label)
    with store.unit(write=False) as uow:
        facts = report_view.gather(uow.reports, rng)
    step(1)
    fig = report_view.figures(facts, rng, now=now, noise_window=config.sla.noise_window)
    Path(path).write_text(standalone_html(fig), encoding="utf-8")
    step(1)
