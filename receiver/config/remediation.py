"""The ``remediation`` section: the global switches and guards of automatic remediation."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from receiver.config.section import Section
from receiver.config.windows import MaintenanceWindow
from receiver.durations import Duration
from receiver.remediation.rules import RateBudget


class RemediationConfig(Section):
    enabled: bool = True
    dry_run: bool = Field(default=False, description="shadow mode: record plans, touch nothing")
    lease: Duration = timedelta(seconds=60)
    poll_interval: Duration = timedelta(seconds=2)
    rate_budget: RateBudget | None = Field(
        default_factory=lambda: RateBudget(max=30, per=timedelta(hours=1))
    )
    max_targets_per_window: int | None = Field(default=50, ge=1)
    targets_window: Duration = timedelta(hours=1)
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    max_chain_depth: int = Field(default=3, ge=0, le=10)
