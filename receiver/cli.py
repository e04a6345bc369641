"""The ``remediator`` command line: serve, migrate, check-config, simulate.

Heavy modules (the Flask app, prometheus_client) are imported inside the commands:
``serve`` must set PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import click
from pydantic import ValidationError

from receiver.config import Config, load_config
from receiver.errors import ConfigError, StoreError

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


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@click.group()
@click.version_option(package_name="remediator")
def main() -> None:
    """remediator: Alertmanager webhook receiver and guarded auto-remediator."""


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False))
def check_config(path: str) -> None:
    """Validate a config file; print the path to each bad field and exit 1 if any."""
    config = _load(path)
    click.echo(
        f"{path}: ok ({len(config.severity.rules)} severity rules, {len(config.rules)} "
        f"remediation rules, store {config.store_url().split(':', 1)[0]}, "
        f"auth {'on' if config.auth.configured else 'NOT CONFIGURED'})"
    )


@main.command()
@CONFIG_OPTION
def migrate(config_path: str) -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from receiver.store import open_store

    config = _load(config_path)
    store = open_store(config.store_url(), pool_min=0, pool_max=2)
    try:
        applied = store.migrate()
    except StoreError as exc:
        click.echo(f"migration failed: {exc}", err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo("applied: " + ", ".join(applied) if applied else "up to date")


@main.command()
@CONFIG_OPTION
@click.option("--bind", help="host:port to listen on (overrides server.bind).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", type=click.IntRange(1, 64), help="threads per worker.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Accept unauthenticated webhooks and API calls when no auth is configured.",
)
@click.option("--no-worker", is_flag=True, help="Do not start the embedded remediation worker.")
def serve(
    config_path: str,
    bind: str | None,
    workers: int | None,
    threads: int | None,
    insecure_no_auth: bool,
    no_worker: bool,
) -> None:
    """Run the receiver under gunicorn, with one embedded remediation worker by default."""
    config = _load(config_path)
    if not config.auth.configured and not insecure_no_auth:
        click.echo(
            "refusing to start: no webhook auth configured (auth.bearer_token or auth.basic).\n"
            "Configure it, or pass --insecure-no-auth to accept unauthenticated requests.",
            err=True,
        )
        sys.exit(2)
    if not config.auth.configured:
        click.echo("WARNING: --insecure-no-auth: webhook and API are unauthenticated", err=True)

    metrics_dir = config.data_dir / "prometheus-multiproc"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from receiver.logs import configure_logging
    from receiver.server import run_gunicorn

    configure_logging(config.logging.level, config.logging.format)
    if config.store.migrate_on_start:
        from receiver.store import open_store

        store = open_store(config.store_url(), pool_min=0, pool_max=2)
        try:
            store.migrate()
        except StoreError as exc:
            click.echo(f"migration failed: {exc}", err=True)
            sys.exit(1)
        finally:
            store.close()
    embedded = None
    if config.server.embedded_worker and not no_worker:
        import subprocess

        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        embedded = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed argv
            [sys.executable, "-m", "receiver", "worker", "-c", config_path, "--exit-with-parent"],
            env=env,
        )
    try:
        run_gunicorn(
            config,
            bind=bind or config.server.bind,
            workers=workers or config.server.workers,
            threads=threads or config.server.threads,
            insecure_no_auth=insecure_no_auth,
        )
    finally:
        if embedded is not None:
            embedded.terminate()
            try:
                embedded.wait(timeout=15)
            except Exception:  # noqa: BLE001 - last resort at shutdown
                embedded.kill()


def _check_params(config: Config, match: Any) -> str:
    """Validate a rule's rendered params and the allowlist, as the worker will (read-only)."""
    if match.params is None:
        return "refused: " + (match.error or "params could not be rendered")
    from playbooks import load_registry
    from playbooks.base import PlaybookContext
    from receiver.errors import AdapterError, TargetNotAllowed

    playbook = load_registry().get(match.playbook)
    if playbook is None:
        return f"refused: unknown playbook {match.playbook}"
    try:
        params = playbook.parse_params(match.params)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        return f"refused: invalid params: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    try:
        playbook.check_allowed(params, PlaybookContext(targets=config.targets))
    except TargetNotAllowed as exc:
        return f"refused: target not allowed: {exc}"
    except AdapterError as exc:
        return f"allowlist check needs the live system: {exc}"
    risk = playbook.risk_for(params).value
    return f"allowed; targets {', '.join(playbook.targets(params))}; risk {risk}"


@main.command()
@CONFIG_OPTION
@click.argument("payload", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def simulate(config_path: str, payload: Any, as_json: bool) -> None:
    """Show what a webhook payload would do: severity, incident key, rules. No side effects."""
    from receiver.alertmanager import Notification
    from receiver.engine import Intake

    config = _load(config_path)
    body = payload.read()
    try:
        n = Notification.model_validate_json(body)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in err["loc"]) or "(body)"
            click.echo(f"{loc}: {err['msg']}", err=True)
        sys.exit(1)
    intake = Intake(config, None)
    records, severity, reason = intake.classify(n)
    matches = intake.match_rules(n, severity)
    checks = {id(m): _check_params(config, m) for m in matches}
    report: dict[str, Any] = {
        "incident_key": intake.incident_key(n),
        "severity": severity.value,
        "severity_reason": reason,
        "ack_due_in": str(intake.sla.ack_due(severity, intake.clock()) - intake.clock()),
        "alerts": [
            {
                "fingerprint": r.fingerprint,
                "alertname": r.alertname,
                "status": r.status,
                "severity": r.severity.value,
                "severity_reason": r.severity_reason,
                "rules": [
                    {
                        "rule": m.rule,
                        "playbook": m.playbook,
                        "params": m.params,
                        "error": m.error,
                        "approval": m.approval,
                        "check": checks[id(m)],
                    }
                    for m in matches
                    if m.alert_fingerprint == r.fingerprint
                ],
            }
            for r in records
        ],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"incident key: {report['incident_key']}")
    click.echo(
        f"severity:     {severity.value} ({reason}); acknowledge within {report['ack_due_in']}"
    )
    for a in report["alerts"]:
        click.echo(f"- {a['alertname'] or '?'} [{a['fingerprint']}] {a['status']} -> "
                   f"{a['severity']} ({a['severity_reason']})")
        for m in a["rules"]:
            what = f"error: {m['error']}" if m["error"] else json.dumps(m["params"])
            what += f" [{m['check']}]"
            gate = {"required": "approval required", "auto": "automatic",
                    "risk": "approval if high risk"}[m["approval"]]
            click.echo(f"    rule {m['rule']} -> {m['playbook']} ({gate}) {what}")
        if not a["rules"]:
            click.echo("    no remediation rule matches")


def _store_for(config: Config) -> Any:
    from receiver.store import open_store

    return open_store(config.store_url(), pool_min=0, pool_max=4)


@main.command()
@CONFIG_OPTION
@click.option("--threads", type=click.IntRange(1, 32), default=2, show_default=True,
              help="jobs run at once by this process.")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="stop when the parent process goes away (used by serve).")
def worker(config_path: str, threads: int, exit_with_parent: bool) -> None:
    """Run a remediation worker (any number, on any hosts sharing the store)."""
    import signal
    import threading

    from receiver.logs import configure_logging
    from receiver.worker import Worker

    config = _load(config_path)
    configure_logging(config.logging.level, config.logging.format)
    store = _store_for(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    w = Worker(config, store)
    if exit_with_parent:
        parent = os.getppid()

        def watch() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    stop.set()

        threading.Thread(target=watch, daemon=True).start()
    click.echo(f"worker {w.id} started ({threads} threads, store {store.dialect})", err=True)
    try:
        w.run_forever(stop, threads=threads)
    finally:
        store.close()


def _actor(value: str) -> str:
    if not value or len(value) > 100 or any(c in value for c in "\r\n\x00"):
        raise click.BadParameter("a user name, 1-100 characters, one line")
    return value


@main.command()
@CONFIG_OPTION
@click.option("--rule", help="pause only this rule.")
@click.option("--reason", required=True, help="why; recorded in the audit log.")
@click.option("--as", "actor", required=True, help="who is pausing.")
def pause(config_path: str, rule: str | None, reason: str, actor: str) -> None:
    """Kill switch: stop all automatic remediation (or one rule's). Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = _load(config_path)
    if rule is not None and config.rule(rule) is None:
        raise click.BadParameter(f"no rule named {rule!r}", param_hint="--rule")
    store = _store_for(config)
    try:
        controls.pause(store, actor=f"user:{_actor(actor)}", reason=reason, now=utcnow(),
                       rule=rule)
    finally:
        store.close()
    click.echo(f"paused {'rule ' + rule if rule else 'all remediation'}")


@main.command()
@CONFIG_OPTION
@click.option("--rule", help="resume only this rule.")
@click.option("--reason", default="resumed", help="why; recorded in the audit log.")
@click.option("--as", "actor", required=True, help="who is resuming.")
def resume(config_path: str, rule: str | None, reason: str, actor: str) -> None:
    """Lift a pause set by ``remediator pause``. Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = _load(config_path)
    store = _store_for(config)
    try:
        controls.resume(store, actor=f"user:{_actor(actor)}", reason=reason, now=utcnow(),
                        rule=rule)
    finally:
        store.close()
    click.echo(f"resumed {'rule ' + rule if rule else 'all remediation'}")


@main.command("reset-breaker")
@CONFIG_OPTION
@click.argument("rule")
@click.option("--reason", required=True)
@click.option("--as", "actor", required=True)
def reset_breaker(config_path: str, rule: str, reason: str, actor: str) -> None:
    """Close a rule's circuit breaker so its jobs run automatically again. Audited."""
    from receiver import controls
    from receiver.engine import utcnow

    config = _load(config_path)
    store = _store_for(config)
    try:
        controls.reset_breaker(store, rule, actor=f"user:{_actor(actor)}", reason=reason,
                               now=utcnow())
    finally:
        store.close()
    click.echo(f"circuit breaker of {rule} reset")


@main.group()
def backup() -> None:
    """Backups that restore_database can trust: pg_dump custom format + checksum manifest."""


@backup.command("create")
@CONFIG_OPTION
@click.argument("location")
@click.option("--format", "fmt", type=click.Choice(["custom", "sql.gz"]), default="custom")
def backup_create(config_path: str, location: str, fmt: str) -> None:
    """Dump the location's database into its directory, with a manifest."""
    from receiver import backups
    from receiver.errors import RemediatorError

    config = _load(config_path)
    try:
        b = backups.create_backup(config.targets, location, fmt=fmt)  # type: ignore[arg-type]
    except RemediatorError as exc:
        click.echo(f"backup failed: {exc}", err=True)
        sys.exit(1)
    click.echo(f"created {b.path} ({b.size} bytes, sha256 {b.sha256[:16]}...)")


@backup.command("list")
@CONFIG_OPTION
@click.argument("location")
def backup_list(config_path: str, location: str) -> None:
    """List a location's backups, newest first, and any invalid files."""
    from receiver import backups
    from receiver.errors import RemediatorError

    config = _load(config_path)
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
    from receiver import backups
    from receiver.errors import RemediatorError

    config = _load(config_path)
    try:
        listing = backups.list_backups(config.targets, location)
        failed = 0
        for b in listing.backups:
            check = backups.verify_backup(config.targets, location, b)
            click.echo(f"{'ok  ' if check.ok else 'FAIL'} {b.path.name}"
                       + ("" if check.ok else f": {'; '.join(check.problems)}"))
            failed += 0 if check.ok else 1
    except RemediatorError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    sys.exit(1 if failed or listing.invalid else 0)


def _decide(config_path: str, job_id: int, approve: bool, actor: str, reason: str) -> None:
    from receiver.approvals import DecisionError, decide_job
    from receiver.engine import utcnow

    config = _load(config_path)
    store = _store_for(config)
    try:
        row = decide_job(store, config, job_id, approve=approve, user=_actor(actor),
                         reason=reason, now=utcnow(), origin={"via": "cli"})
    except DecisionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"job #{job_id}: {row['state']}")


@main.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "actor", required=True, help="the approver.")
@click.option("--reason", default="", help="optional note.")
def approve(config_path: str, job_id: int, actor: str, reason: str) -> None:
    """Approve a job that awaits approval. Audited; same checks as the approval page."""
    _decide(config_path, job_id, True, actor, reason)


@main.command()
@CONFIG_OPTION
@click.argument("job_id", type=int)
@click.option("--as", "actor", required=True, help="the approver.")
@click.option("--reason", required=True, help="why it is denied.")
def deny(config_path: str, job_id: int, actor: str, reason: str) -> None:
    """Deny a job that awaits approval. Audited."""
    _decide(config_path, job_id, False, actor, reason)


@main.group()
def incident() -> None:
    """Act on an incident: ack, assign, note, resolve, close, false-alarm, severity."""


def _incident_action(config_path: str, incident_id: int, action: str, actor: str,
                     text: str = "", value: str = "") -> None:
    from receiver import lifecycle
    from receiver.engine import utcnow

    config = _load(config_path)
    store = _store_for(config)
    try:
        row = lifecycle.act(store, config, incident_id, action, user=_actor(actor),
                            now=utcnow(), text=text, value=value, origin={"via": "cli"})
    except lifecycle.ActionError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
    click.echo(f"incident #{incident_id}: {row['state']} ({row['severity']})"
               + (f", commander {row['assignee']}" if row.get("assignee") else ""))


def _incident_command(name: str, action: str, text_arg: str | None = None,
                      value_arg: str | None = None, doc: str = "") -> None:
    @incident.command(name, help=doc)
    @CONFIG_OPTION
    @click.argument("incident_id", type=int)
    @click.option("--as", "actor", required=True, help="who acts (recorded in the audit log).")
    @click.option("--reason", "--text", "text", default="", help="reason or note text.")
    @click.option("--value", default="", help="assignee or severity, where it applies.")
    def command(config_path: str, incident_id: int, actor: str, text: str, value: str) -> None:
        _incident_action(config_path, incident_id, action, actor, text, value)


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
@click.option("--as", "actor", required=True)
def incident_diagnose(config_path: str, incident_id: int, actor: str) -> None:
    """Run the incident's diagnostics again (the worker picks it up)."""
    from receiver.diagnostics import request as request_diagnostics
    from receiver.engine import utcnow

    config = _load(config_path)
    store = _store_for(config)
    try:
        req = request_diagnostics(store, incident_id, actor=f"user:{_actor(actor)}",
                                  reason="requested from the CLI", now=utcnow())
    finally:
        store.close()
    if req is None:
        click.echo(f"no incident {incident_id}", err=True)
        sys.exit(1)
    click.echo(f"diagnostics requested for incident #{incident_id}")


@main.command()
@CONFIG_OPTION
@click.argument("incident_id", type=int)
def postmortem(config_path: str, incident_id: int) -> None:
    """Print the Markdown post-mortem draft of an incident."""
    from receiver import postmortem as pm

    config = _load(config_path)
    store = _store_for(config)
    try:
        text = pm.render(store, config, incident_id)
    finally:
        store.close()
    if text is None:
        click.echo(f"no incident {incident_id}", err=True)
        sys.exit(1)
    click.echo(text)


@main.command()
@CONFIG_OPTION
@click.option("--since", default="30d", show_default=True, help="window, e.g. 7d, 24h.")
@click.option("--json", "as_json", is_flag=True)
def report(config_path: str, since: str, as_json: bool) -> None:
    """MTTA/MTTM/MTTR, SLA breaches, false alarms and noise by severity; playbook success."""
    from receiver import report as rep
    from receiver.durations import parse_duration
    from receiver.engine import utcnow
    from receiver.store import reports

    config = _load(config_path)
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    now = utcnow()
    start = now - window
    store = _store_for(config)
    try:
        with store.db.transaction(write=False) as tx:
            built = rep.build(reports.incident_facts(tx, start), reports.job_facts(tx, start),
                              since=start, now=now, noise_window=config.sla.noise_window)
    finally:
        store.close()
    click.echo(json.dumps(built.as_dict(), indent=2) if as_json else rep.as_table(built))


@main.group()
def audit() -> None:
    """The tamper-evident audit log: verify the chain, export it."""


@audit.command("verify")
@CONFIG_OPTION
def audit_verify(config_path: str) -> None:
    """Walk the hash chain; name the first altered, inserted or removed entry; exit 1 then."""
    config = _load(config_path)
    store = _store_for(config)
    try:
        r = store.verify_audit()
    finally:
        store.close()
    if r.ok:
        click.echo(f"ok: {r.checked} entries, chain intact")
        return
    click.echo(f"BROKEN at entry seq {r.first_bad_seq} (row id {r.first_bad_id}): {r.problem}",
               err=True)
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
    from receiver.audit_export import to_csv, to_jsonl
    from receiver.store import AuditFilter

    config = _load(config_path)
    store = _store_for(config)
    after = 0
    first = True
    try:
        while True:
            rows = store.audit(AuditFilter(incident_id=incident, actor=actor, action=action,
                                           after_seq=after, limit=5000))
            if not rows:
                break
            if fmt == "jsonl":
                output.write(to_jsonl(rows))
            else:
                text = to_csv(rows)
                output.write(text if first else text.split("\n", 1)[1])
            first = False
            after = rows[-1]["seq"]
    finally:
        store.close()


@main.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password(password: str) -> None:
    """Print a password hash for people.users.<name>.password_hash."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))
