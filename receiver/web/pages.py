"""Server-rendered pages: incidents, incident detail, approval links, audit review, login.

GET never changes state: an approval link fetched by a mail scanner or a chat unfurler
only renders the plan. Every change is a POST carrying the session's CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, redirect, render_template, request, url_for

from receiver.config import Config
from receiver.incidents import context, lifecycle, postmortem
from receiver.incidents.states import STATES
from receiver.intake.severity import Severity
from receiver.people import approvals as approval_logic
from receiver.people import roster
from receiver.people.roster import on_duty_at
from receiver.people.tokens import (
    ApprovalClaim,
    TokenError,
    eligible_approvers,
    make_token,
    read_token,
    secret_key,
)
from receiver.remediation import controls, guards
from receiver.store import AuditFilter, IncidentFilter
from receiver.store.approvals import Approval, Vote
from receiver.store.controls import Control
from receiver.store.incident_views import IncidentDetail
from receiver.store.jobs import Job
from receiver.store.oncall import Override
from receiver.web.errors import ApiError
from receiver.web.operators import (
    check_csrf,
    current_operator,
    end_session,
    log_in,
    origin,
    page_login_required,
)
from receiver.web.requests import (
    AuditQuery,
    ControlsForm,
    DecisionForm,
    IncidentActionForm,
    IncidentsPageQuery,
    LoginForm,
    LogoutForm,
    page_link,
    parse_form,
    parse_query,
)
from receiver.web.services import services

bp = Blueprint("pages", __name__)
PAGE = 50


def _paused() -> Control | None:
    c = controls.state(services().store).get(guards.PAUSED)
    return c if c is not None and c.value == "true" else None


def render(template: str, status: int = 200, **ctx: Any) -> Response:
    html = render_template(template, operator=current_operator(), paused=_paused(), **ctx)
    return Response(html, status=status, mimetype="text/html")


def _now() -> datetime:
    return services().intake.clock()


def _safe_next(target: str | None) -> str:
    if not target:
        return url_for("pages.incidents")
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.incidents")
    return target


def _bad_query(exc: ApiError) -> Response:
    """A page's answer to a query string it cannot use: 400, naming each bad parameter."""
    fields = exc.detail if isinstance(exc.detail, list) else []
    message = "; ".join(f"{d['field']}: {d['message']}" for d in fields) or str(exc.detail)
    return render("message.html", status=400, title="Bad request",
                  message=f"This address has a bad parameter ({message}).", level="error")


@bp.get("/")
def home() -> Any:
    return redirect(url_for("pages.incidents"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = request.args.get("next", "")
    if request.method == "GET":
        return render("login.html", next=nxt, error=None)
    check_csrf()
    form = parse_form(LoginForm)
    result = log_in(form.username, form.password)
    if result.retry_after is not None:
        minutes = max(1, (result.retry_after + 59) // 60)
        resp = render("login.html", status=429, next=nxt,
                      error=f"Too many failed logins. Try again in {minutes} min.")
        resp.headers["Retry-After"] = str(result.retry_after)
        return resp
    if not result.ok:
        return render("login.html", status=401, next=nxt, error="Wrong user or password.")
    return redirect(_safe_next(nxt))


@bp.post("/logout")
@page_login_required
def logout() -> Any:
    op = current_operator()
    assert op is not None  # noqa: S101 - page_login_required guarantees it
    parse_form(LogoutForm)
    if end_session(op):
        with services().store.unit() as uow:
            uow.audit.append(at=_now(), actor=f"user:{op.name}", action="auth.logout",
                             subject=f"user:{op.name}"[:120], origin=origin())
    return redirect(url_for("pages.login"))


@bp.get("/incidents")
@page_login_required
def incidents() -> Response:
    try:
        query = parse_query(IncidentsPageQuery)
    except ApiError as exc:
        return _bad_query(exc)
    state, sev, before = query.state, query.severity, query.before
    with services().store.unit(write=False) as uow:
        found = uow.incidents.matching(IncidentFilter(
            state=[state] if state else None, severity=[sev] if sev else None, limit=PAGE,
            before_id=before))
        drills = uow.gamedays.marks([i.id for i in found])
    next_url = None
    if len(found) == PAGE:
        next_url = url_for("pages.incidents", state=state or "", severity=sev or "",
                           before=found[-1].id)
    return render("incidents.html", incidents=found, states=STATES,
                  severities=[s.value for s in Severity], f_state=state, f_severity=sev,
                  next_url=next_url, gamedays=drills)


@bp.get("/incidents/<id:incident_id>")
@page_login_required
def incident(incident_id: int) -> Response:
    return _incident_page(incident_id)


def _incident_page(incident_id: int, notice: str | None = None, level: str = "info",
                   status: int = 200) -> Response:
    svc = services()
    with svc.store.unit(write=False) as uow:
        inc = uow.incidents.detail(incident_id)
        audit = uow.audit.query(AuditFilter(incident_id=incident_id, limit=200))
        drill = uow.gamedays.for_incident(incident_id)
        overrides = uow.oncall.overrides() if svc.config.oncall.roles else []
    if inc is None:
        return render("message.html", status=404, title="Not found",
                      message=f"There is no incident {incident_id}.", level="error")
    op = current_operator()
    my_links: dict[int, str] = {}
    if op is not None:
        for a in inc.approvals:
            if a.state == "pending" and _may_approve(svc.config, op.name, a.groups, inc,
                                                     overrides):
                token = make_token(secret_key(svc.config), a.id, op.name, a.expires_at)
                my_links[a.id] = url_for("pages.approval", token=token)
    return render("incident.html", status=status, inc=inc, audit=audit, my_links=my_links,
                  users=sorted(svc.config.people.users),
                  severities=[s.value for s in Severity], notice=notice, notice_level=level,
                  gameday=drill.id if drill else None,
                  on_duty=on_duty_at(svc.config, inc.opened_at, overrides),
                  incident_context=context.for_page(svc.store, svc.config, inc, now=_now()))


def _may_approve(config: Config, user: str, groups: list[str], inc: IncidentDetail,
                 overrides: list[Override]) -> bool:
    """Whether ``user`` gets a link to decide an approval limited to ``groups`` now (an
    ``oncall:<role>`` group: its holder, and its backup once the incident went
    unacknowledged for ``oncall.backup_after``)."""
    now = datetime.now(UTC)
    return (user in eligible_approvers(config, groups, now, overrides)
            or roster.in_any(config, user, groups, now, overrides, opened_at=inc.opened_at,
                             acknowledged_at=inc.acknowledged_at))


@bp.post("/incidents/<id:incident_id>/action")
@page_login_required
def incident_action(incident_id: int) -> Response:
    op = current_operator()
    assert op is not None  # noqa: S101 - page_login_required guarantees it
    form = parse_form(IncidentActionForm)
    action = form.action
    svc = services()
    if action == "diagnose":
        from receiver.diagnostics import request as request_diagnostics

        if request_diagnostics(svc.store, incident_id, actor=f"user:{op.name}",
                               reason="requested from the incident page", now=_now()) is None:
            return _incident_page(incident_id)  # renders the 404 page
        return _incident_page(incident_id, "Diagnostics requested.")
    try:
        lifecycle.act(svc.store, svc.config, incident_id, action, user=op.name, now=_now(),
                      text=form.text, value=form.value, origin=origin())
    except lifecycle.ActionError as exc:
        return _incident_page(incident_id, str(exc), "error", status=exc.status)
    return _incident_page(incident_id, f"{action.replace('_', ' ')}: done.")


@bp.get("/incidents/<id:incident_id>/postmortem.md")
@page_login_required
def postmortem_md(incident_id: int) -> Response:
    svc = services()
    text = postmortem.render(svc.store, svc.config, incident_id)
    if text is None:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return Response(text, mimetype="text/markdown",
                    headers={"Content-Disposition":
                             f'inline; filename="incident-{incident_id}-postmortem.md"'})


@bp.post("/controls", endpoint="controls")
@page_login_required
def controls_form() -> Any:
    op = current_operator()
    assert op is not None  # noqa: S101 - page_login_required guarantees it
    form = parse_form(ControlsForm)
    reason = form.reason.strip()[:500] or "(no reason given)"
    fn = controls.pause if form.action == "pause" else controls.resume
    fn(services().store, actor=f"user:{op.name}", reason=reason, now=_now(), origin=origin())
    return redirect(url_for("pages.incidents"))


# -- approvals ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ApprovalView:
    """What the approval page shows of one link's approval."""

    claim: ApprovalClaim
    approval: Approval
    job: Job
    inc: IncidentDetail
    votes: list[Vote]
    approves: int
    guard_state: list[tuple[str, str]]
    decided: str | None
    approver: str

    def context(self, **over: Any) -> dict[str, Any]:
        """The template's variables (``over`` replaces some)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | over


def _approval_view(token: str) -> ApprovalView:
    svc = services()
    claim = read_token(secret_key(svc.config), token, now=_now())
    with svc.store.unit(write=False) as uow:
        approval = uow.approvals.get(claim.approval_id)
        if approval is None:
            raise TokenError("invalid_token", "this approval link is not valid")
        job = uow.jobs.get(approval.job_id)
        votes = uow.approvals.votes(approval.id)
        ctl = {name: c.value for name, c in uow.controls.all().items()}
        inc = uow.incidents.detail(approval.incident_id)
        drill = uow.gamedays.for_incident(approval.incident_id)
    assert job is not None and inc is not None  # noqa: S101 - foreign keys guarantee them
    rule = svc.config.rule(job.rule)
    guard_state = [
        ("kill switch", "PAUSED" if ctl.get(guards.PAUSED) == "true" else "off"),
        ("rule paused", "yes" if ctl.get(guards.rule_paused(job.rule)) == "true" else "no"),
        ("circuit breaker", ctl.get(guards.breaker(job.rule), "closed")),
        ("dry-run", "on" if svc.config.remediation.dry_run or (rule and rule.guards.dry_run)
         else "off"),
        ("maintenance", ", ".join(w.name for w in svc.config.remediation.maintenance_windows
                                  if w.active(_now())) or "none active"),
        ("game day", f"GAME DAY {drill.id}" if drill else "no"),
    ]
    decided = None
    mine = next((v for v in votes if v.approver == claim.approver), None)
    if approval.state != "pending":
        who = approval.decided_by or "the system"
        at = (approval.decided_at or approval.created_at).astimezone(UTC)
        decided = f"Already decided: {approval.state} by {who} at {at:%Y-%m-%d %H:%M:%S} UTC"
    elif mine is not None:
        decided = (f"You already {mine.decision}d this at "
                   f"{mine.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC; "
                   "waiting for other approvers.")
    return ApprovalView(claim, approval, job, inc, votes,
                        sum(1 for v in votes if v.decision == "approve"), guard_state,
                        decided, claim.approver)


def _token_problem(exc: TokenError) -> Response:
    with services().store.unit() as uow:
        uow.audit.append(at=_now(), actor="anonymous", action="approval.refused",
                         subject="approval-link", origin=origin(),
                         details={"code": exc.code, "message": str(exc)})
    return render("message.html", status=exc.status,
                  title="Approval link refused", message=str(exc), level="error")


@bp.get("/approvals/<token>")
@page_login_required
def approval(token: str) -> Response:
    """Show the plan and the form. No side effect, whoever fetches it."""
    try:
        view = _approval_view(token)
    except TokenError as exc:
        return _token_problem(exc)
    op = current_operator()
    problem = None
    if op is not None and op.name != view.approver:
        problem = (f"This link belongs to {view.approver}; you are logged in as {op.name}. "
                   "Only its owner can decide with it.")
    return render("approval.html", problem=problem, can_decide=problem is None,
                  **view.context())


@bp.post("/approvals/<token>")
@page_login_required
def decide(token: str) -> Response:
    svc = services()
    try:
        view = _approval_view(token)
    except TokenError as exc:
        return _token_problem(exc)
    op = current_operator()
    assert op is not None  # noqa: S101 - page_login_required guarantees it
    if op.name != view.approver:
        approval_logic.refuse(svc.store, view.job.id, op.name, "wrong_approver",
                              f"link of {view.approver} used by {op.name}", _now(), origin())
        return render("approval.html", status=403, can_decide=False,
                      problem=f"This link belongs to {view.approver}, not {op.name}.",
                      **view.context())
    form = parse_form(DecisionForm)
    approve = form.decision == "approve"
    reason = form.reason.strip()[:1000]
    if not approve and not reason:
        return render("approval.html", status=400, can_decide=True,
                      problem="Say why you deny it.", **view.context())
    try:
        approval_logic.decide_job(svc.store, svc.config, view.job.id, approve=approve,
                                  user=op.name, reason=reason, now=_now(),
                                  origin={**origin(), "via": "approval-link"})
    except approval_logic.DecisionError as exc:
        fresh = _approval_view(token)
        return render("approval.html", status=409, can_decide=False, problem=str(exc),
                      **fresh.context(decided=fresh.decided or str(exc)))
    fresh = _approval_view(token)
    done = ("Approved." if approve else "Denied.") + " " + (fresh.decided or "")
    return render("approval.html", can_decide=False, problem=None,
                  **fresh.context(decided=done))


# -- audit -----------------------------------------------------------------------------

@bp.get("/audit")
@page_login_required
def audit() -> Response:
    try:
        f = parse_query(AuditQuery).filter(limit=PAGE)
    except ApiError as exc:
        return _bad_query(exc)
    since_raw = (request.args.get("since") or "").strip()
    until_raw = (request.args.get("until") or "").strip()
    store = services().store
    with store.unit(write=False) as uow:
        entries = uow.audit.query(f)
    next_url = None
    if len(entries) == PAGE:
        next_url = page_link("pages.audit", AuditQuery, after=entries[-1].seq)
    return render("audit.html", entries=entries, f=f, since_raw=since_raw,
                  until_raw=until_raw, next_url=next_url, chain=store.verify_audit())
