"""A real Alertmanager 0.25 delivers an alert with a 300 KiB stack-trace annotation and 300
labels to a real ``remediator serve``: it is stored (no 4xx, which Alertmanager would
never retry), cut for the tables, whole in the inbox, under Alertmanager's fingerprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.store.ingest import CUT_MARK, STORED_VALUE_CHARS
from tests.integration.conftest import Alertmanager, Receiver, wait_until
from tests.support import http

pytestmark = pytest.mark.slow


def test_long_annotation_and_300_labels_from_alertmanager_are_stored(
    receiver: Receiver, start_alertmanager: Any
) -> None:
    """Alertmanager repeats a lone alert's annotations in commonAnnotations, so the body is
    about 600 KiB: under the 1 MiB cap, stored, and the annotation kept cut with its length."""
    am: Alertmanager = start_alertmanager(receiver.webhook_url)
    trace = "".join(f'  File "/srv/app/h{i}.py", line {i}, in handle\n    pool.acquire()\n'
                    for i in range(6000))[: 300 * 1024]
    labels = {"alertname": "LongTrace", "severity": "warning", "instance": "app-1:9100",
              **{f"label_{i:03d}": f"value-{i}" for i in range(297)}}
    starts = datetime.now(UTC) - timedelta(minutes=1)  # older than group_wait: sent at once
    am.post_alerts([{"labels": labels, "annotations": {"description": trace},
                     "startsAt": starts.strftime("%Y-%m-%dT%H:%M:%SZ")}])
    code, body = http("GET", am.url + "/api/v2/alerts")
    assert code == 200
    am_fingerprint = json.loads(body)[0]["fingerprint"]

    rows = wait_until(lambda: receiver.query("SELECT fingerprint, labels, annotations"
                                             " FROM alerts"), 30.0, "the alert to be stored")
    fingerprint, stored_labels, stored_annotations = rows[0]
    if isinstance(stored_labels, str):  # SQLite keeps JSON as text
        stored_labels, stored_annotations = json.loads(stored_labels), json.loads(stored_annotations)
    assert fingerprint == am_fingerprint
    assert stored_labels == labels
    assert stored_annotations["description"] == (trace[:STORED_VALUE_CHARS]
                                                 + CUT_MARK.format(n=len(trace)))
    (raw,), = receiver.query("SELECT body FROM notifications")
    delivered = json.loads(raw)
    assert delivered["alerts"][0]["annotations"]["description"] == trace
    assert len(raw.encode()) > 2 * len(trace)  # the annotation arrived twice (common too)
    log = receiver.log()
    assert "payload_too_large" not in log and "invalid_payload" not in log
