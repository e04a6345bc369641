"""A notification that a real Alertmanager could send is never lost to a 4xx.

Alertmanager never retries a 4xx, so within the body cap every well-formed v4 notification
is stored: long annotations (log excerpts, stack traces), long label values, hundreds or
thousands of labels, UTF-8 label names, NUL in values, long group keys and URLs. What is
too long to keep whole is cut in the tables with a marker naming the full length; the
fingerprint comes from the full values, and the inbox keeps the raw body whole.

What Alertmanager and Prometheus allow: any non-empty UTF-8 label name (Alertmanager 0.27+
and Prometheus 3; ``[a-zA-Z_][a-zA-Z0-9_]*`` before), any UTF-8 value, and no bound on the
number of labels or the length of names and values unless the operator sets Prometheus'
``label_limit``/``label_name_length_limit``/``label_value_length_limit`` (0 by default).
"""

from __future__ import annotations

import itertools
import json
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.config.server import ServerConfig
from receiver.intake.alertmanager import NUL_REPLACEMENT, label_fingerprint
from receiver.store import Store
from receiver.store.ingest import CUT_MARK, KEY_BYTES, STORED_VALUE_CHARS, bounded_key, cut
from tests.factories import later, make_alert, make_notification, unique_group

KIB = 1024
CAP = ServerConfig.model_fields["max_body_bytes"].default  # the default body cap


def stack_trace(size: int) -> str:
    """A real-looking multi-line stack trace of about ``size`` characters."""
    try:
        raise RuntimeError("connection pool exhausted: 64 of 64 in use")
    except RuntimeError:
        frame = traceback.format_exc()
    lines = []
    n = 0
    while sum(len(x) for x in lines) < size:
        lines.append(f'  File "/srv/app/handlers/h{n}.py", line {n % 997}, in handle_{n}\n'
                     f"    result = pool.acquire(timeout=30)  # attempt {n}\n")
        n += 1
    return (frame + "".join(lines))[:size]


def post(client: Any, body: dict[str, Any] | bytes) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert len(data) <= CAP, f"test body of {len(data)} bytes is over the cap"
    return client.post("/api/v1/alerts", data=data, content_type="application/json")


def inbox_body(store: Store, notification_id: int) -> str:
    with store.db.transaction(write=False) as tx:
        row = tx.fetchone("SELECT body FROM notifications WHERE id = :id", {"id": notification_id})
    assert row is not None
    return str(row["body"])


def alert_rows(store: Store) -> list[dict[str, Any]]:
    with store.db.transaction(write=False) as tx:
        return tx.fetchall("SELECT fingerprint, labels, annotations, deliveries, generator_url"
                           " FROM alerts ORDER BY id")


@pytest.mark.parametrize("size_kib", [100, 500])
def test_long_annotation_is_stored_cut_with_its_length(client: Any, store: Store,
                                                      size_kib: int) -> None:
    """A 100 or 500 KiB stack trace in an annotation is stored (200), cut at 64 Ki
    characters with a marker naming its full length; the inbox keeps the raw body whole."""
    trace = stack_trace(size_kib * KIB)
    body = make_notification([make_alert(annotations={"description": trace})],
                             group_key=unique_group())
    raw = json.dumps(body).encode()
    r = post(client, raw)
    assert r.status_code == 200, r.data[:300]
    kept = store.get_incident(r.json["incident_id"])["alerts"][0]["annotations"]["description"]
    assert kept == trace[:STORED_VALUE_CHARS] + CUT_MARK.format(n=len(trace))
    assert f"{len(trace)} characters in all" in kept
    assert inbox_body(store, r.json["notification_id"]) == raw.decode()
    stored_trace = json.loads(inbox_body(store, r.json["notification_id"]))
    assert stored_trace["alerts"][0]["annotations"]["description"] == trace


def test_identity_uses_the_full_label_values(client: Any, store: Store) -> None:
    """Two alerts whose 200 KiB label values differ only after the cut are two alerts, each
    with Alertmanager's fingerprint of its full labels; a re-delivery is the same alert."""
    prefix = "x" * (200 * KIB)
    one = make_alert(labels={"query": prefix + "1"})
    two = make_alert(labels={"query": prefix + "2"})
    for alert in (one, two, one):
        r = post(client, make_notification([alert], group_key='{}:{alertname="AppDown"}'))
        assert r.status_code == 200, r.data[:300]
    rows = alert_rows(store)
    assert [r["fingerprint"] for r in rows] == [label_fingerprint(one["labels"]),
                                                label_fingerprint(two["labels"])]
    assert [r["deliveries"] for r in rows] == [2, 1]
    assert rows[0]["labels"]["query"] == cut(prefix + "1")
    assert rows[0]["labels"]["query"] == rows[1]["labels"]["query"]  # same once cut


def test_300_labels_and_annotations_are_stored(client: Any, store: Store) -> None:
    """300 labels and 300 annotations (more than the former bound of 256) are all stored."""
    labels = {f"label_{i:03d}": f"value-{i}" for i in range(300)}
    annotations = {f"note_{i:03d}": f"text {i}" for i in range(300)}
    r = post(client, make_notification([make_alert(labels=labels, annotations=annotations)]))
    assert r.status_code == 200, r.data[:300]
    row = alert_rows(store)[0]
    assert {k: row["labels"][k] for k in labels} == labels
    assert {k: row["annotations"][k] for k in annotations} == annotations
    assert row["fingerprint"] == label_fingerprint(make_alert(labels=labels)["labels"])


def test_twenty_thousand_labels_within_the_cap_are_stored(client: Any, store: Store) -> None:
    """The body cap, not a label count, bounds a notification: 20,000 labels are stored."""
    labels = {f"l{i}": "v" for i in range(20_000)}
    r = post(client, make_notification([make_alert(labels=labels)]))
    assert r.status_code == 200, r.data[:300]
    assert len(alert_rows(store)[0]["labels"]) == 20_000 + 3  # and alertname, severity, instance


def _at_the_limits() -> dict[str, Any]:
    utf8_names = {"service.name": "checkout", "k8s.pod/name": "web-0", "ünïcødé": "✓",
                  "emoji 🙂 name": "🙂", "with space": "", "__meta_x": "y", "0digit": "z"}
    long_name = "n" * 5000
    group_labels = {"alertname": "AtLimits", "cluster": "c" * (20 * KIB)}
    def alert(i: int) -> dict[str, Any]:
        if i >= 2:  # the rest of a 200-alert group: small
            return make_alert(alertname="AtLimits", labels={"instance": f"host-{i}:9100"},
                              starts_at="2026-01-01T12:00:00.123456789+02:00")
        return make_alert(
            alertname="AtLimits",
            labels={**utf8_names, long_name: "long name", "cluster": "c" * (20 * KIB),
                    "instance": f"host-{i}:9100", "quoted": 'a"b\\c\n{}=,'},
            annotations={"description": "d" * (70 * KIB), "runbook_url":
                         "https://runbooks.example/" + "r" * 9000},
            starts_at="2026-01-01T12:00:00.123456789+02:00",
            generatorURL="http://prometheus.example:9090/graph?g0.expr="
            + "sum%28rate%28x%5B5m%5D%29%29" * 1000)

    alerts = [alert(i) for i in range(200)]
    body = make_notification(alerts, receiver="team-" + "r" * 3000,
                             external_url="http://alertmanager.example:9093/" + "e" * 9000,
                             truncatedAlerts=123456)
    body["groupLabels"] = group_labels
    body["groupKey"] = "{}/{severity=~\"critical|page\"}:" + json.dumps(group_labels)
    body["commonAnnotations"] = {"summary": "s" * (66 * KIB)}
    return body


def test_every_field_at_alertmanager_limits_is_stored(client: Any, store: Store) -> None:
    """UTF-8 label names, a 5,000-character name, 20 KiB group labels in a group key,
    70 KiB annotations, 28 KiB generator URLs, long receiver and external URL, nanosecond
    timestamps with an offset, 200 alerts and truncatedAlerts: all stored."""
    body = _at_the_limits()
    r = post(client, body)
    assert r.status_code == 200, r.data[:500]
    rows = alert_rows(store)
    assert len(rows) == 200
    assert {r["fingerprint"] for r in rows} == {label_fingerprint(a["labels"])
                                                for a in body["alerts"]}
    labels = next(r["labels"] for r in rows if "service.name" in r["labels"])
    for name in ("service.name", "k8s.pod/name", "ünïcødé", "emoji 🙂 name", "with space"):
        assert name in labels
    assert not [k for k in labels if k.startswith("nnnn") and len(k) == 5000]  # cut
    assert any(k.startswith("n" * 1024 + CUT_MARK.format(n=5000)) for k in labels)
    assert all(len(r["generator_url"]) < 9000 for r in rows)
    inc = store.get_incident(r.json["incident_id"])
    assert len(inc["key"].encode()) <= KEY_BYTES + 100
    assert inbox_body(store, r.json["notification_id"]) == json.dumps(body)


def test_long_group_keys_keep_incidents_apart(client: Any, store: Store) -> None:
    """Group keys over the stored key's bound that differ only at the end open two
    incidents; the same long group key again joins its incident."""
    head = "{}:{cluster=\"" + "c" * (30 * KIB)
    keys = [head + "a\"}", head + "b\"}", head + "a\"}"]
    ids = []
    for i, key in enumerate(keys):
        alert = make_alert(labels={"instance": f"h{i}"})
        r = post(client, make_notification([alert], group_key=key))
        assert r.status_code == 200, r.data[:300]
        ids.append(r.json["incident_id"])
    assert ids[0] == ids[2] != ids[1]
    assert bounded_key(f"remediator|{keys[0]}") != bounded_key(f"remediator|{keys[1]}")


def test_nul_in_values_is_stored_replaced(client: Any, store: Store) -> None:
    """NUL (valid in a Prometheus label, impossible in PostgreSQL text) is stored as U+FFFD;
    the fingerprint is the one of the value with its NUL."""
    alert = make_alert(labels={"x": "a\u0000b"}, annotations={"d": "\u0000"})
    r = post(client, make_notification([alert]))
    assert r.status_code == 200, r.data[:300]
    row = alert_rows(store)[0]
    assert row["labels"]["x"] == f"a{NUL_REPLACEMENT}b"
    assert row["annotations"]["d"] == NUL_REPLACEMENT
    assert row["fingerprint"] == label_fingerprint(alert["labels"])


def test_lone_alert_with_a_500_kib_trace_as_alertmanager_sends_it(client: Any,
                                                                  store: Store) -> None:
    """Alertmanager repeats a lone alert's annotations in commonAnnotations, so a 500 KiB
    trace makes a body over 1 MiB: the default cap takes it (a 413 would lose it for good)."""
    trace = stack_trace(500 * KIB)
    alert = make_alert(annotations={"description": trace})
    body = make_notification([alert], group_key=unique_group())
    body["commonAnnotations"] = dict(alert["annotations"])
    raw = json.dumps(body).encode()
    assert len(raw) > 1024 * 1024
    r = post(client, raw)
    assert r.status_code == 200, r.data[:300]
    assert inbox_body(store, r.json["notification_id"]) == raw.decode()


def test_malformed_input_still_gets_a_4xx(client: Any, store: Store) -> None:
    """Only malformed input is refused: wrong types, wrong version, over the body cap."""
    ok = make_notification()
    assert post(client, {**ok, "version": "3"}).status_code == 400
    assert post(client, make_notification([make_alert(labels={"n": 1})])).status_code == 400
    assert post(client, make_notification([make_alert(labels={"": "empty name"})])).status_code == 400
    big = make_notification([make_alert(annotations={"d": "x" * CAP})])
    r = client.post("/api/v1/alerts", data=json.dumps(big), content_type="application/json")
    assert r.status_code == 413
    assert alert_rows(store) == []


_episode = itertools.count(1)
label_names = st.text(min_size=1, max_size=40).filter(lambda s: NUL_REPLACEMENT not in s)
values = st.one_of(st.text(max_size=200), st.text(max_size=3).map(lambda s: s * 30_000))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(labels=st.dictionaries(label_names, values, max_size=30),
       annotations=st.dictionaries(label_names, values, max_size=10))
def test_any_label_set_within_the_cap_is_stored(client: Any, store: Store,
                                                labels: dict[str, str],
                                                annotations: dict[str, str]) -> None:
    """Generated label and annotation sets (any Unicode, NUL, very long values) within the
    body cap are always stored, under the fingerprint of their full values."""
    starts_at = later(next(_episode))  # a new episode per example: rows do not collide
    alert = make_alert(labels=labels, annotations=annotations, starts_at=starts_at)
    raw = json.dumps(make_notification([alert], group_key=unique_group())).encode()
    if len(raw) > CAP:
        return
    r = post(client, raw)
    assert r.status_code == 200, r.data[:300]
    with store.db.transaction(write=False) as tx:
        found = tx.fetchone("SELECT labels, annotations FROM alerts"
                            " WHERE fingerprint = :fp AND starts_at = :sa",
                            {"fp": label_fingerprint(alert["labels"]), "sa": starts_at})
    assert found is not None

    def kept(text: str) -> str:
        return text.replace("\x00", NUL_REPLACEMENT)

    assert found["labels"] == {kept(k): cut(kept(v)) for k, v in alert["labels"].items()}
    assert found["annotations"] == {kept(k): cut(kept(v))
                                    for k, v in alert["annotations"].items()}
