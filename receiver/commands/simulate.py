"""``simulate``: what a webhook payload would do (severity, incident key, rules, allowlist),
with no side effects."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from pydantic import ValidationError

from receiver.commands.options import CONFIG_OPTION, load_config_or_exit
from receiver.config import Config


def _check_params(config: Config, match: Any) -> str:
    """Validate a rule's rendered params and the allowlist, as the worker will (read-only)."""
    if match.params is None:
        return "refused: " + (match.error or "params could not be rendered")
    rule = config.rule(match.rule)
    return check_rule_params(config, match.playbook, match.params,
                             rule.params if rule is not None else {},
                             approval=match.approval)


def check_rule_params(config: Config, playbook_name: str, params_raw: dict[str, Any],
                      rule_params: dict[str, Any], *, approval: str = "risk") -> str:
    """Params model, allowlist and risk of one call, knowing which params alert data filled
    (those that differ from the rule's literal values); no side effects."""
    from receiver.remediation.preview import assess_call

    return assess_call(config, playbook_name, params_raw, rule_params,
                       approval=approval).text()


def review_rules(config: Config) -> list[str]:
    """One line per rule whose params are all literal: what a job of it would be allowed to
    do and whether it waits for approval (templated params are checked per alert)."""
    from receiver.remediation.rules import params_from_alert

    lines = []
    for rule in config.rules:
        if params_from_alert(rule.params, rule.params):
            lines.append(f"rule {rule.name} -> {rule.playbook}: params from alert data, "
                         "checked for each alert (see simulate)")
            continue
        check = check_rule_params(config, rule.playbook, dict(rule.params), rule.params,
                                  approval=rule.approval.mode)
        lines.append(f"rule {rule.name} -> {rule.playbook}: {check}")
    return lines


@click.command()
@CONFIG_OPTION
@click.argument("payload", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def simulate(config_path: str, payload: Any, as_json: bool) -> None:
    """Show what a webhook payload would do: severity, incident key, rules. No side effects."""
    from receiver.intake.alertmanager import Notification
    from receiver.intake.engine import Intake

    config = load_config_or_exit(config_path)
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
