"""The webhook payload models: what Alertmanager sends is accepted, and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from receiver.intake.alertmanager import NUL_REPLACEMENT, Notification, label_fingerprint
from tests.factories import make_alert, make_notification


def parse(body: dict) -> Notification:
    return Notification.model_validate_json(json.dumps(body))


def test_nanosecond_timestamps_with_offsets_are_parsed() -> None:
    """RFC3339 times with nanoseconds and a zone offset become aware datetimes."""
    n = parse(make_notification([make_alert(starts_at="2026-01-01T14:00:00.123456789+02:00")]))
    assert n.alerts[0].starts_at == datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_zero_ends_at_of_a_firing_alert_is_none() -> None:
    """Alertmanager's zero time 0001-01-01T00:00:00Z means 'no end' and becomes None."""
    n = parse(make_notification([make_alert()]))
    assert n.alerts[0].ends_at is None


def test_timestamps_without_zone_are_refused() -> None:
    """A timestamp without a zone is ambiguous and is refused."""
    with pytest.raises(ValidationError) as err:
        parse(make_notification([make_alert(starts_at="2026-01-01T12:00:00")]))
    assert err.value.errors()[0]["loc"] == ("alerts", 0, "startsAt")


def test_every_field_of_recent_alertmanager_versions_is_read() -> None:
    """truncatedAlerts, notification_reason and routeLabels are parsed; unknown fields pass."""
    body = make_notification(
        truncatedAlerts=3,
        notification_reason="new_alerts",
        routeLabels={"team": "db"},
        someFutureField={"x": 1},
    )
    n = parse(body)
    assert (n.truncated_alerts, n.notification_reason, n.route_labels) == (3, "new_alerts", {"team": "db"})


def test_missing_fingerprint_is_recomputed_from_labels() -> None:
    """An absent or malformed fingerprint is replaced by the label-set fingerprint."""
    a = make_alert(fingerprint="not-hex!")
    n = parse(make_notification([a]))
    assert n.alerts[0].fingerprint == label_fingerprint(a["labels"])
    assert len(n.alerts[0].fingerprint) == 16


def test_given_fingerprint_is_kept() -> None:
    """A well-formed fingerprint from Alertmanager is used as sent."""
    n = parse(make_notification([make_alert(fingerprint="0123456789abcdef")]))
    assert n.alerts[0].fingerprint == "0123456789abcdef"


def test_fingerprint_is_independent_of_label_order() -> None:
    """The fingerprint depends on the label set, not on the order of its keys."""
    assert label_fingerprint({"a": "1", "b": "2"}) == label_fingerprint({"b": "2", "a": "1"})
    assert label_fingerprint({"a": "1", "b": "2"}) != label_fingerprint({"a": "1", "b": "3"})


def test_fingerprint_matches_alertmanager_for_known_label_set() -> None:
    """FNV-1a over sorted pairs gives the value a real Alertmanager 0.25 reported."""
    labels = {"alertname": "AppDown", "severity": "critical", "container": "web1",
              "weird": 'a"b;$(reboot) \u00fc'}
    assert label_fingerprint(labels) == "908c4fb7b0b7fbd9"  # from GET /api/v2/alerts
    assert label_fingerprint({}) == "cbf29ce484222325"  # the FNV-64 offset basis
    assert label_fingerprint({"a": "b"}) != label_fingerprint({"ab": ""})  # separator matters


@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_nul_in_a_label_value_becomes_a_replacement_character(value: str) -> None:
    """NUL is valid in a Prometheus label but PostgreSQL text cannot hold it: it becomes
    U+FFFD, after the fingerprint was computed from the value with its NUL."""
    alert = make_alert(labels={"x": value})
    parsed = parse(make_notification([alert])).alerts[0]
    assert parsed.labels["x"] == value.replace("\x00", NUL_REPLACEMENT)
    assert parsed.fingerprint == label_fingerprint(alert["labels"])


def test_label_sets_are_not_bounded_by_count() -> None:
    """Prometheus does not bound the number of labels (label_limit is 0 by default), so
    neither does the model: the webhook's body cap is the only bound."""
    labels = {f"l{i}": "v" for i in range(300)}
    assert len(parse(make_notification([make_alert(labels=labels)])).alerts[0].labels) == 303


def test_version_3_is_refused() -> None:
    """Only the v4 payload is understood."""
    with pytest.raises(ValidationError):
        parse(make_notification(version="3"))


def test_alerts_are_sorted_for_a_stable_lock_order() -> None:
    """Alerts are processed in fingerprint order, whatever order they arrived in."""
    alerts = [make_alert(labels={"instance": f"h{i}"}) for i in range(5)]
    n = parse(make_notification(list(reversed(alerts))))
    fps = [a.fingerprint for a in n.alerts]
    assert fps == sorted(fps)
