"""One exception tree for the whole service, mapped to HTTP in one place (web/errors.py).

    RemediatorError
    ├── ConfigError            bad remediator.yml; carries the path of each bad field
    ├── StoreError
    │   └── StoreUnavailable   the store cannot be reached now (HTTP 503, retry later)
    ├── TargetNotAllowed       a playbook parameter names something the allowlist does not
    ├── PlaybookError          a playbook failed while acting on a real system
    │   └── AdapterError       the adapter's client failed (daemon down, connection refused)
    └── InvalidTransition      a state change that the state table forbids
"""

from __future__ import annotations


class RemediatorError(Exception):
    """Base of every error raised on purpose by remediator."""


class ConfigError(RemediatorError):
    """The configuration is invalid; ``problems`` lists ``(path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {path}: {msg}" for path, msg in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class StoreError(RemediatorError):
    """The store failed in a way that retrying will not fix."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller should answer 503 and let the sender retry."""


class TargetNotAllowed(RemediatorError):
    """A parameter names a target that the configured allowlist does not contain."""


class PlaybookError(RemediatorError):
    """A playbook could not complete its action."""


class AdapterError(PlaybookError):
    """The client of a real system failed (daemon down, connection refused, timeout)."""


class InvalidTransition(RemediatorError):
    """A state change that the transition table does not allow."""
