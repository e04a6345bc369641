"""A real git repository made by a test (the ``deploys`` diagnostic reads its log)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_git_repo(path: Path, subjects: list[str]) -> list[str]:
    """A repository at ``path`` with one commit per subject, in order; the subjects, newest
    first (as ``git log`` shows them)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(path), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True, env=env)  # noqa: S603, S607
    for i, subject in enumerate(subjects):
        (path / "f.txt").write_text(str(i), encoding="utf-8")
        for argv in (["git", "-C", str(path), "add", "f.txt"],
                     ["git", "-C", str(path), "commit", "-q", "-m", subject]):
            subprocess.run(argv, check=True, env=env)  # noqa: S603 - test-made argv
    return subjects[::-1]
