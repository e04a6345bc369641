"""Label values stand in PromQL only as escaped string literals inside matcher values: the
template check at config load, the renderer's output as parsed by the PromQL string grammar,
and a real Prometheus (started by tests/test_diagnostics.py's fixture) reading the literals."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.config import parse_config
from receiver.diagnostics import list_evidence, run_due
from receiver.errors import ConfigError
from receiver.remediation.promql import (
    check_query_template,
    escape_regex,
    escape_string,
    render_query,
)
from receiver.remediation.rules import PromQLCheck
from receiver.remediation.targets import HttpTargets
from receiver.remediation.verification import promql_check
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification
from tests.test_diagnostics import prometheus  # noqa: F401 - the fixture

NO_SLEEP = lambda _s: None  # noqa: E731 - a test clock that does not wait
LOOPBACK = HttpTargets(hosts=["127.0.0.1:*"])
INJECTIONS = [
    '"} or vector(1) #',
    'self"} or vector(1) #',
    "self\"}\nor vector(1)",
    'x", job!="',
    '\\"} or vector(1) #',
    "self'} or vector(1) #",
    "self\\",
]


def read_string(text: str, at: int) -> tuple[str, int]:
    """The value of the PromQL string literal opening at ``text[at]`` and the index after it,
    by Prometheus' grammar (Go escapes; the open quote only; no raw newline; the lexer takes a
    raw U+FFFD for invalid UTF-8). ValueError when it is not a valid literal."""
    quote = text[at]
    if quote not in "\"'":
        raise ValueError(f"no string at {at}")
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", quote: quote}
    out: list[str] = []
    i = at + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated string")
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c in "\n\ufffd":
            raise ValueError(f"{c!r} inside a string")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = text[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            code = int(text[i + 2: i + 2 + width], 16)
            if e == "x" and code >= 0x80:
                raise ValueError("a byte escape of a non-ASCII byte")
            out.append(chr(code))
            i += 2 + width
        elif e in "01234567":
            out.append(chr(int(text[i + 1: i + 4], 8)))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{e}")


def instant(base: str, query: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the local Prometheus
        answer: dict[str, Any] = json.loads(resp.read())
    assert answer["status"] == "success", answer
    return answer["data"]


# -- templates refused at load -------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "up or {{ labels.x }}",
    "up{ {{ labels.k }}=\"x\" }",
    'up{x=`{{ labels.v }}`}',
    'label_replace(up, "a", "{{ labels.v }}", "", "")',
    "sum by ({{ labels.x }}) (up)",
    "rate(up[{{ labels.window }}])",
    'up{a="x"} # {{ labels.x }}',
    'up{a="\\{{ labels.x }}"}',
    'up{a=="{{ labels.x }}"}',
    '{"{{ labels.metric }}"}',
    'up{a="x"} > {{ labels.threshold }}',
])
def test_a_label_outside_a_quoted_matcher_value_is_refused_at_load(query: str) -> None:
    """Verification and diagnostics queries with a label anywhere else do not load, and the
    error names the field."""
    hosts = {"http": {"hosts": ["127.0.0.1:*"]}}
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": hosts, "rules": [rule(verify={"promql": {
            "url": "http://127.0.0.1:9090", "query": query}})]})
    assert [p for p, _ in caught.value.problems] == ["rules[0].verify.promql.query"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": hosts, "diagnostics": {"checks": [{"name": "p", "prometheus": {
            "url": "http://127.0.0.1:9090", "queries": {"q": query}}}]}})
    assert [p for p, _ in caught.value.problems] == ["diagnostics.checks[0].prometheus.queries.q"]


@pytest.mark.parametrize("query", [
    'up{instance="{{ labels.instance }}"}',
    "up{instance!='{{ labels.instance }}'}",
    'up{instance=~"{{ labels.instance }}:.*", job="x"}',
    'sum(rate(x{a="b",c!~"{{ labels.c }}"}[5m])) by (le) > 0.5 # "{{ not a label }}',
])
def test_a_label_inside_a_quoted_matcher_value_loads(query: str) -> None:
    """Matcher values (=, !=, =~, !~, either quote) may hold labels."""
    if "not a label" in query:
        with pytest.raises(ValueError, match="unsupported template"):
            PromQLCheck(url="http://127.0.0.1:9090", query=query)
        return
    check_query_template(query)
    assert PromQLCheck(url="http://127.0.0.1:9090", query=query).query == query


# -- the real Prometheus ----------------------------------------------------------------------


def test_a_hostile_label_cannot_make_a_promql_verification_pass(
    prometheus: str,  # noqa: F811
) -> None:
    """up{job="<label>"} with expect non_empty passes for job=self and fails for every
    injection (the old rendering of '"} or vector(1) #' answered vector(1))."""
    spec = PromQLCheck(url=prometheus, query='up{job="{{ labels.job }}"}', expect="non_empty",
                       within="0s")
    assert promql_check(spec, {"job": "self"}, NO_SLEEP, hosts=LOOPBACK).ok
    for value in INJECTIONS:
        result = promql_check(spec, {"job": value}, NO_SLEEP, hosts=LOOPBACK)
        assert not result.ok and "[]" in result.summary, (value, result.summary)
    old = 'up{job="' + INJECTIONS[0] + '"}'
    assert instant(prometheus, old)["result"], "the unescaped query would have passed"

    regex = PromQLCheck(url=prometheus, query='up{job=~"{{ labels.job }}"}',
                        expect="non_empty", within="0s")
    assert promql_check(regex, {"job": "self"}, NO_SLEEP, hosts=LOOPBACK).ok
    for value in (".*", "sel.", "self|x", "(self)"):
        assert not promql_check(regex, {"job": value}, NO_SLEEP, hosts=LOOPBACK).ok, value


def test_the_worker_fails_a_job_whose_promql_a_label_tried_to_force(
    store: Store, clock: Clock, prometheus: str  # noqa: F811
) -> None:
    """Through the worker: the injected label leaves the verification failing."""
    verify = {"promql": {"url": prometheus, "within": "0s", "expect": "non_empty",
                         "query": 'up{job="{{ labels.job }}"}'}}
    kit = Kit(store, clock, [rule(verify=verify)], targets={"http": {"hosts": ["127.0.0.1:*"]}})
    alert = make_alert(labels={"container": "web1", "job": INJECTIONS[0]})
    incident = kit.fire(make_notification([alert])).incident_id
    kit.drain()
    assert [j["state"] for j in kit.jobs()] == ["failed"]
    assert "verification_failed" in kit.kinds(incident)


def test_a_diagnostic_query_keeps_the_label_inside_its_string(
    store: Store, clock: Clock, prometheus: str  # noqa: F811
) -> None:
    """The snapshot's query holds the escaped literal, and it selects no series."""
    kit = Kit(store, clock, [], targets={"http": {"hosts": ["127.0.0.1:*"]}},
              diagnostics={"checks": [{"name": "p", "prometheus": {
                  "url": prometheus, "queries": {"up": 'up{job="{{ labels.job }}"}'}}}]})
    alert = make_alert(labels={"job": INJECTIONS[0]})
    result = kit.fire(make_notification([alert], group_key=f"{{}}:{{g={uuid.uuid4()}}}"))
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1
    [evidence] = list_evidence(store, int(result.incident_id))
    snapshot = evidence.detail["queries"]["up"]
    assert snapshot["query"] == 'up{job="\\"} or vector(1) #"}'
    assert snapshot["series"] == 0


text_values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet='"\'`\\{}#\n\r\t\x00\x7f\ufffd$=~!|.*()[]^ ', max_size=20),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(value=text_values)
@example(value="\ufffd")
@example(value="\x00")
@example(value='"} or vector(1) #')
@example(value="\u2028\ufeff")
def test_prometheus_reads_each_escaped_literal_back_as_the_value(
    prometheus: str, value: str  # noqa: F811
) -> None:
    """A real Prometheus parses escape_string(value) as a string whose value is the label, and
    the anchored regex escape_regex(value) matches exactly that value."""
    data = instant(prometheus, f'"{escape_string(value)}"')
    assert data["resultType"] == "string" and data["result"][1] == value
    single = instant(prometheus, f"'{escape_string(value, quote=chr(39))}'")
    assert single["result"][1] == value

    with_v = (f'label_replace(vector(1), "v", "{escape_string(value.replace("$", "$$"))}",'
              ' "", "")')
    matched = instant(prometheus, f'label_replace({with_v}, "m", "yes", "v", '
                                  f'"{escape_string(escape_regex(value))}")')
    [sample] = matched["result"]
    assert sample["metric"].get("v", "") == value and sample["metric"]["m"] == "yes"


# -- properties of the renderer -----------------------------------------------------------------

WHOLE = [
    ('up{instance="{{ labels.v }}"}', '"', False),
    ("up{instance!='{{ labels.v }}'}", "'", False),
    ('sum(rate(x{a="b", c="{{ labels.v }}"}[5m])) > 0 # "quoted" comment', '"', False),
    ('up{instance=~"{{ labels.v }}"}', '"', True),
    ("up{instance!~'{{ labels.v }}'} or vector(0)", "'", True),
]


@settings(max_examples=400)
@given(case=st.sampled_from(WHOLE), value=text_values)
@example(case=WHOLE[0], value='"} or vector(1) #')
@example(case=WHOLE[1], value="'} or vector(1) #")
@example(case=WHOLE[0], value="\\")
@example(case=WHOLE[0], value="\ufffd\n")
@example(case=WHOLE[3], value=".*")
def test_the_rendered_query_is_the_template_with_one_literal_holding_the_value(
    case: tuple[str, str, bool], value: str
) -> None:
    """Parsed by the PromQL string grammar, the output is the template's text around exactly
    one string literal, whose value is the label (as a regex matching only the label, in
    =~ and !~ matchers)."""
    template, quote, regex = case
    rendered = render_query(template, {"v": value}, {})
    start = template.index("{{ labels.v }}") - 1
    assert template[start] == quote and rendered[:start] == template[:start]
    literal, end = read_string(rendered, start)
    assert rendered[end:] == template[template.index("}}", start) + 3:]
    if regex:
        assert literal == escape_regex(value) and re.fullmatch(literal, value, re.DOTALL)
    else:
        assert literal == value


def test_a_lone_surrogate_is_refused_not_sent() -> None:
    """A value that is not text (a lone surrogate, possible in JSON) is a refused check."""
    with pytest.raises(ValueError, match="surrogate"):
        render_query('up{a="{{ labels.v }}"}', {"v": "\ud800"}, {})
    spec = PromQLCheck(url="http://127.0.0.1:9", query='up{a="{{ labels.v }}"}', within="0s")
    result = promql_check(spec, {"v": "x\udfff"}, NO_SLEEP, hosts=LOOPBACK)
    assert not result.ok and result.summary.startswith("refused: ")
