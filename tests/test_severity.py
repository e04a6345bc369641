"""Severity rules, the default label mapping, the breadth bump, and SLA deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from receiver.intake.engine import SlaClock
from receiver.intake.matchers import MatchSpec, parse_matcher
from receiver.intake.severity import Severity, SeverityConfig, SeverityMapper
from receiver.intake.sla import add_business_time
from tests.conftest import make_config


def mapper(**over: object) -> SeverityMapper:
    return SeverityMapper(SeverityConfig.model_validate(over))


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('alertname=~"Postgres.*"', {"alertname": "PostgresqlDown"}, True),
        ('alertname=~"Postgres"', {"alertname": "PostgresqlDown"}, False),  # anchored
        ('alertname!~"Redis.*"', {"alertname": "PostgresqlDown"}, True),
        ('team=""', {}, True),  # a missing label matches as the empty string
        ('team!~".+"', {}, True),
        ("job=node", {"job": "node"}, True),  # quotes optional
    ],
)
def test_matchers_follow_alertmanager_semantics(text: str, labels: dict, expected: bool) -> None:
    """Each operator behaves as in Alertmanager, with anchored regexes."""
    assert parse_matcher(text).matches(labels) is expected


def test_invalid_regex_is_refused_at_config_time() -> None:
    """A broken regex in match_re fails validation rather than at match time."""
    with pytest.raises(ValueError, match="invalid regex"):
        MatchSpec.model_validate({"match_re": {"alertname": "(unclosed"}})


@pytest.mark.parametrize(
    ("label", "expected"),
    [("critical", "P1"), ("CRITICAL", "P1"), ("page", "P1"), ("warning", "P2"),
     ("info", "P3"), ("none", "P3"), ("weird", "P2"), (None, "P3")],
)
def test_default_mapping_from_the_severity_label(label: str | None, expected: str) -> None:
    """Without rules, the severity label decides; unknown and unset values have defaults."""
    labels = {"alertname": "X"} | ({"severity": label} if label else {})
    assert mapper().classify(labels).severity == Severity(expected)


def test_rules_are_evaluated_in_order_and_first_match_wins() -> None:
    """An earlier rule wins over a later one and over the label mapping."""
    m = mapper(rules=[
        {"matchers": ['alertname=~".*Down"', 'severity="critical"'], "severity": "P0", "name": "outage"},
        {"match": {"severity": "critical"}, "severity": "P2"},
    ])
    c = m.classify({"alertname": "PostgresqlDown", "severity": "critical"})
    assert c.severity is Severity.P0 and "outage" in c.reason
    assert m.classify({"alertname": "HighLatency", "severity": "critical"}).severity is Severity.P2


def test_breadth_bump_needs_enough_distinct_instances() -> None:
    """N distinct instances firing raise the severity one level; N-1 do not."""
    m = mapper(breadth={"min_instances": 3})
    four = [{"instance": f"h{i}"} for i in range(3)]
    assert m.breadth_bump(Severity.P2, four) is True
    assert m.breadth_bump(Severity.P2, four[:2] + [{"instance": "h0"}]) is False
    assert Severity.P2.raised() is Severity.P1 and Severity.P0.raised() is Severity.P0


def test_sla_deadlines_follow_the_seed() -> None:
    """P0 15 min, P1 1 h, P2 4 h after opening."""
    sla = SlaClock(make_config())
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert sla.ack_due(Severity.P0, t) - t == timedelta(minutes=15)
    assert sla.ack_due(Severity.P1, t) - t == timedelta(hours=1)
    assert sla.ack_due(Severity.P2, t) - t == timedelta(hours=4)


def test_p3_friday_evening_is_due_monday_evening() -> None:
    """One business day opened after Friday's close runs all of Monday."""
    sla = SlaClock(make_config())  # Mon-Fri 09:00-17:00 UTC
    friday_evening = datetime(2026, 3, 6, 18, 30, tzinfo=UTC)
    assert sla.ack_due(Severity.P3, friday_evening) == datetime(2026, 3, 9, 17, 0, tzinfo=UTC)


def test_p3_mid_day_carries_into_the_next_business_day() -> None:
    """Opened Friday 13:00, eight business hours end Monday 13:00."""
    sla = SlaClock(make_config())
    assert sla.ack_due(Severity.P3, datetime(2026, 3, 6, 13, 0, tzinfo=UTC)) == datetime(
        2026, 3, 9, 13, 0, tzinfo=UTC
    )


def test_business_hours_use_the_configured_time_zone_across_dst() -> None:
    """Business hours in New York, across the March DST change, give local 09:00-17:00."""
    ny = ZoneInfo("America/New_York")
    start = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # Friday 18:00 EST
    due = add_business_time(start, timedelta(hours=8), tz=ny, days=frozenset(range(5)),
                            opens=time(9), closes=time(17))
    assert due.astimezone(ny).replace(tzinfo=None) == datetime(2026, 3, 9, 17, 0)  # Monday, EDT
    assert due == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)


def test_configured_time_zone_changes_the_deadline() -> None:
    """The same instant is due at different UTC times with different business time zones."""
    cfg = make_config(sla={"business_hours": {"timezone": "Asia/Tokyo"}})
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # Monday 19:00 in Tokyo: after close
    assert SlaClock(cfg).ack_due(Severity.P3, t) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
