"""No client input gets a 5xx: hostile query strings, ids and bodies on the JSON API and the
pages, on both store backends. Bad input is a 4xx whose detail names the field."""

from __future__ import annotations

import json
import re
import string
from typing import Any, get_args
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.intake.severity import Severity
from receiver.web.requests import MAX_ID, SeverityName
from tests.conftest import OP, PASSWORD
from tests.factories import make_alert, make_notification

DEEP = 100_000
HUGE = str(10**23)


def open_incident(client: Any) -> int:
    r = client.post("/api/v1/alerts", json=make_notification([make_alert()]))
    assert r.status_code == 200, r.data
    return int(r.json["incident_id"])


def fields(r: Any) -> list[str]:
    """The fields named by a 4xx JSON error."""
    detail = r.json["detail"]
    assert isinstance(detail, list), r.json
    assert all(d["field"] == d["loc"] and d["message"] == d["msg"] for d in detail)
    return [d["field"] for d in detail]


def logged_in(client: Any) -> Any:
    """The same client with alice's session (log in through the form)."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:500]
    r = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                    "csrf_token": token.group(1)})
    assert r.status_code == 302, r.data[:500]
    return client


def page_csrf(client: Any, path: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert m
    return m.group(1)


# -- explicit cases (each answered 500 before) ------------------------------------------------

@pytest.mark.parametrize(("query", "field"), [
    ("since=9999999999999d", "since"),            # timedelta overflow
    ("since=" + "9" * 400 + "s", "since"),         # float('9'*400) is inf
    ("since=36526d", "since"),                     # past the 100-year bound
    ("since=0001-01-01T00:00:00%2B14:00", "since"),  # not convertible to UTC
    ("before=9223372036854775808", "before"),      # 2**63: beyond BIGINT
    ("before=" + HUGE, "before"),
    ("before=1e23", "before"),
    ("limit=100000000000000000000", "limit"),
    ("limit=nan", "limit"),
    ("state=open,bogus", "state"),
    ("severity=P1,%00", "severity"),
])
def test_incident_list_refuses_out_of_range_queries(client: Any, query: str, field: str) -> None:
    """Overflowing times, durations, cursors and limits get 400 naming the parameter."""
    r = client.get(f"/api/v1/incidents?{query}", headers=OP)
    assert r.status_code == 400, r.data
    assert r.json["error"] == "invalid_query" and fields(r) == [field]


@pytest.mark.parametrize(("query", "field"), [
    ("after=1e23", "after"),
    ("after=" + HUGE, "after"),
    ("after=-1", "after"),
    ("incident=" + HUGE, "incident"),
    ("actor=a%00b", "actor"),
    ("action=" + "x" * 600, "action"),
    ("since=0001-01-01T00:00:00%2B14:00", "since"),
    ("until=9999-12-31T23:59:59-14:00", "until"),
    ("until=yesterday", "until"),
    ("limit=100001", "limit"),
    ("format=xml", "format"),
])
def test_audit_api_refuses_bad_filters(client: Any, query: str, field: str) -> None:
    """The audit API names each bad filter with 400 instead of failing in the store."""
    r = client.get(f"/api/v1/audit?{query}", headers=OP)
    assert r.status_code == 400, r.data
    assert fields(r) == [field]


def test_ids_beyond_64_bits_are_not_found(client: Any) -> None:
    """Ids past a signed 64-bit integer never reach the store: 404 like any unknown id."""
    for path in (f"/api/v1/incidents/{HUGE}", f"/api/v1/incidents/{2**63}",
                 f"/api/v1/incidents/{HUGE}/postmortem.md", "/api/v1/incidents/0"):
        r = client.get(path, headers=OP)
        assert r.status_code == 404 and r.json["error"] == "not_found", path
    r = client.get(f"/api/v1/incidents/{MAX_ID}", headers=OP)
    assert r.status_code == 404 and r.json["error"] == "not_found"
    for path in (f"/api/v1/incidents/{HUGE}/actions", f"/api/v1/jobs/{HUGE}/approve"):
        r = client.post(path, headers=OP, json={"action": "note", "text": "x"})
        assert r.status_code == 404, path
    r = client.post(f"/api/v1/jobs/{MAX_ID}/approve", headers=OP, json={})
    assert r.status_code == 404


def test_deeply_nested_body_is_a_400(client: Any) -> None:
    """100,000 levels of nesting are refused as bad JSON, not a RecursionError."""
    inc = open_incident(client)
    for body in ("[" * DEEP + "]" * DEEP, '{"action": ' + "[" * DEEP + "]" * DEEP + "}",
                 '{"a":' * DEEP + "1" + "}" * DEEP):
        r = client.post(f"/api/v1/incidents/{inc}/actions", data=body,
                        content_type="application/json", headers=OP)
        assert r.status_code == 400 and r.json["error"] in ("invalid_json", "invalid_payload")
    r = client.post("/api/v1/controls/pause", data="[" * DEEP, content_type="application/json",
                    headers=OP)
    assert r.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    ('{"action": "note", "text": "a\\u0000b"}', "text"),
    ('{"action": "note", "text": "a\\ud800b"}', "(body)"),  # lone surrogate: not JSON text
    ('{"action": "assign", "value": "\\udfff"}', "(body)"),
    ('{"action": "note", "text": NaN}', "text"),
    ('{"action": "note", "text": 1e999}', "text"),
    ('{"action": "note", "text": 5}', "text"),
    ('{"action": "explode"}', "action"),
    ('{"text": "no action"}', "action"),
    ('{"action": "note", "text": "x", "extra": 1}', "extra"),
    ("[]", "(body)"),
    ('"just a string"', "(body)"),
])
def test_action_bodies_are_validated(client: Any, body: str, field: str) -> None:
    """Action bodies are parsed into a model: each bad part is a 400 naming the field."""
    inc = open_incident(client)
    r = client.post(f"/api/v1/incidents/{inc}/actions", data=body,
                    content_type="application/json", headers=OP)
    assert r.status_code == 400, r.data
    assert field in fields(r)


def test_state_changing_bodies_refuse_nul_and_surrogates(client: Any) -> None:
    """Reasons of controls and decisions cannot carry NUL or a lone surrogate into the store."""
    for path, key in (("/api/v1/controls/pause", "reason"), ("/api/v1/controls/resume", "rule"),
                      ("/api/v1/jobs/1/deny", "reason")):
        for bad in ("a\\u0000b", "\\ud83d"):
            r = client.post(path, data=f'{{"{key}": "{bad}"}}', content_type="application/json",
                            headers=OP)
            assert r.status_code == 400, (path, bad, r.data)
            assert fields(r) == ([key] if "u0000" in bad else ["(body)"]), r.json
    assert client.get("/api/v1/audit?action=controls.paused", headers=OP).json["entries"] == []


def test_bodies_of_another_content_type_get_415(client: Any) -> None:
    """A non-empty body that is not JSON by its Content-Type is a 415; an empty one is {}."""
    inc = open_incident(client)
    r = client.post(f"/api/v1/incidents/{inc}/actions", data="action=acknowledge",
                    content_type="application/x-www-form-urlencoded", headers=OP)
    assert r.status_code == 415 and r.json["error"] == "unsupported_media_type"
    r = client.post(f"/api/v1/incidents/{inc}/actions", data=b"\xff\xfe", headers=OP,
                    content_type="text/plain")
    assert r.status_code == 415
    r = client.post("/api/v1/controls/pause", headers=OP)  # no body at all
    assert r.status_code == 200 and r.json["status"] == "paused"
    r = client.post(f"/api/v1/incidents/{inc}/actions", data=b'{"action": "note", "text": "\xff"}',
                    content_type="application/json", headers=OP)
    assert r.status_code == 400 and r.json["error"] == "invalid_json"


def test_pages_answer_400_for_bad_queries(client: Any) -> None:
    """The audit and incidents pages refuse overflowing cursors and ids with 400 or 404."""
    logged_in(client)
    for path in ("/audit?after=1e23", f"/audit?after={HUGE}", f"/audit?incident={HUGE}",
                 "/audit?since=0001-01-01T00:00:00%2B14:00", "/audit?actor=%00",
                 f"/incidents?before={HUGE}", "/incidents?state=bogus"):
        r = client.get(path)
        assert r.status_code == 400, (path, r.status_code)
        assert "bad parameter" in r.get_data(as_text=True)
    assert client.get(f"/incidents/{HUGE}").status_code == 404
    assert client.get("/audit?since=&until=&actor=&action=&incident=").status_code == 200


def test_page_forms_refuse_nul(client: Any) -> None:
    """A form post with NUL in a field is a 400 naming it, on both backends."""
    logged_in(client)
    inc = open_incident(client)
    token = page_csrf(client, f"/incidents/{inc}")
    r = client.post("/controls", data={"action": "pause", "reason": "a\x00b", "csrf_token": token})
    assert r.status_code == 400 and fields(r) == ["reason"]
    r = client.post(f"/incidents/{inc}/action",
                    data={"action": "assign", "value": "\x00", "csrf_token": token})
    assert r.status_code == 400 and fields(r) == ["value"]


def test_severity_names_match_the_enum() -> None:
    """The query model's severity names are exactly the Severity enum's."""
    assert set(get_args(SeverityName)) == {s.value for s in Severity}


# -- generated query strings ------------------------------------------------------------------

NUMBERISH = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["1e23", "nan", "inf", "-0", "0x10", "1_000", " 5", "٣", "9" * 400]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
TIMEISH = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(lambda y, off: f"{y:04d}-01-01T00:00:00{off}",
              st.integers(1, 9999), st.sampled_from(["", "Z", "+14:00", "-14:00", "+23:59"])),
    st.builds(lambda n, u: f"{n}{u}", NUMBERISH, st.sampled_from(["ms", "s", "m", "h", "d", "w"])),
)
TEXTISH = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(["\x00", "%", ",", "\ufffd", "é", "\U0001f600", "a"]),
            max_size=20),
    st.sampled_from(["open,P1", ",,,", "P0,P1,P2,P3", "resolved", "csv", "jsonl"]),
)
NAMES = ["state", "severity", "since", "until", "limit", "before", "after", "incident",
         "actor", "action", "format", "next", "x", "_external", "_scheme", "_anchor", "_method"]
QUERIES = st.lists(
    st.tuples(st.sampled_from(NAMES), st.one_of(NUMBERISH, TIMEISH, TEXTISH)), max_size=6)
RAW = st.text(alphabet=string.printable + "%\x00é", max_size=60)

LIST_PATHS = ("/api/v1/incidents", "/api/v1/audit")
PAGE_PATHS = ("/incidents", "/audit")


def _check(r: Any, path: str) -> None:
    assert r.status_code < 500, (path, r.status_code, r.data[:300])
    if path.startswith("/api/") and r.status_code == 400:
        assert set(fields(r)) <= set(NAMES), r.json


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pairs=QUERIES, raw=RAW)
@example(pairs=[("after", "1e23")], raw="")
@example(pairs=[("limit", "1"), ("_method", "POST")], raw="limit=1&_scheme=javascript")
@example(pairs=[("since", "9999999999999d")], raw="")
@example(pairs=[("until", "0001-01-01T00:00:00+14:00")], raw="")
@example(pairs=[], raw="before=%ff%fe&since=%00")
def test_generated_query_strings_never_give_a_5xx(with_incident: Any,
                                                  pairs: list[tuple[str, str]], raw: str) -> None:
    """Any query string on the list endpoints is a 200 or a 4xx naming known parameters."""
    client = with_incident
    query = urlencode(pairs)
    for path in LIST_PATHS:
        _check(client.get(f"{path}?{query}", headers=OP), path)
        _check(client.get(f"{path}?{raw}", headers=OP), path)
    for value in (quote(raw, safe=""), raw):
        _check(client.get(f"/api/v1/incidents/{value}", headers=OP), "/api/v1/incidents/")


@pytest.fixture
def page_client(client: Any) -> Any:
    open_incident(client)
    return logged_in(client)


@pytest.fixture
def with_incident(client: Any) -> Any:
    """A client whose store has an incident (and audit entries): limit=1 fills a page."""
    open_incident(client)
    return client


@pytest.mark.parametrize("extra", ["_scheme=javascript", "_external=1", "_anchor=x",
                                   "_method=POST", "_external=1&_scheme=javascript&x=1"])
def test_next_links_carry_only_known_parameters(client: Any, extra: str) -> None:
    """A full page's next link keeps the filters and the cursor, never url_for's own
    arguments from the query string (which answered 500 or changed the link's scheme)."""
    open_incident(client)
    for path, cursor in (("/api/v1/incidents", "before"), ("/api/v1/audit", "after")):
        r = client.get(f"{path}?limit=1&{extra}", headers=OP)
        assert r.status_code == 200, r.data
        nxt = urlsplit(r.json["next"])
        assert (nxt.scheme, nxt.netloc, nxt.path, nxt.fragment) == ("", "", path, "")
        assert set(parse_qs(nxt.query)) == {"limit", cursor}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pairs=QUERIES)
@example(pairs=[("after", "1e23")])
@example(pairs=[("before", HUGE)])
def test_generated_page_queries_never_give_a_5xx(page_client: Any,
                                                 pairs: list[tuple[str, str]]) -> None:
    """The incidents and audit pages answer any query string with 200 or 400."""
    query = urlencode(pairs)
    for path in PAGE_PATHS:
        r = page_client.get(f"{path}?{query}")
        assert r.status_code in (200, 400), (path, query, r.status_code)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["action", "text", "value", "reason", "rule", "x"]),
                      children, max_size=4),
    max_leaves=12,
))
def test_generated_bodies_never_give_a_5xx(client: Any, body: Any) -> None:
    """Any JSON document posted to the write endpoints is a 2xx or a 4xx."""
    data = json.dumps(body)
    for path in ("/api/v1/incidents/1/actions", "/api/v1/jobs/1/approve", "/api/v1/jobs/1/deny",
                 "/api/v1/controls/resume"):
        r = client.post(path, data=data, content_type="application/json", headers=OP)
        assert r.status_code < 500, (path, data, r.data[:300])


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "é" * 200, "x" * 5000])
def test_login_and_approval_links_take_any_text(client: Any, name: str) -> None:
    """Login fields, the next parameter and approval-link tokens with NUL or long text are a
    4xx, never a store error."""
    page = client.get("/login?next=" + quote(name)).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    r = client.post("/login?next=" + quote(name),
                    data={"username": name, "password": name, "csrf_token": token.group(1)})
    assert 400 <= r.status_code < 500, r.status_code
    logged_in(client)
    for path in (f"/approvals/{quote(name, safe='')}", f"/approvals/{quote(name)}.x.y"):
        r = client.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        r = client.post(path, data={"csrf_token": page_csrf(client, "/incidents"),
                                    "decision": "approve"})
        assert 400 <= r.status_code < 500, (path, r.status_code)


def test_audit_page_next_link_ignores_unknown_parameters(client: Any) -> None:
    """The audit page's next link is built from its filters only (``_method`` answered 500)."""
    inc = open_incident(client)
    for i in range(50):
        assert client.post(f"/api/v1/incidents/{inc}/actions", headers=OP,
                           json={"action": "note", "text": f"n{i}"}).status_code == 200
    logged_in(client)
    r = client.get("/audit?_method=POST&_scheme=javascript&actor=user:alice")
    assert r.status_code == 200
    links = re.findall(r'href="(/audit\?[^"]+)"', r.get_data(as_text=True))
    assert links, "a full page has a next link"
    query = parse_qs(urlsplit(links[-1].replace("&amp;", "&")).query)
    assert set(query) == {"actor", "after"} and query["actor"] == ["user:alice"]


def test_webhook_times_with_any_zone_offset_are_stored_in_utc(client: Any) -> None:
    """A startsAt with a +17:50 offset (PostgreSQL refuses offsets past 15:59) is stored as
    the same instant in UTC. Found by the schema fuzzer."""
    alert = make_alert(startsAt="1372-05-29T14:04:46.042999+17:50")
    r = client.post("/api/v1/alerts", json=make_notification([alert]))
    assert r.status_code == 200, r.data
    stored = client.get(f"/api/v1/incidents/{r.json['incident_id']}", headers=OP).json
    assert stored["alerts"][0]["starts_at"] == "1372-05-28T20:14:46.042999+00:00"
    r = client.post("/api/v1/alerts", json=make_notification(
        [make_alert(startsAt="0001-01-01T00:00:00+01:00")]))
    assert r.status_code == 400 and "alerts.0.startsAt" in fields(r)


@pytest.mark.parametrize(("over", "field"), [
    ({"endsAt": 0}, "alerts.0.endsAt"),
    ({"startsAt": 1700000000}, "alerts.0.startsAt"),
])
def test_webhook_takes_json_types_as_sent(client: Any, over: dict[str, Any], field: str) -> None:
    """Numbers where Alertmanager sends RFC 3339 strings are refused, not read as epochs.
    Found by the schema fuzzer."""
    r = client.post("/api/v1/alerts", json=make_notification([make_alert(**over)]))
    assert r.status_code == 400 and field in fields(r)
    r = client.post("/api/v1/alerts", json={**make_notification(), "truncatedAlerts": "5"})
    assert r.status_code == 400 and "truncatedAlerts" in fields(r)
