"""What a diagnostic check found: its outcome, summary and detail, and when it ran."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Outcome = Literal["ok", "failed", "error", "timeout", "refused"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "failed", "error", "timeout", "refused")


@dataclass(frozen=True)
class Finding:
    """What one check found."""

    outcome: Outcome
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    finding: Finding
    started_at: datetime
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.finding.outcome == "ok"
