"""Read-only git: the last commits of a local repository, for the ``deploys`` diagnostic.

``git`` runs as an argv list (never a shell) with a timeout, no stdin, a scrubbed
environment (no user or system config, no pager, no prompts) and the repository path from
the config only; nothing from an alert reaches its command line.
"""

from __future__ import annotations

import shutil
import subprocess  # argv lists only, never a shell: see GitLog.commits
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from receiver.errors import AdapterError

OUTPUT_BYTES = 64 * 1024
SUBJECT_CHARS = 200


@dataclass(frozen=True)
class Commit:
    sha: str
    at: datetime | None
    subject: str

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat() if self.at else None
        return out


def _env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_OPTIONAL_LOCKS": "0"}


class GitLog:
    """``git log --oneline -N`` of one repository, with each commit's committer time."""

    def __init__(self, path: str, *, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def argv(self, n: int) -> list[str]:
        """What runs: the one-line log (abbreviated hash, subject) plus the commit time."""
        git = shutil.which("git", path=_env()["PATH"]) or "git"
        return [git, "-C", self.path, "--no-pager", "log", "--no-color", f"-{int(n)}",
                "--format=%h%x09%cI%x09%s", "--"]

    def commits(self, n: int) -> list[Commit]:
        try:
            proc = subprocess.run(  # noqa: S603 - an argv list of config values, no shell
                self.argv(n), capture_output=True, timeout=self.timeout_s, env=_env(),
                stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AdapterError(f"git log in {self.path}: no answer within "
                               f"{self.timeout_s:g}s") from exc
        except OSError as exc:
            raise AdapterError(f"git log in {self.path}: {exc.strerror or exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise AdapterError(f"git log in {self.path}: "
                               f"{(err[-1] if err else 'exit ' + str(proc.returncode))[:300]}")
        out = []
        for line in proc.stdout[:OUTPUT_BYTES].decode("utf-8", "replace").splitlines():
            sha, _, rest = line.partition("\t")
            at, _, subject = rest.partition("\t")
            try:
                when: datetime | None = datetime.fromisoformat(at)
            except ValueError:
                when = None
            out.append(Commit(sha[:40], when, subject[:SUBJECT_CHARS]))
        return out
