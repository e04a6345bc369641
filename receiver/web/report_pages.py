"""``GET /report``: the response figures as server-rendered SVG charts (no JavaScript),
over a time range picked with a GET form: ``?since=7d|30d|90d`` or ``?from=&to=`` dates.

:func:`standalone_html` renders the same charts as one self-contained HTML file (inline
CSS and SVG, no links to fetch) for ``remediator report --html FILE``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
from flask import Blueprint, Response, request
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from receiver.incidents import report_view, timeline_strip
from receiver.store.incident_views import IncidentDetail
from receiver.web.errors import ApiError
from receiver.web.operators import page_login_required
from receiver.web.requests import field_error, field_errors
from receiver.web.services import services

bp = Blueprint("reports", __name__)
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
EARLIEST = date(2000, 1, 1)
LATEST = date(9999, 1, 1)


class ReportQuery(BaseModel):
    """The range form: a preset window, or a first and last day (UTC, both included)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    since: Literal["7d", "30d", "90d"] | None = None
    first: date | None = Field(None, alias="from")
    last: date | None = Field(None, alias="to")

    @model_validator(mode="after")
    def _one_range(self) -> ReportQuery:
        if self.since is not None and (self.first or self.last):
            raise ValueError("give either since or from/to, not both")
        if (self.first is None) != (self.last is None):
            raise ValueError("from and to go together")
        return self

    def range(self, now: datetime) -> report_view.Range:
        if self.first is not None and self.last is not None:
            return report_view.Range.dates(self.first, self.last)
        label = self.since or "30d"
        return report_view.Range.last(report_view.PRESETS[label], now, label)


def range_problems(q: ReportQuery) -> list[dict[str, str]]:
    """What is wrong with a from/to range that parses: order, bounds and length."""
    if q.first is None or q.last is None:
        return []
    if q.first < EARLIEST:
        return [field_error("from", f"must be on or after {EARLIEST.isoformat()}")]
    if q.last >= LATEST:
        return [field_error("to", f"must be before {LATEST.isoformat()}")]
    if q.last < q.first:
        return [field_error("to", "must be on or after from")]
    if q.last - q.first >= report_view.MAX_RANGE:
        return [field_error("to", f"the range is at most {report_view.MAX_RANGE.days} days")]
    return []


def parse_report_query(args: dict[str, str]) -> ReportQuery:
    """The query string as a :class:`ReportQuery`; ApiError 400 naming each bad field."""
    data = {k: v.strip() for k, v in args.items() if k in ("since", "from", "to") and v.strip()}
    try:
        q = ReportQuery.model_validate(data)
    except ValidationError as exc:
        detail = [field_error(d["field"].split(".")[0] or "(query)", d["message"])
                  for d in field_errors(exc, where="(query)")]
        # a whole-model error is about the range: name the fields the form has
        detail = [d if d["field"] != "(query)" else field_error("since/from/to", d["message"])
                  for d in detail]
        raise ApiError(400, "invalid_query", detail) from exc
    problems = range_problems(q)
    if problems:
        raise ApiError(400, "invalid_query", problems)
    return q


def figures(store: Any, config: Any, rng: report_view.Range,
            now: datetime) -> report_view.Figures:
    with store.unit(write=False) as uow:
        facts = report_view.gather(uow.reports, rng)
    return report_view.figures(facts, rng, now=now, noise_window=config.sla.noise_window)


@bp.app_template_global("incident_strip")
def incident_strip(inc: IncidentDetail) -> Markup:
    """The incident page's timeline strip (``{{ incident_strip(inc) }}``)."""
    return timeline_strip.strip(inc)


@bp.get("/report")
@page_login_required
def report() -> Response:
    from receiver.web.pages import render

    svc = services()
    now = svc.intake.clock()
    form = {k: request.args.get(k, "") for k in ("since", "from", "to")}
    try:
        q = parse_report_query(form)
    except ApiError as exc:
        fields = exc.detail if isinstance(exc.detail, list) else []
        message = "; ".join(f"{d['field']}: {d['message']}" for d in fields)
        return render("report.html", status=400, error=message, form=form, fig=None,
                      charts=[])
    fig = figures(svc.store, svc.config, q.range(now), now)
    return render("report.html", error=None, form=form, **report_view.context(fig))


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def standalone_html(fig: report_view.Figures) -> str:
    """The report as one HTML document: the page's CSS inline, the charts inline."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    css = "\n".join((STATIC / name).read_text(encoding="utf-8")
                    for name in ("style.css", "report.css"))
    return env.get_template("report_file.html").render(css=css, **report_view.context(fig))
