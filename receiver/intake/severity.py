"""Severity: label matchers -> P0..P3, the severity label's default mapping, breadth bump.

Rules are evaluated in order and the first that matches wins. With no rule matching, the
alert's ``severity`` label is looked up in the default mapping. An incident's severity is
the most severe of its alerts, raised one level when a group has at least
``breadth.min_instances`` distinct instances firing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from receiver.intake.matchers import CompiledMatch, MatchSpec


class Severity(enum.StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        """0 is the most severe."""
        return int(self.value[1])

    def raised(self) -> Severity:
        return Severity(f"P{max(self.rank - 1, 0)}")


def most_severe(values: Iterable[Severity]) -> Severity:
    return min(values, key=lambda s: s.rank)


DEFAULT_LABEL_MAP: dict[str, Severity] = {
    "page": Severity.P1,
    "critical": Severity.P1,
    "error": Severity.P2,
    "warning": Severity.P2,
    "ticket": Severity.P3,
    "info": Severity.P3,
    "none": Severity.P3,
}


class SeverityRule(MatchSpec):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: Severity
    name: str = ""


class BreadthBump(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_instances: int = Field(ge=2, le=100000)
    label: str = "instance"


class SeverityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[SeverityRule] = Field(default_factory=list)
    label: str = "severity"
    label_map: dict[str, Severity] = Field(default_factory=lambda: dict(DEFAULT_LABEL_MAP))
    unknown: Severity = Severity.P2
    unset: Severity = Severity.P3
    breadth: BreadthBump | None = None


@dataclass(frozen=True)
class Classification:
    severity: Severity
    reason: str


class SeverityMapper:
    """Compiled severity rules."""

    def __init__(self, config: SeverityConfig) -> None:
        self.config = config
        compiled = [(CompiledMatch(r), r) for r in config.rules]
        # each rule with the reason it gives, built once
        self._rules = [(match, Classification(
            rule.severity, f"{rule.name or f'severity.rules[{index}]'} {match.describe()}"))
            for index, (match, rule) in enumerate(compiled)]
        self._label_map = {k.lower(): v for k, v in config.label_map.items()}

    def classify(self, labels: dict[str, str]) -> Classification:
        for match, classification in self._rules:
            if match(labels):
                return classification
        raw = labels.get(self.config.label)
        if raw is None or raw == "":
            return Classification(self.config.unset, f"no {self.config.label} label")
        mapped = self._label_map.get(raw.lower())
        if mapped is None:
            return Classification(self.config.unknown, f"unknown {self.config.label}={raw!r}")
        return Classification(mapped, f"{self.config.label}={raw}")

    def breadth_bump(self, severity: Severity, firing_labels: Iterable[dict[str, str]]) -> bool:
        """Whether enough distinct instances fire in one group to raise the severity."""
        breadth = self.config.breadth
        if breadth is None or severity is Severity.P0:
            return False
        instances = {lbl[breadth.label] for lbl in firing_labels if breadth.label in lbl}
        return len(instances) >= breadth.min_instances
