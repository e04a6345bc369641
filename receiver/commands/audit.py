"""``audit verify|export``: the tamper-evident audit log."""

from __future__ import annotations

import sys
from typing import Any

import click

from receiver.commands.options import CONFIG_OPTION, load_config_or_exit, store_for


@click.group()
def audit() -> None:
    """The tamper-evident audit log: verify the chain, export it."""


@audit.command("verify")
@CONFIG_OPTION
def audit_verify(config_path: str) -> None:
    """Check the chain with the audit key, against the signed checkpoints and the
    append-only triggers; name each problem (deleted tail, deleted, inserted or edited
    entry, re-hashed chain, dropped trigger) and exit 1 then."""
    from receiver.audit.checkpoints import AuditKeyMissing

    config = load_config_or_exit(config_path)
    try:
        store = store_for(config, create_audit_key=False)
    except AuditKeyMissing as exc:
        click.echo(f"cannot verify: {exc}", err=True)
        sys.exit(1)
    from receiver.commands.progress import progress

    try:
        with progress(store.audit_head().seq, "verifying the audit chain") as step:
            r = store.verify_audit(step)
    finally:
        store.close()
    cp = r.checkpoint
    against = (f"latest checkpoint seq {cp.seq} at {cp.at} ({cp.reason}, {cp.process})"
               if cp is not None else "no checkpoint")
    if r.ok:
        click.echo(f"ok: {r.checked} entries ({r.keyed} keyed, {r.legacy} unkeyed sha256), "
                   f"chain intact, head seq {r.head_seq}; {against}")
        for note in r.notes:
            click.echo(f"note: {note}", err=True)
        return
    where = f" at entry seq {r.first_bad_seq}" if r.first_bad_seq is not None else ""
    rowid = f" (row id {r.first_bad_id})" if r.first_bad_id is not None else ""
    click.echo(f"BROKEN{where}{rowid}: {r.problem}", err=True)
    for problem in r.problems[1:]:
        click.echo(f"also: {problem}", err=True)
    click.echo(f"checked {r.checked} entries; {against}", err=True)
    sys.exit(1)


@audit.command("export")
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--incident", type=int)
@click.option("--actor")
@click.option("--action")
@click.option("--output", "-o", type=click.File("w"), default="-")
def audit_export(config_path: str, fmt: str, incident: int | None, actor: str | None,
                 action: str | None, output: Any) -> None:
    """Export entries (filtered) as JSON Lines or CSV, in chain order."""
    from receiver.audit.export import to_csv, to_jsonl
    from receiver.store import AuditFilter

    config = load_config_or_exit(config_path)
    store = store_for(config)
    after = 0
    first = True
    try:
        while True:
            with store.unit(write=False) as uow:
                entries = uow.audit.query(AuditFilter(incident_id=incident, actor=actor,
                                                      action=action, after_seq=after,
                                                      limit=5000))
            if not entries:
                break
            if fmt == "jsonl":
                output.write(to_jsonl(entries))
            else:
                text = to_csv(entries)
                output.write(text if first else text.split("\n", 1)[1])
            first = False
            after = entries[-1].seq
    finally:
        store.close()
