"""``backup create|list|verify``: backups that restore_database can trust."""

from __future__ import annotations

import sys

import click

from receiver.commands.options import CONFIG_OPTION, load_config_or_exit


@click.group()
def backup() -> None:
    """Backups that restore_database can trust: pg_dump custom format + checksum manifest."""


@backup.command("create")
@CONFIG_OPTION
@click.argument("location")
@click.option("--format", "fmt", type=click.Choice(["custom", "sql.gz"]), default="custom")
def backup_create(config_path: str, location: str, fmt: str) -> None:
    """Dump the location's database into its directory, with a manifest."""
    from receiver.commands.progress import working
    from receiver.errors import RemediatorError
    from receiver.remediation import backups

    config = load_config_or_exit(config_path)
    try:
        with working(f"dumping {location}"):
            b = backups.create_backup(config.targets, location,
                                      fmt=fmt)  # type: ignore[arg-type]
    except RemediatorError as exc:
        click.echo(f"backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"created {b.path} ({b.size} bytes, sha256 {b.sha256[:16]}...)")


@backup.command("list")
@CONFIG_OPTION
@click.argument("location")
def backup_list(config_path: str, location: str) -> None:
    """List a location's backups, newest first, and any invalid files."""
    from receiver.errors import RemediatorError
    from receiver.remediation import backups

    config = load_config_or_exit(config_path)
    try:
        listing = backups.list_backups(config.targets, location)
    except RemediatorError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for b in listing.backups:
        click.echo(f"{b.created_at.isoformat()}  {b.kind:9} {b.size:>12}  {b.path.name}")
    for bad in listing.invalid:
        click.echo(f"INVALID  {bad}")


@backup.command("verify")
@CONFIG_OPTION
@click.argument("location")
def backup_verify(config_path: str, location: str) -> None:
    """Verify every backup of a location; exit 1 if any fails."""
    from receiver.commands.progress import progress
    from receiver.errors import RemediatorError
    from receiver.remediation import backups

    config = load_config_or_exit(config_path)
    lines: list[str] = []  # printed after the bar, which shares the terminal
    try:
        listing = backups.list_backups(config.targets, location)
        failed = 0
        with progress(len(listing.backups), "verifying backups") as step:
            for b in listing.backups:
                check = backups.verify_backup(config.targets, location, b)
                lines.append(f"{'ok  ' if check.ok else 'FAIL'} {b.path.name}"
                             + ("" if check.ok else f": {'; '.join(check.problems)}"))
                failed += 0 if check.ok else 1
                step(1)
    except RemediatorError as exc:
        for line in lines:
            click.echo(line)
        click.echo(str(exc), err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)
    sys.exit(1 if failed or listing.invalid else 0)
