"""Undo a job by hand: the incident page's button and ``POST /api/v1/jobs/<id>/undo``.

Both queue the undo job through :func:`receiver.remediation.undo.request` as the operator
who asks (audited with the request's origin). The page's form carries the CSRF token and
must come from the same site (``page_login_required``); the API takes an operator-scoped
token, or a session or the proxy with ``X-CSRF-Token`` (``api_auth``). A refusal is the
error tree's ``ActionError``: 404 ``not_found``, 409 ``not_undoable`` or ``already_undone``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, url_for
from pydantic import Field

from receiver.web.openapi import OPERATOR_AUTH, WRITE_ERRORS, _body, _id_param, _ok, _responses
from receiver.web.operators import api_auth, current_operator, origin, page_login_required
from receiver.web.requests import BodyModel, FormModel, Text, parse_body, parse_form
from receiver.web.services import services

bp = Blueprint("undo", __name__)


class UndoBody(BodyModel):
    """POST /api/v1/jobs/{id}/undo."""

    reason: Text = Field("", max_length=500, description="why; recorded in the audit log")


class UndoForm(FormModel):
    """POST /jobs/{id}/undo: the incident page's undo button."""

    reason: Text = Field("", max_length=500)


@bp.app_context_processor
def _undoable() -> dict[str, Any]:
    """The playbooks whose jobs the incident page offers to undo."""
    from playbooks import REGISTRY  # deferred: playbooks import the adapters

    return {"undoable_playbooks": frozenset(n for n, p in REGISTRY.items() if p.undoable)}


def _user() -> str:
    op = current_operator(api=True) or current_operator()
    assert op is not None  # noqa: S101 - the decorators guarantee it
    return op.name


@bp.post("/api/v1/jobs/<id:job_id>/undo")
@api_auth("operator")
def api_undo(job_id: int) -> Response:
    from receiver.remediation.undo import request

    body = parse_body(UndoBody)
    svc = services()
    job = request(svc.store, job_id, user=_user(), reason=body.reason,
                  now=svc.intake.clock(), via="api", origin={**origin(), "via": "api"})
    return jsonify({"job_id": job_id, "undo_job_id": job.id, "state": job.state})


@bp.post("/jobs/<id:job_id>/undo")
@page_login_required
def page_undo(job_id: int) -> Any:
    from receiver.remediation.undo import request

    form = parse_form(UndoForm)
    svc = services()
    op = current_operator()
    assert op is not None  # noqa: S101 - page_login_required guarantees it
    job = request(svc.store, job_id, user=op.name, reason=form.reason,
                  now=svc.intake.clock(), via="page", origin={**origin(), "via": "page"})
    return redirect(url_for("pages.incident", incident_id=job.incident_id,
                            _anchor=f"job-{job.id}"), code=303)


_QUEUED = {
    "type": "object", "required": ["job_id", "undo_job_id", "state"],
    "properties": {"job_id": {"type": "integer"}, "undo_job_id": {"type": "integer"},
                   "state": {"type": "string"}},
}


def undo_paths(components: dict[str, Any]) -> dict[str, Any]:
    """``/api/v1/jobs/{job_id}/undo`` in the OpenAPI document."""
    return {"/api/v1/jobs/{job_id}/undo": {"post": {
        "operationId": "undoJob", "tags": ["jobs"],
        "summary": "undo what a job did, as a job of its own (operator scope); 409 when the "
                   "job cannot be undone or already is",
        "security": OPERATOR_AUTH, "parameters": [_id_param("job_id", "the job's id")],
        "requestBody": _body(UndoBody, components, required=False),
        "responses": _responses(_ok("the undo job, queued", _QUEUED), WRITE_ERRORS),
    }}}
