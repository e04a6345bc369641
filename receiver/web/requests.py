"""Every query string and JSON body that the web layer reads, as pydantic models.

Handlers call :func:`parse_query` or :func:`parse_body` first and work with the typed model
afterwards; nothing past this module digs in ``request.args`` or a decoded dict. Bad input
raises :class:`~receiver.web.errors.ApiError` (400, 413 or 415) whose ``detail`` names each
bad field, so no client input reaches the store in a shape that makes it fail:

- ids, cursors, times, windows and text are the bounded types of
  :mod:`receiver.web.fields` (they fit both stores), and text has a length bound;
- JSON bodies are parsed by pydantic's own parser, which refuses nesting past its
  recursion limit (instead of overflowing the stack) and lone surrogate escapes; no body
  field takes a float, so NaN and Infinity are refused as the wrong type.

The OpenAPI document (receiver/web/openapi.py) is generated from these same models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlencode

from flask import current_app, request, url_for
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from receiver.incidents.lifecycle import ACTIONS, MAX_TEXT
from receiver.store import AuditFilter, IncidentFilter
from receiver.web.errors import ApiError
from receiver.web.fields import MAX_ID as MAX_ID
from receiver.web.fields import Cursor, FilterText, Id, IncidentState, Time, TimeOrWindow
from receiver.web.fields import IdConverter as IdConverter
from receiver.web.fields import SeverityName as SeverityName
from receiver.web.fields import Text as Text

MAX_INCIDENTS_PAGE = 500
MAX_AUDIT_PAGE = 100_000
MAX_ERRORS_SHOWN = 20
MAX_LOGIN_NAME = 100

M = TypeVar("M", bound=BaseModel)


# -- query models ----------------------------------------------------------------------------

class QueryModel(BaseModel):
    """A query string. Unknown parameters are ignored (pages carry form fields along)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    LISTS: ClassVar[tuple[str, ...]] = ()
    """Fields that accept repeated and comma-separated values (``state=a,b&state=c``)."""


class IncidentsQuery(QueryModel):
    """GET /api/v1/incidents."""

    LISTS: ClassVar[tuple[str, ...]] = ("state", "severity")

    state: list[IncidentState] | None = Field(
        None, description="one or more states, comma separated")
    severity: list[SeverityName] | None = Field(
        None, description="one or more of P0..P3, comma separated")
    since: TimeOrWindow | None = Field(None, description="incidents opened at or after")
    limit: int = Field(50, ge=1, le=MAX_INCIDENTS_PAGE, description="page size")
    before: Id | None = Field(None, description="paging cursor: incidents with a smaller id")

    def filter(self, now: datetime) -> IncidentFilter:
        severity = [str(s) for s in self.severity] if self.severity else None
        return IncidentFilter(state=self.state, severity=severity,
                              since=resolve_since(self.since, now), limit=self.limit,
                              before_id=self.before)


class AuditQuery(QueryModel):
    """GET /api/v1/audit and the audit page."""

    incident: Id | None = Field(None, description="entries about this incident")
    actor: FilterText | None = Field(None, description="exact actor, e.g. user:alice")
    action: FilterText | None = Field(None, description="exact action, e.g. job.approved")
    since: Time | None = Field(None, description="entries at or after")
    until: Time | None = Field(None, description="entries before")
    after: Cursor | None = Field(None, description="paging cursor: entries with a larger seq")
    limit: int = Field(100, ge=1, le=MAX_AUDIT_PAGE, description="page size")
    format: Literal["json", "jsonl", "csv"] = Field("json", description="response format")

    def filter(self, limit: int | None = None) -> AuditFilter:
        return AuditFilter(incident_id=self.incident, actor=self.actor, action=self.action,
                           since=self.since, until=self.until,
                           limit=self.limit if limit is None else limit,
                           after_seq=self.after)


class IncidentsPageQuery(QueryModel):
    """GET /incidents (the page): one state and one severity, as its filter form sends."""

    state: IncidentState | None = None
    severity: SeverityName | None = None
    before: Id | None = None


def resolve_since(value: datetime | timedelta | None, now: datetime) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return now - value
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


# -- body models -----------------------------------------------------------------------------

class BodyModel(BaseModel):
    """A JSON object body. Unknown keys are refused, so a misspelt field is not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


IncidentActionName = Literal[(*ACTIONS, "diagnose")]  # type: ignore[valid-type]


class IncidentActionBody(BodyModel):
    """POST /api/v1/incidents/{id}/actions."""

    action: IncidentActionName = Field(description="what to do")
    text: Text = Field("", max_length=MAX_TEXT,
                       description="note, reason or post-mortem text, as the action needs")
    value: Text = Field("", max_length=200,
                        description="assign: the user name; severity: P0..P3")


class DecisionBody(BodyModel):
    """POST /api/v1/jobs/{id}/approve and /deny."""

    reason: Text = Field("", max_length=1000, description="required to deny")


class ControlBody(BodyModel):
    """POST /api/v1/controls/pause and /resume."""

    rule: Text | None = Field(None, max_length=200,
                              description="one rule's name; absent for the global kill switch")
    reason: Text = Field("", max_length=500)


# -- form models (pages) ---------------------------------------------------------------------

class FormModel(BaseModel):
    """A page's form post. Other fields (the CSRF token, buttons) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class IncidentActionForm(FormModel):
    """POST /incidents/{id}/action: one of the incident page's buttons."""

    action: IncidentActionName
    text: Text = Field("", max_length=MAX_TEXT)
    value: Text = Field("", max_length=200)


class ControlsForm(FormModel):
    """POST /controls: the kill switch's two buttons (nothing else resumes it)."""

    action: Literal["pause", "resume"]
    reason: Text = Field("", max_length=MAX_TEXT)


class DecisionForm(FormModel):
    """POST /approvals/{token}: approve or deny (nothing else counts as either)."""

    decision: Literal["approve", "deny"]
    reason: Text = Field("", max_length=MAX_TEXT)


class LogoutForm(FormModel):
    """POST /logout: no field besides the CSRF token (checked before it is parsed)."""


class LoginForm(FormModel):
    """POST /login. Any text is taken (a wrong one is a 401, not a 400); the name is cut to
    :data:`MAX_LOGIN_NAME` characters."""

    username: Annotated[str, AfterValidator(lambda v: v[:MAX_LOGIN_NAME])] = ""
    password: str = ""


# -- parsing ---------------------------------------------------------------------------------

def field_errors(exc: ValidationError, *, where: str = "(body)") -> list[dict[str, str]]:
    """``[{"field", "message"}]`` for each error (also as ``loc``/``msg``, the older names);
    ``field`` is the dotted path, or ``where`` for an error about the whole input."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    out = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        field = ".".join(str(p) for p in err["loc"]) or where
        out.append(field_error(field, err["msg"]))
    if len(errors) > MAX_ERRORS_SHOWN:
        out.append(field_error(where, f"{len(errors) - MAX_ERRORS_SHOWN} more errors"))
    return out


def field_error(field: str, message: str) -> dict[str, str]:
    message = message.removeprefix("Value error, ")
    return {"field": field, "message": message, "loc": field, "msg": message}


def _query_data(model: type[QueryModel]) -> dict[str, Any]:
    lists: tuple[str, ...] = getattr(model, "LISTS", ())
    data: dict[str, Any] = {}
    for name in model.model_fields:
        raw = request.args.getlist(name)
        if name in lists:
            values = [v.strip() for item in raw for v in item.split(",") if v.strip()]
            if values:
                data[name] = values
        else:
            present = [v for v in raw if v.strip()]
            if present:
                data[name] = present[0]
    return data


def parse_query(model: type[M]) -> M:
    """The request's query string as ``model``; 400 ``invalid_query`` naming each bad field."""
    assert issubclass(model, QueryModel)  # noqa: S101 - a programming error, not input
    try:
        return model.model_validate(_query_data(model))
    except ValidationError as exc:
        # A list field's error is about the parameter, whichever element was bad.
        detail = [field_error(d["field"].split(".")[0], d["message"])
                  for d in field_errors(exc, where="(query)")]
        raise ApiError(400, "invalid_query", detail) from exc


def page_link(endpoint: str, model: type[QueryModel], **cursor: Any) -> str:
    """The URL of the next page: the request's own values of ``model``'s parameters (and no
    other, so no query parameter reaches ``url_for``'s own arguments) with ``cursor`` set."""
    args = [(name, value) for name in model.model_fields if name not in cursor
            for value in request.args.getlist(name)]
    args += [(name, str(value)) for name, value in cursor.items()]
    return f"{url_for(endpoint)}?{urlencode(args)}"


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json"))


def parse_body(model: type[M]) -> M:
    """The request's JSON object body as ``model``.

    An empty body counts as ``{}`` (so a body of optional fields may be left out). A body
    that is not JSON by its Content-Type gets 415, one over the cap 413, bad JSON 400
    ``invalid_json`` and a wrong shape 400 ``invalid_payload``, each naming the field.
    """
    cap = int(current_app.config.get("REMEDIATOR_MAX_BODY", 1 << 20))
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413, "payload_too_large", f"the body exceeds {cap} bytes")
    body = request.get_data(cache=True)
    if len(body) > cap:
        raise ApiError(413, "payload_too_large", f"the body exceeds {cap} bytes")
    if not body.strip():
        body = b"{}"
    elif not _is_json(request.mimetype):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        bad_json = any(e["type"] == "json_invalid" for e in errors)
        code = "invalid_json" if bad_json else "invalid_payload"
        raise ApiError(400, code, field_errors(exc)) from exc


def parse_form(model: type[M]) -> M:
    """The request's form fields as ``model``; 400 ``invalid_form`` naming each bad field."""
    data = {name: request.form.get(name) for name in model.model_fields if name in request.form}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_form", field_errors(exc, where="(form)")) from exc
