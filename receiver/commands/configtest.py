"""``remediator test FILE...``: run a configuration's unit tests (see
:mod:`receiver.configtest.cases` for the file format). Exit 1 when any case fails."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from receiver.config import Config, load_config, problems_of
from receiver.configtest.cases import TestFile
from receiver.errors import ConfigError


def _load_file(path: Path) -> TestFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    try:
        return TestFile.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {where}: {msg}" for where, msg in problems_of(exc)]
        raise click.ClickException(f"{path}: not a test file:\n" + "\n".join(lines)) from exc


def _config_for(path: Path, file_config: str | None, override: str | None,
                cache: dict[Path, Config]) -> Config:
    if override is not None:
        where = Path(override)
    elif file_config is not None:
        where = (path.parent / file_config).resolve()
    else:
        where = Path("remediator.yml")
    if where not in cache:
        try:
            cache[where] = load_config(where)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    return cache[where]


@click.command("test")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="the config to test (default: each file's `config:`, else remediator.yml).")
@click.option("--verbose", "-v", is_flag=True, help="also print what each passing case did.")
def test_command(files: tuple[Path, ...], config_path: str | None, verbose: bool) -> None:
    """Run configuration unit tests: alerts in, severity, incident key, SLA, jobs, allowlist,
    approval and guards out. Touches nothing; exit 1 if any case fails."""
    from receiver.configtest.runner import run_case

    configs: dict[Path, Config] = {}
    passed = failed = 0
    started = time.monotonic()
    for path in files:
        suite = _load_file(path)
        config = _config_for(path, suite.config, config_path, configs)
        now = suite.moment()
        for case in suite.cases:
            result = run_case(config, case, now)
            if result.ok:
                passed += 1
                click.echo(f"ok    {path}: {case.name}")
                if verbose and result.outcome is not None:
                    o = result.outcome
                    click.echo(f"      severity {o.severity}, key {o.incident_key}, "
                               f"{len(o.jobs)} job(s): "
                               + ", ".join(f"{j['rule']} ({j['blocked_by']})" for j in o.jobs))
                continue
            failed += 1
            click.echo(f"FAIL  {path}: {case.name}")
            for line in result.problems:
                click.echo(f"      {line}")
    took = time.monotonic() - started
    click.echo(f"{passed} passed, {failed} failed in {took:.2f}s")
    if failed:
        sys.exit(1)


@click.command()
@click.option("--config", "-c", "config_path", envvar="REMEDIATOR_CONFIG",
              default="remediator.yml", show_default=True, type=click.Path(dir_okay=False),
              help="the NEW config; its store holds the notifications replayed.")
@click.option("--current", "current_path", default="remediator.yml", show_default=True,
              type=click.Path(dir_okay=False), help="the config in force now.")
@click.option("--since", "since_text", default="7d", show_default=True,
              help="replay the notifications received within this (e.g. 24h, 7d).")
@click.option("--limit", default=50, show_default=True,
              help="print at most this many changed notifications.")
def replay(config_path: str, current_path: str, since_text: str, limit: int) -> None:
    """What a config change would change: every notification stored since --since judged by
    the current config and by the new one (severity, incident, jobs, approvals). Read-only."""
    from datetime import UTC, datetime

    from receiver.commands.options import load_config_or_exit
    from receiver.configtest.replay import replay as run_replay
    from receiver.durations import parse_duration
    from receiver.store import open_store

    try:
        since = datetime.now(UTC) - parse_duration(since_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    new = load_config_or_exit(config_path)
    current = load_config_or_exit(current_path)
    url = new.store_url()
    sqlite_file = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
    if sqlite_file is not None and not Path(sqlite_file).is_file():
        # opening it would create an empty database there: replay writes nothing
        raise click.ClickException(f"the store {sqlite_file} does not exist")
    store = open_store(url, pool_min=0, pool_max=2)  # reads only: no audit key
    started = time.monotonic()
    try:
        with store.unit(write=False) as uow:
            total = uow.inbox.count_since(since)
            stored = uow.inbox.since(since)
            if sys.stderr.isatty():
                with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
                    report = run_replay(stored, current, new, step=lambda: bar.update(1))
            else:
                report = run_replay(stored, current, new)
    finally:
        store.close()
    for change in report.changes[:limit]:
        click.echo(f"notification {change.notification_id} ({change.received_at}):")
        for line in change.lines:
            click.echo(f"  {line}")
    if len(report.changes) > limit:
        click.echo(f"... and {len(report.changes) - limit} more changed notifications")
    c = report.counts
    click.echo(
        f"{report.notifications} notifications since {since.isoformat(timespec='seconds')}: "
        f"{len(report.changes)} would change (severity {c['severity']}, incident "
        f"{c['incident']}, jobs +{c['job_added']} -{c['job_removed']}, approval or allowlist "
        f"{c['approval']}); incidents {len(report.incidents_before)} -> "
        f"{len(report.incidents_after)}; {report.unreadable} unreadable; "
        f"{time.monotonic() - started:.2f}s")
