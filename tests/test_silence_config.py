"""A rule's ``silence`` option: what the config accepts, and every refusal with its path."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from receiver.config import ConfigError, parse_config
from receiver.remediation.urls import check_url
from tests.engine_kit import FakeAction

REGISTRY = {"fake_action": FakeAction()}
ALLOWED = ["127.0.0.1:9093", "am-*.example:9093"]


def config_with(silence: Any, **rule_over: Any) -> Any:
    rule = {"name": "poke", "matchers": ['alertname="AppDown"'], "playbook": "fake_action",
            "params": {"target": "{{ labels.container }}"}, "silence": silence, **rule_over}
    return parse_config({"data_dir": "/tmp/remediator-test-data", "rules": [rule],
                         "targets": {"http": {"hosts": ALLOWED}}}, registry=REGISTRY)


def problems(silence: Any, **rule_over: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        config_with(silence, **rule_over)
    return dict(err.value.problems)


def test_one_url_or_several_with_a_default_duration() -> None:
    """A single URL is a list of one; ``for`` defaults to 15m; a trailing slash is dropped."""
    one = config_with({"alertmanager": "http://127.0.0.1:9093/"}).rules[0].silence
    assert one.alertmanager == ["http://127.0.0.1:9093"] and one.for_ == timedelta(minutes=15)
    pair = config_with({"alertmanager": ["http://am-1.example:9093", "http://am-2.example:9093"],
                        "for": "30m", "comment": "remediator is on it"}).rules[0].silence
    assert pair.alertmanager == ["http://am-1.example:9093", "http://am-2.example:9093"]
    assert pair.for_ == timedelta(minutes=30) and pair.comment == "remediator is on it"


@pytest.mark.parametrize(("silence", "path", "says"), [
    ({"alertmanager": "http://{{ labels.am }}:9093"}, "rules[0].silence.alertmanager[0]",
     "literal"),
    ({"alertmanager": ["http://127.0.0.1:9093", "http://127.0.0.1:9093/{{ labels.x }}"]},
     "rules[0].silence.alertmanager[1]", "literal"),
    ({"alertmanager": "http://10.0.0.1:9093"}, "rules[0].silence.alertmanager[0]",
     "targets.http.hosts"),
    ({"alertmanager": "ftp://127.0.0.1:9093"}, "rules[0].silence.alertmanager[0]", "http"),
    ({"alertmanager": "http://u:secret@127.0.0.1:9093"}, "rules[0].silence.alertmanager[0]",
     "user:password"),
    ({"alertmanager": "http://127.0.0.1:9093/?x=1"}, "rules[0].silence.alertmanager[0]",
     "query"),
    ({"alertmanager": "http://127.0.0.1:99999"}, "rules[0].silence.alertmanager[0]", "Port out of range"),
    ({"alertmanager": []}, "rules[0].silence.alertmanager", "at least 1"),
    ({"alertmanager": ["http://127.0.0.1:9093", "http://127.0.0.1:9093/"]},
     "rules[0].silence.alertmanager", "twice"),
    ({"alertmanager": "http://127.0.0.1:9093", "for": "30s"}, "rules[0].silence.for", "1m"),
    ({"alertmanager": "http://127.0.0.1:9093", "for": "2d"}, "rules[0].silence.for", "24h"),
    ({"alertmanager": "http://127.0.0.1:9093", "for": "soon"}, "rules[0].silence.for",
     "invalid duration"),
    ({"alertmanager": "http://127.0.0.1:9093", "comment": "x" * 501},
     "rules[0].silence.comment", "500"),
    ({"alertmanager": "http://127.0.0.1:9093", "matchers": ["a=b"]},
     "rules[0].silence.matchers", "Extra inputs"),
    ({}, "rules[0].silence.alertmanager", "required"),
])
def test_bad_values_are_refused_with_their_path(silence: dict[str, Any], path: str,
                                                says: str) -> None:
    """Each bad value is refused at load, naming its field."""
    found = problems(silence)
    assert path in found, found
    assert says in found[path]


def test_a_silence_needs_an_alert_scoped_rule() -> None:
    """An incident's job has no alert whose labels a silence could match."""
    found = problems({"alertmanager": "http://127.0.0.1:9093"}, scope="incident")
    assert "silence needs scope: alert" in found["rules[0]"]


class _Allow:
    def allows(self, host: str, port: int) -> bool:
        from receiver.remediation.targets import HttpTargets

        return HttpTargets(hosts=ALLOWED).allows(host, port)


URL_PARTS = st.sampled_from(["http://", "https://", "127.0.0.1", ":9093", "am-1.example",
                             "{{ labels.x }}", "@", "/", "?", "#", "%2F", " ", "\n", "[::1]",
                             ":", "evil.example", "\\", "{%", "}}"])


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(st.lists(URL_PARTS, min_size=1, max_size=8).map("".join),
                     st.text(max_size=40)))
@example(url="http://http://")  # shrunk: an empty port after a bare name
@example(url="http://127.0.0.1:9093@evil.example")
@example(url="http://evil.example#@127.0.0.1:9093")
@example(url="http://127.0.0.1:9093\\@evil.example")
def test_an_accepted_alertmanager_url_is_literal_and_allowed(url: str) -> None:
    """Whatever URL is written, the config either refuses it or holds a literal http(s)
    URL whose host:port the allowlist holds (and that a call would pass)."""
    try:
        spec = config_with({"alertmanager": url}).rules[0].silence
    except ConfigError:
        return
    [kept] = spec.alertmanager
    assert "{{" not in kept and "{%" not in kept
    check_url(kept + "/api/v2/silences", _Allow())
