"""``remediator rules``: each remediation rule, its approval mode, its current level and its
record (read only)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import click

from receiver.commands.options import CONFIG_OPTION, load_config_or_exit, store_for
from receiver.config import Config
from receiver.durations import format_duration
from receiver.store import Store

RECORD_WINDOW = timedelta(days=30)
"""The record of a rule whose mode is not ``earned`` (an earned rule: its own window)."""


def level_of(mode: str, autonomous: bool | None) -> str:
    if mode == "earned":
        return "earned autonomy" if autonomous else "needs approval"
    return {"auto": "runs without approval", "required": "needs approval",
            "risk": "needs approval when high risk"}.get(mode, mode)


def rules_table(store: Store, config: Config, now: datetime) -> list[dict[str, Any]]:
    """One entry per configured rule: mode, level, record, and (earned) the count."""
    from receiver.remediation import autonomy, effectiveness

    def window_of(p: Any) -> timedelta:
        return p.window if p.earned else RECORD_WINDOW

    widest = max([RECORD_WINDOW, *(window_of(r.approval) for r in config.rules)])
    with store.unit(write=False) as uow:
        standings = autonomy.standings(uow, config.rules, now)
        runs = uow.autonomy.runs(since=now - widest, until=now + timedelta(microseconds=1))
    out: list[dict[str, Any]] = []
    for rule in config.rules:
        p = rule.approval
        st = standings.get(rule.name)
        window = window_of(p)
        mine = [r for r in runs if r.rule == rule.name and r.finished_at >= now - window]
        recurrence = p.recurrence
        figs = effectiveness.figures(mine, lambda _name: recurrence)  # noqa: B023 - used at once
        entry: dict[str, Any] = {
            "rule": rule.name, "playbook": rule.playbook, "enabled": rule.enabled,
            "mode": p.mode, "per_severity": {str(k): v for k, v in p.per_severity.items()},
            "level": level_of(p.mode, st.autonomous if st else None),
            "window": format_duration(window),
            "record": {name: getattr(figs, name) for name in effectiveness.FIGURES},
        }
        if st is not None:
            entry["earned"] = {
                "autonomous": st.autonomous, "streak": [r.job_id for r in st.streak],
                "promote_after": p.promote_after,
                "recurrence": format_duration(p.recurrence),
                "counting_since": st.streak_started_at.isoformat()
                if st.streak_started_at else None,
            }
            if p.mode != "earned":  # earned at some severities only
                at = ", ".join(str(k) for k, v in p.per_severity.items() if v == "earned")
                entry["level"] += f"; at {at}: {level_of('earned', st.autonomous)}"
        out.append(entry)
    return out


def as_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no remediation rules configured"
    lines = []
    for r in rows:
        rec = r["record"]
        head = f"{r['rule']} ({r['playbook']}{'' if r['enabled'] else ', disabled'})"
        lines.append(f"{head}: approval {r['mode']}, {r['level']}")
        if "earned" in r:
            e = r["earned"]
            state = ("earned" if e["autonomous"] else
                     f"{len(e['streak'])} of {e['promote_after']} approved runs verified "
                     f"and stuck (recurrence {e['recurrence']})")
            lines.append(f"  autonomy: {state}")
        lines.append(f"  last {r['window']}: {rec['runs']} runs, {rec['verified']} verified, "
                     f"{rec['failed']} failed, {rec['undone']} undone, "
                     f"{rec['recurred']} recurred")
    return "\n".join(lines)


@click.command("rules")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True)
def rules(config_path: str, as_json: bool) -> None:
    """Each remediation rule: its approval mode, its level (needs approval / earned
    autonomy) and its record (runs, verified, failed, undone, recurred)."""
    from receiver.intake.engine import utcnow

    config = load_config_or_exit(config_path)
    store = store_for(config)
    try:
        rows = rules_table(store, config, utcnow())
    finally:
        store.close()
    click.echo(json.dumps(rows, indent=2) if as_json else as_text(rows))
