"""One exception tree for the whole service, mapped to HTTP in one place (web/errors.py).

Every class has a machine-readable ``code`` and the HTTP ``status`` it is answered with
(columns two and three below); a class whose code depends on the case sets both per
instance (listed under the tree). The JSON API and the webhook answer ``{"error": code,
"detail": ...}`` with that status, pages the error page. A 5xx never shows its message
to the client: its detail is a fixed text and the message goes to the server log.

    RemediatorError              internal_error      500  raised on purpose by remediator
    ├── ConfigError              invalid_config      500  bad remediator.yml, path per field
    ├── AuditKeyMissing          audit_key_missing   500  no audit key set or in data_dir
    ├── StoreError               store_error         503  the store failed
    │   └── StoreUnavailable     store_unavailable   503  not reachable now (Retry-After)
    │       └── StoreConflict    store_unavailable   503  deadlock victim: run it again
    ├── TargetNotAllowed         target_not_allowed  403  a target outside the allowlist
    │   └── RedirectRefused      redirect_refused    403  a redirect leads outside it
    ├── TemplateError            template_error      422  the alert lacks a label it names
    ├── PlaybookError            playbook_failed     502  a playbook's action failed
    │   └── AdapterError         adapter_failed      502  a real system's client failed
    ├── DeliveryFailed           delivery_failed     502  a channel refused a message
    ├── ActionError              conflict            409  an incident action is refused
    │   └── InvalidTransition    invalid_transition  409  the state table forbids it
    ├── DecisionError            not_waiting         409  an approval decision is refused
    ├── TokenError               invalid_token       403  an approval link is refused
    └── ApiError                 bad_request         400  the HTTP request itself is bad

Codes set per instance:

- ActionError: ``not_found`` 404, ``invalid`` 400, ``conflict``,
  ``postmortem_required``, ``not_undoable`` and ``already_undone`` (an undo) 409;
- DecisionError: ``not_found`` 404, ``not_allowed`` 403, ``not_waiting``, ``expired`` and
  ``already_voted`` 409;
- TokenError: ``invalid_token`` 403, ``expired`` 410;
- ApiError: any code and status of the web layer (``unauthorized`` 401, ``forbidden`` and
  ``cross_site_request`` 403, ``csrf_failed``, ``invalid_json``, ``invalid_payload``,
  ``invalid_form`` and ``invalid_query`` 400, ``not_found`` 404, ``payload_too_large`` 413,
  ``unsupported_media_type`` 415), with its own detail and headers.

TemplateError is also a ValueError and AuditKeyMissing a RuntimeError, as callers that
catch those expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

NO_HEADERS: Mapping[str, str] = MappingProxyType({})
INTERNAL_DETAIL = "unexpected error; see the server log"


class RemediatorError(Exception):
    """Base of every error raised on purpose by remediator."""

    code: str = "internal_error"
    """Machine-readable, the ``error`` of a JSON answer."""
    status: int = 500
    """The HTTP status it is answered with."""
    headers: Mapping[str, str] = NO_HEADERS
    """Headers of that answer (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(self, message: str = "", *, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def public_detail(self) -> Any:
        """The ``detail`` a client is told: the message of a 4xx; for a 5xx a fixed text
        (the message may name internals: hosts, paths, SQL)."""
        return str(self) if self.status < 500 else INTERNAL_DETAIL


# -- configuration -----------------------------------------------------------------------

class ConfigError(RemediatorError):
    """The configuration is invalid; ``problems`` lists ``(path, message)`` pairs."""

    code = "invalid_config"

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class AuditKeyMissing(RemediatorError, RuntimeError):
    """No audit key is configured and none exists in the data dir (verify never creates one)."""

    code = "audit_key_missing"


# -- the store ---------------------------------------------------------------------------

class StoreError(RemediatorError):
    """The store failed in a way that retrying will not fix."""

    code = "store_error"
    status = 503

    def public_detail(self) -> Any:
        return "the store failed; retry"


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller should answer 503 and let the sender retry."""

    code = "store_unavailable"
    headers = MappingProxyType({"Retry-After": "5"})

    def public_detail(self) -> Any:
        return "the store cannot be reached; retry"


class StoreConflict(StoreUnavailable):
    """The database gave up on this transaction to let a concurrent one finish (deadlock
    victim, serialization failure): running it again is expected to succeed."""


# -- acting on real systems --------------------------------------------------------------

class TargetNotAllowed(RemediatorError):
    """A parameter names a target that the configured allowlist does not contain."""

    code = "target_not_allowed"
    status = 403


class RedirectRefused(TargetNotAllowed):
    """A redirect led outside the allowlist; carries the redirect's HTTP status and the hops."""

    code = "redirect_refused"

    def __init__(self, reason: str, redirect_status: int, redirects: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.redirect_status = redirect_status
        self.redirects = redirects


class TemplateError(RemediatorError, ValueError):
    """A rule param refers to a label or annotation the alert does not carry."""

    code = "template_error"
    status = 422


class PlaybookError(RemediatorError):
    """A playbook could not complete its action."""

    code = "playbook_failed"
    status = 502


class AdapterError(PlaybookError):
    """The client of a real system failed (daemon down, connection refused, timeout)."""

    code = "adapter_failed"


class DeliveryFailed(RemediatorError):
    """A channel did not take a message. The text names why and holds no secret."""

    code = "delivery_failed"
    status = 502
    retry_after: float | None = None
    """Seconds the server asked us to wait before the next try (HTTP Retry-After), if any."""


# -- refused requests of people and clients ----------------------------------------------

class ActionError(RemediatorError):
    """An action on an incident is refused; ``code`` says why, the message says it to a
    person (``not_found`` 404, ``invalid`` 400, otherwise 409)."""

    code = "conflict"
    status = 409

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message, code=code, status=status)


class InvalidTransition(ActionError):
    """A state change that the transition table does not allow."""

    code = "invalid_transition"

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


_DECISION_STATUS = {"not_found": 404, "not_allowed": 403}


class DecisionError(RemediatorError):
    """A decision that is refused; ``code`` is machine-readable, the message human."""

    code = "not_waiting"
    status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code, status=_DECISION_STATUS.get(code, 409))


class TokenError(RemediatorError):
    """An approval link that is refused: ``invalid_token`` (403) or ``expired`` (410)."""

    code = "invalid_token"
    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code, status=403 if code == "invalid_token" else 410)


class ApiError(RemediatorError):
    """The HTTP request itself is refused (credentials, CSRF, origin, body, query), with
    the status, code, detail and headers to answer."""

    code = "bad_request"
    status = 400

    def __init__(self, status: int, code: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, code=code, status=status)
        self.detail = detail
        self.headers = headers or {}

    def public_detail(self) -> Any:
        return self.detail
