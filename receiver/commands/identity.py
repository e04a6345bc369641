"""Who runs a CLI command that decides or steers: the OS account, or an operator API token.

A name typed on the command line proves nothing, so ``--as`` never chooses the person.
The person is, in this order:

1. the owner of an operator API token handed to the CLI: ``--token env:NAME`` /
   ``--token file:/path``, or the token itself in ``REMEDIATOR_TOKEN`` (never on the
   command line, where ``ps`` would show it);
2. else the person the OS account maps to: the one whose ``people.users.<name>.os_user`` is
   the account's name, else the person of the same name (if not bound to another account).
   The account is the effective uid's entry in the password database, not ``$USER``.

``--as NAME`` is still accepted as a check: it must name that same person. The audit origin
records the OS account and host either way, and one OS account never counts as two
approvers of one job (see :func:`check_one_vote_per_account`).
"""

from __future__ import annotations

import hmac
import os
import pwd
import socket
from dataclasses import dataclass
from typing import Any

import click

from receiver.config import Config
from receiver.secrets import resolve_secret

TOKEN_ENV = "REMEDIATOR_TOKEN"  # noqa: S105 - the name of a variable, not a secret

TOKEN_OPTION = click.option(
    "--token",
    "token_ref",
    metavar="env:NAME|file:PATH",
    help=f"act as the owner of this operator API token (or set {TOKEN_ENV} to the token); "
    "default: the person your OS account maps to.",
)


@dataclass(frozen=True)
class CliActor:
    person: str | None
    """The configured person, or None for an OS account that maps to nobody."""
    os_user: str
    host: str
    token: str | None = None
    """The name of the API token used, if any (under ``people.api_tokens``)."""

    @property
    def actor(self) -> str:
        return f"user:{self.person}" if self.person else f"os:{self.os_user}"

    def origin(self) -> dict[str, Any]:
        # (not under a key named "token": the audit log redacts those)
        return {"via": "cli", "os_user": self.os_user, "host": self.host,
                "auth": f"api-token:{self.token}" if self.token else "os-account"}


def os_account() -> str:
    """The effective user's name from the password database (not ``$USER``/``$LOGNAME``,
    which the caller sets)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def _token_value(token_ref: str | None) -> str | None:
    if token_ref:
        try:
            return resolve_secret(token_ref).reveal()
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--token") from exc
    value = os.environ.get(TOKEN_ENV)
    return value if value else None


def resolve(config: Config, as_user: str | None, token_ref: str | None, *,
            allow_unmapped: bool = False) -> CliActor:
    """The person this command acts as; exits 2 (click usage error) when it cannot tell,
    or when ``--as`` names someone else."""
    os_user = os_account()
    host = socket.gethostname()[:100]
    value = _token_value(token_ref)
    if value is not None:
        matches = [(name, tok) for name, tok in config.people.api_tokens.items()
                   if hmac.compare_digest(value.encode(), tok.token.reveal().encode())]
        if not matches:
            raise click.UsageError("the API token given to the CLI is not one of "
                                   "people.api_tokens")
        name, tok = matches[0]
        if tok.scope != "operator":
            raise click.UsageError(f"the API token {name!r} is read-only; this command needs "
                                   "an operator token")
        actor = CliActor(tok.user, os_user, host, token=name)
    else:
        person = config.people.person_of_os_user(os_user)
        if person is None and not allow_unmapped:
            raise click.UsageError(
                f"the OS account {os_user!r} is not mapped to a configured person: set "
                f"people.users.<name>.os_user: {os_user}, or give an operator API token "
                f"(--token env:NAME or {TOKEN_ENV})")
        actor = CliActor(person, os_user, host)
    if as_user is not None and as_user != actor.person:
        who = actor.person or "nobody configured"
        how = f"API token {actor.token!r}" if actor.token else f"OS account {os_user!r}"
        raise click.UsageError(f"--as {as_user} does not match who you are: {who} ({how})")
    return actor


def check_one_vote_per_account(votes: list[dict[str, Any]], actor: CliActor) -> None:
    """Refuse when this OS account (on this host) already voted on the approval as another
    person, e.g. once through its own mapping and once with someone else's token."""
    for vote in votes:
        origin = vote.get("origin") or {}
        if (origin.get("via") == "cli" and origin.get("os_user") == actor.os_user
                and origin.get("host") == actor.host and vote.get("approver") != actor.person):
            raise click.ClickException(
                f"the OS account {actor.os_user!r} already voted on this job as "
                f"{vote.get('approver')}; one account counts as one approver")
