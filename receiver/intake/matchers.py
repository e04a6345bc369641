"""Alertmanager-style label matchers: ``=``, ``!=``, ``=~``, ``!~``.

As in Alertmanager, regexes are anchored at both ends and a missing label matches as the
empty string, so ``team!~".+"`` matches alerts without a ``team`` label. The three config
spellings Alertmanager accepts are supported: ``match`` (equality map), ``match_re``
(regex map) and ``matchers`` (a list of ``name<op>"value"`` strings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

_MATCHER = re.compile(r'^\s*([^\s=!~{}"]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)
_OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_re", re.compile(f"^(?:{self.value})$", re.DOTALL))
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from exc

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._re.match(actual) is not None  # type: ignore[attr-defined]
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """Parse ``name="value"``, ``name=~"re"``, ``name!=value`` (quotes optional)."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"cannot parse matcher {text!r}; expected name=\"value\"")
    name, op, raw = m.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return Matcher(name, op, raw)


class MatchSpec(BaseModel):
    """The matcher block of a rule. All matchers must match (logical AND)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    matchers: list[str] = Field(default_factory=list)

    @field_validator("match_re")
    @classmethod
    def _valid_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            Matcher(name, "=~", pattern)
        return value

    @field_validator("matchers")
    @classmethod
    def _valid_matchers(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_matcher(text)
        return value

    def compiled(self) -> list[Matcher]:
        out = [Matcher(k, "=", v) for k, v in self.match.items()]
        out += [Matcher(k, "=~", v) for k, v in self.match_re.items()]
        out += [parse_matcher(t) for t in self.matchers]
        return out


class CompiledMatch:
    """A :class:`MatchSpec` compiled once, for the hot path."""

    __slots__ = ("matchers", "_described")

    def __init__(self, spec: MatchSpec) -> None:
        self.matchers = spec.compiled()
        self._described = "{" + ", ".join(str(m) for m in self.matchers) + "}"

    def __call__(self, labels: dict[str, str]) -> bool:
        for m in self.matchers:  # a loop, not all(genexpr): this runs for every alert
            if not m.matches(labels):
                return False
        return True

    def describe(self) -> str:
        return self._described
