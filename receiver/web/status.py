"""The public status page and what operators publish on it.

Public, without login (``status_page.enabled``): ``/status`` (server-rendered, no
JavaScript, reloads itself by a meta refresh), ``/status.json`` (Statuspage's
``summary.json`` shape) and ``/status/feed.atom``.

Operators only: the pages under ``/status/manage`` (login, CSRF on every POST, like the
other pages) and the JSON API under ``/api/v1/status`` (API token of operator scope,
session or proxy with ``X-CSRF-Token``, like the other API writes). GET never changes
anything. See :mod:`receiver.comms.status` for what is published and when.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from receiver.comms import status as status_page
from receiver.errors import ActionError, RemediatorError
from receiver.web.errors import ApiError, page_error
from receiver.web.operators import api_auth, current_operator, origin, page_login_required
from receiver.web.requests import field_error, parse_body, parse_form
from receiver.web.services import services
from receiver.web.status_render import atom_feed, summary
from receiver.web.status_requests import (
    StatusDecisionBody,
    StatusDecisionForm,
    StatusOverrideBody,
    StatusOverrideForm,
    StatusUpdateBody,
    StatusUpdateForm,
)

bp = Blueprint("status", __name__)
api = Blueprint("status_api", __name__, url_prefix="/api/v1/status")
bp.register_error_handler(RemediatorError, page_error)


@bp.before_request
@api.before_request
def _enabled() -> None:
    if not services().config.status_page.enabled:
        raise ApiError(404, "not_found", "the status page is not enabled")


NOTICES = frozenset({"published", "waiting for approval", "approved", "rejected",
                     "override saved"})
PUBLIC_MAX_AGE = 10
"""Seconds a proxy or browser may keep a public view (they hold nothing per user)."""


def _notice() -> str:
    """The banner after a redirect: one of ours, never text from the address."""
    done = request.args.get("done", "")
    return done if done in NOTICES else ""


def _public(resp: Response) -> Response:
    resp.headers["Cache-Control"] = f"public, max-age={PUBLIC_MAX_AGE}"
    return resp


def _base() -> str:
    configured = services().config.server.public_url
    return (configured or request.host_url).rstrip("/")


def _now() -> Any:
    return services().intake.clock()


def _operator_name(*, api_call: bool = False) -> str:
    op = current_operator(api=api_call)
    assert op is not None  # noqa: S101 - the login/auth decorators guarantee it
    return op.name


def _field_errors(exc: ActionError, code: str) -> RemediatorError:
    """A refusal of the domain about one field (``invalid``, "field: message") as the 400
    that names it; any other refusal as it is."""
    if exc.code != "invalid":
        return exc
    field, _, message = str(exc).partition(": ")
    return ApiError(400, code, [field_error(field, message or str(exc))])


# -- public ---------------------------------------------------------------------------------

@bp.get("/status")
def page() -> Response:
    svc = services()
    view = status_page.page_view(svc.store, svc.config, _now())
    html = render_template("status.html", view=view,
                           refresh=int(svc.config.status_page.refresh.total_seconds()))
    return _public(Response(html, mimetype="text/html"))


@bp.get("/status.json")
def summary_json() -> Response:
    svc = services()
    view = status_page.page_view(svc.store, svc.config, _now())
    return _public(jsonify(summary(view, _base())))


@bp.get("/status/feed.atom")
def feed() -> Response:
    svc = services()
    view = status_page.page_view(svc.store, svc.config, _now())
    with svc.store.unit(write=False) as uow:
        updates = uow.status.recent_updates(svc.config.status_page.feed_entries)
    return _public(Response(atom_feed(view, updates, _base()),
                            mimetype="application/atom+xml"))


# -- operator pages ---------------------------------------------------------------------------

def _render(template: str, status: int = 200, **ctx: Any) -> Response:
    html = render_template(template, operator=current_operator(), paused=None, **ctx)
    return Response(html, status=status, mimetype="text/html")


@bp.get("/status/manage")
@page_login_required
def manage() -> Response:
    svc = services()
    view = status_page.page_view(svc.store, svc.config, _now())
    with svc.store.unit(write=False) as uow:
        pending = uow.status.pending()
        candidates = uow.status.candidates()
        drills = uow.gamedays.marks([i.id for i in candidates])
    return _render("status_manage.html", view=view, pending=pending, candidates=candidates,
                   gamedays=drills,
                   me=_operator_name(), statuses=status_page.COMPONENT_STATUSES,
                   notice=_notice())


@bp.get("/status/manage/incidents/<id:incident_id>")
@page_login_required
def manage_incident(incident_id: int) -> Response:
    svc = services()
    with svc.store.unit(write=False) as uow:
        internal = uow.status.internal(incident_id)
        if internal is None:
            raise ActionError("not_found", f"no incident {incident_id}", 404)
        si = uow.status.for_incident(incident_id)
        updates = uow.status.updates(si.id, published_only=False) if si else []
        label_sets = uow.status.label_sets(incident_id)
        drill = uow.gamedays.for_incident(incident_id)
    would = status_page.affected_components(svc.config.status_page.components, label_sets)
    return _render("status_incident.html", internal=internal, si=si, updates=updates,
                   gameday=drill.id if drill else None,
                   would_affect=would, statuses=status_page.PUBLIC_STATUSES,
                   approval=svc.config.status_page.approval,
                   notice=_notice())


@bp.post("/status/manage/incidents/<id:incident_id>/updates")
@page_login_required
def post_from_page(incident_id: int) -> Any:
    form = parse_form(StatusUpdateForm)
    svc = services()
    try:
        result = status_page.post_update(
            svc.store, svc.config, incident_id, status=form.status, body=form.body,
            title=form.title, user=_operator_name(), now=_now(), origin=origin())
    except ActionError as exc:
        raise _field_errors(exc, "invalid_form") from exc
    done = "published" if result.published else "waiting for approval"
    return redirect(url_for("status.manage_incident", incident_id=incident_id, done=done))


@bp.post("/status/manage/updates/<id:update_id>/decision")
@page_login_required
def decide_from_page(update_id: int) -> Any:
    form = parse_form(StatusDecisionForm)
    svc = services()
    status_page.decide(svc.store, svc.config, update_id, approve=form.decision == "approve",
                       user=_operator_name(), now=_now(), reason=form.reason, origin=origin())
    done = "approved" if form.decision == "approve" else "rejected"
    return redirect(url_for("status.manage", done=done))


@bp.post("/status/manage/overrides")
@page_login_required
def override_from_page() -> Any:
    form = parse_form(StatusOverrideForm)
    svc = services()
    try:
        if form.status == "follow":
            status_page.clear_override(svc.store, svc.config, form.component,
                                       user=_operator_name(), now=_now(), reason=form.reason,
                                       origin=origin())
        else:
            status_page.set_override(svc.store, svc.config, form.component, form.status,
                                     user=_operator_name(), now=_now(), reason=form.reason,
                                     origin=origin())
    except ActionError as exc:
        raise _field_errors(exc, "invalid_form") from exc
    return redirect(url_for("status.manage", done="override saved"))


# -- operator API -----------------------------------------------------------------------------

@api.post("/incidents/<id:incident_id>/updates")
@api_auth("operator")
def post_from_api(incident_id: int) -> Response:
    body = parse_body(StatusUpdateBody)
    svc = services()
    try:
        result = status_page.post_update(
            svc.store, svc.config, incident_id, status=body.status, body=body.body,
            title=body.title, user=_operator_name(api_call=True), now=_now(),
            origin={**origin(), "via": "api"})
    except ActionError as exc:
        raise _field_errors(exc, "invalid_payload") from exc
    u = result.update
    return jsonify({"update_id": u.id, "incident_id": incident_id, "state": u.state,
                    "published": result.published, "status": u.status})


@api.post("/updates/<id:update_id>/<any(approve, reject):decision>")
@api_auth("operator")
def decide_from_api(update_id: int, decision: str) -> Response:
    body = parse_body(StatusDecisionBody)
    svc = services()
    u = status_page.decide(svc.store, svc.config, update_id, approve=decision == "approve",
                           user=_operator_name(api_call=True), now=_now(), reason=body.reason,
                           origin={**origin(), "via": "api"})
    return jsonify({"update_id": u.id, "state": u.state, "decided_by": u.decided_by})


@api.post("/overrides")
@api_auth("operator")
def override_from_api() -> Response:
    body = parse_body(StatusOverrideBody)
    svc = services()
    user = _operator_name(api_call=True)
    try:
        if body.status is None:
            cleared = status_page.clear_override(svc.store, svc.config, body.component,
                                                 user=user, now=_now(), reason=body.reason,
                                                 origin={**origin(), "via": "api"})
            return jsonify({"component": body.component, "override": None,
                            "cleared": cleared})
        status_page.set_override(svc.store, svc.config, body.component, body.status,
                                 user=user, now=_now(), reason=body.reason,
                                 origin={**origin(), "via": "api"})
    except ActionError as exc:
        raise _field_errors(exc, "invalid_payload") from exc
    return jsonify({"component": body.component, "override": body.status})
