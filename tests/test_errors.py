"""The exception tree: every error has a code and an HTTP status, the drawing in
receiver/errors.py is the real tree, and the two handlers of receiver/web/errors.py answer
an error the same way on the API and, for a browser, as the error page."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import playbooks
import receiver
from receiver import errors
from receiver.app import create_app
from receiver.errors import (
    ActionError,
    DecisionError,
    InvalidTransition,
    RemediatorError,
    StoreUnavailable,
    TokenError,
)
from receiver.web.errors import json_error, page_error
from tests.conftest import OP_TOKEN, PASSWORD, TOKEN, Clock, people
from tests.engine_kit import Kit
from tests.factories import make_alert, make_notification
from tests.test_pages import csrf, login

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CODE = re.compile(r"^[a-z][a-z_]*[a-z]$")
# One drawn node: "├── Name   code   status  what it means" (the root has no branch).
NODE = re.compile(r"^(?P<indent>(?:[│ ] {3})*)(?:[├└]── )?(?P<name>[A-Z]\w+)\s+"
                  r"(?P<code>[a-z_]+)\s+(?P<status>\d{3})\s")


def _all_error_classes() -> set[type[RemediatorError]]:
    """Every RemediatorError subclass defined in the product, after importing all of it."""
    for package in (receiver, playbooks):
        for mod in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not mod.name.endswith("__main__"):
                importlib.import_module(mod.name)
    found: set[type[RemediatorError]] = set()
    todo: list[type[RemediatorError]] = [RemediatorError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] in ("receiver", "playbooks") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def _drawn_tree() -> dict[str, tuple[str | None, str, int]]:
    """``name -> (parent name, code, status)`` as drawn in receiver/errors.py's docstring."""
    drawn: dict[str, tuple[str | None, str, int]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        m = NODE.match(line.removeprefix("    "))
        if m is None or not line.startswith("    "):
            continue
        depth = len(m["indent"]) // 4 + (0 if m["name"] == "RemediatorError" else 1)
        del parents[depth:]
        drawn[m["name"]] = (parents[-1] if parents else None, m["code"], int(m["status"]))
        parents.append(m["name"])
    return drawn


def _parent(cls: type[RemediatorError]) -> str | None:
    bases = [b for b in cls.__bases__ if issubclass(b, RemediatorError)]
    return bases[0].__name__ if bases else None


def test_every_error_has_a_code_and_an_http_error_status() -> None:
    """Each RemediatorError subclass anywhere in the product has a machine-readable code
    and a 4xx or 5xx status."""
    classes = _all_error_classes()
    assert len(classes) >= 16, sorted(c.__name__ for c in classes)
    for cls in classes:
        assert isinstance(cls.code, str) and CODE.match(cls.code), cls
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, cls


def test_the_docstring_draws_the_real_tree() -> None:
    """The drawing in receiver/errors.py names every class with its parent, code and
    status, and nothing else, so it cannot go stale."""
    drawn = _drawn_tree()
    real = {cls.__name__: (_parent(cls), cls.code, cls.status) for cls in _all_error_classes()}
    assert drawn == real


def test_every_error_class_lives_in_receiver_errors() -> None:
    """The tree is in one module; the old import paths still name the same classes."""
    from receiver.adapters import http
    from receiver.audit.checkpoints import AuditKeyMissing
    from receiver.comms import notify
    from receiver.incidents import lifecycle
    from receiver.people import approvals, tokens
    from receiver.remediation import rules
    from receiver.store import db
    from receiver.web import errors as web_errors

    assert {c.__module__ for c in _all_error_classes()} == {"receiver.errors"}
    assert approvals.DecisionError is DecisionError and tokens.TokenError is TokenError
    assert lifecycle.ActionError is ActionError and lifecycle.InvalidTransition is InvalidTransition
    assert notify.DeliveryFailed is errors.DeliveryFailed
    assert rules.TemplateError is errors.TemplateError and issubclass(rules.TemplateError, ValueError)
    assert http.RedirectRefused is errors.RedirectRefused
    assert db.StoreConflict is errors.StoreConflict
    assert web_errors.ApiError is errors.ApiError
    assert AuditKeyMissing is errors.AuditKeyMissing and issubclass(AuditKeyMissing, RuntimeError)


@pytest.mark.parametrize(("exc", "status"), [
    (DecisionError("not_found", "no job 7"), 404),
    (DecisionError("not_allowed", "bob is not in dba"), 403),
    (DecisionError("expired", "expired"), 409),
    (DecisionError("already_voted", "twice"), 409),
    (TokenError("invalid_token", "not valid"), 403),
    (TokenError("expired", "expired at"), 410),
    (ActionError("invalid", "text is required", 400), 400),
    (InvalidTransition("an incident cannot go from closed to open"), 409),
])
def test_an_instance_code_sets_its_status(exc: RemediatorError, status: int) -> None:
    """Where the code varies per case, the status follows the code."""
    assert exc.status == status


@pytest.fixture
def app(store: Any, clock: Clock, tmp_path: Path) -> Any:
    # No failed-login limits: the generated logins below are each checked, never a 429.
    who = people() | {"login_limits": {"user_failures": 0, "address_failures": 0}}
    kit = Kit(store, clock, [], people=who, auth={"bearer_token": "env:REMEDIATOR_TEST_TOKEN"},
              data_dir=str(tmp_path / "data"), server={"secure_cookies": False})
    return create_app(kit.config, store=store, clock=clock)


def test_a_store_outage_never_shows_its_message(app: Any) -> None:
    """A 5xx answers a fixed detail (JSON and page), with Retry-After; the message, which
    may name hosts and paths, is not in the answer."""
    secret = "postgresql://remediator@db.internal:5432 refused"
    with app.test_request_context("/api/v1/incidents"):
        r = json_error(StoreUnavailable(secret))
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.get_json() == {"error": "store_unavailable",
                                "detail": "the store cannot be reached; retry"}
    with app.test_request_context("/incidents", headers={"Accept": BROWSER_ACCEPT}):
        r = page_error(StoreUnavailable(secret))
        body = r.get_data(as_text=True)
        assert r.status_code == 503 and r.mimetype == "text/html"
        assert r.headers["Retry-After"] == "5"
        assert "store_unavailable" in body and "db.internal" not in body


def test_a_browser_gets_the_error_page_and_other_clients_json(app: Any) -> None:
    """A page form post with a bad CSRF token: a browser gets the error page with 400 and
    the code; a client that does not ask for HTML gets the JSON answer, as before."""
    c = app.test_client()
    r = c.post("/login", data={"username": "alice", "password": PASSWORD,
                               "csrf_token": "forged"}, headers={"Accept": BROWSER_ACCEPT})
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and r.mimetype == "text/html", body
    assert "csrf_failed" in body and "reload the page" in body and "<h1>Bad Request</h1>" in body
    r = c.post("/login", data={"username": "alice", "password": PASSWORD,
                               "csrf_token": "forged"})
    assert r.status_code == 400 and r.get_json()["error"] == "csrf_failed"
    r = c.post("/login", data={"csrf_token": "forged"}, headers={"Accept": "application/json"})
    assert r.status_code == 400 and r.get_json()["error"] == "csrf_failed"


def test_a_transition_the_table_forbids_is_invalid_transition(app: Any) -> None:
    """Closing an open incident is refused by the incident state table itself
    (InvalidTransition, an ActionError): 409 ``invalid_transition`` on the API, the incident
    page with the reason on the page."""
    from receiver.incidents import lifecycle

    c = app.test_client()
    r = c.post("/api/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"},
               json=make_notification([make_alert(labels={"severity": "warning"})]))
    inc = r.get_json()["incident_id"]
    svc = app.extensions["remediator"]
    with pytest.raises(InvalidTransition):
        lifecycle.act(svc.store, svc.config, inc, "close", user="alice", now=svc.intake.clock())
    r = c.post(f"/api/v1/incidents/{inc}/actions", json={"action": "close"},
               headers={"Authorization": f"Bearer {OP_TOKEN}"})
    assert r.status_code == 409 and r.get_json() == {
        "error": "invalid_transition", "detail": "an incident cannot go from open to closed"}
    assert login(c).status_code == 302
    r = c.post(f"/incidents/{inc}/action",
               data={"action": "close", "csrf_token": csrf(c, f"/incidents/{inc}")})
    assert r.status_code == 409
    assert "an incident cannot go from open to closed" in r.get_data(as_text=True)


LOGIN_TEXT = st.text(st.characters(codec="utf-8"), max_size=300)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=LOGIN_TEXT, password=LOGIN_TEXT)
def test_any_login_form_text_is_a_plain_refusal(app: Any, user: str, password: str) -> None:
    """The login form's model takes any text (unicode, NUL, very long): a wrong name or
    password is 401 with the login form, never a 400 or a 5xx."""
    from receiver.web.requests import MAX_LOGIN_NAME, LoginForm

    form = LoginForm.model_validate({"username": user, "password": password})
    assert (form.username, form.password) == (user[:MAX_LOGIN_NAME], password)
    c = app.test_client()
    token = csrf(c, "/login")
    r = c.post("/login", data={"username": user, "password": password, "csrf_token": token})
    assert r.status_code == 401, (r.status_code, r.get_data(as_text=True)[:300])
    assert "Wrong user or password." in r.get_data(as_text=True)


def test_a_long_login_name_is_cut_to_its_bound(app: Any) -> None:
    """A user name past 100 characters is cut before it is checked (and audited)."""
    from receiver.web.requests import MAX_LOGIN_NAME, LoginForm

    assert LoginForm(username="a" * 500).username == "a" * MAX_LOGIN_NAME
    assert login(app.test_client(), "alice").status_code == 302
