"""The outbox, evidence and audit repositories: a unit of work hands out frozen records made
from the same rows the store's functions read, on both backends."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.audit.chain import verify_chain
from receiver.comms.notify import expand
from receiver.diagnostics import list_evidence, list_requests, request
from receiver.store import AuditFilter, Store
from receiver.store import audit as audit_store
from receiver.store import outbox as outbox_store
from receiver.store.audit import AuditEntry
from receiver.store.evidence import Evidence, EvidenceRequest, IncidentAlert
from receiver.store.outbox import Delivery, MessageContext, OutboxMessage
from tests.conftest import Clock
from tests.test_notify import make_kit, open_incident


def test_outbox_records_are_frozen_and_match_the_rows(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Expansion, claim and outcome go through the outbox repository; its Delivery records
    hold exactly the rows' values and cannot be changed."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {"ops": {"url": "json://127.0.0.1/x"}})
    incident = open_incident(kit)
    with store.unit(write=False) as uow:
        [pending] = uow.outbox.unexpanded(limit=10)
    assert isinstance(pending, OutboxMessage) and pending.incident_id == incident
    with store.unit() as uow:
        assert expand(uow, kit.config.notifications, clock()) == 1
    with store.unit() as uow:
        claimed = uow.outbox.claim(worker="w1", now=clock(), until=clock() + timedelta(minutes=1))
        assert uow.outbox.unexpanded(limit=10) == []
    assert isinstance(claimed, Delivery)
    assert (claimed.channel, claimed.state, claimed.attempts) == ("ops", "sending", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        claimed.state = "delivered"  # type: ignore[misc]
    with store.unit() as uow:
        assert not uow.outbox.delivered(claimed.outbox_id, "ops", worker="w2", now=clock())
        assert uow.outbox.delivered(claimed.outbox_id, "ops", worker="w1", now=clock())
        ctx = uow.outbox.message_context(claimed.outbox_id)
        records = uow.outbox.deliveries()
    assert isinstance(ctx, MessageContext)
    assert (ctx.incident_id, ctx.kind, ctx.incident_state) == (incident, "opened", "open")
    with store.db.transaction(write=False) as tx:
        rows = outbox_store.deliveries(tx)
    assert [dataclasses.asdict(r) for r in records] == rows
    assert records[0].state == "delivered" and records[0].lease_owner is None


def test_evidence_records_carry_requests_alerts_and_outcomes(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A request, its claim, the incident's alerts and stored evidence come back as frozen
    records; an evidence's outcome is the one its detail recorded, else ok or error."""
    kit = make_kit(store, clock, monkeypatch, tmp_path, {})
    incident = open_incident(kit)
    with store.unit() as uow:
        assert uow.evidence.incident_alerts(incident + 1000) is None
        [alert] = uow.evidence.incident_alerts(incident) or []
    assert isinstance(alert, IncidentAlert) and alert.labels["container"] == "web1"
    asked = request(store, incident, actor="user:alice", reason="look", now=clock())
    assert asked is not None
    assert request(store, incident, actor="user:bob", reason="again", now=clock()) == asked
    with store.unit() as uow:
        claimed = None
        while claimed is None or claimed.id != asked:  # the opening's own request comes first
            claimed = uow.evidence.claim(worker="w1", now=clock(), lease=timedelta(minutes=1))
            assert claimed is not None
        assert isinstance(claimed, EvidenceRequest) and claimed.lease_owner == "w1"
        for name, ok, detail in (("a", True, {}), ("b", False, {}),
                                 ("c", False, {"outcome": "refused"})):
            uow.evidence.add(incident_id=incident, request_id=claimed.id, check_name=name,
                             kind="http", ok=ok, summary=name, detail=detail,
                             started_at=clock(), duration_ms=1)
        assert uow.evidence.finish(claimed.id, worker="w1", now=clock())
    found = list_evidence(store, incident)
    assert all(isinstance(e, Evidence) for e in found)
    assert [(e.check_name, e.ok, e.outcome) for e in found] == [
        ("a", True, "ok"), ("b", False, "error"), ("c", False, "refused")]
    assert [r.state for r in list_requests(store, incident) if r.id == asked] == ["done"]


def test_audit_records_match_the_chain_the_store_verifies(store: Store, clock: Clock) -> None:
    """Entries appended through the audit repository are chained at commit; query and walk
    return them as AuditEntry records holding the rows' values, in chain order."""
    with store.unit() as uow:
        for i in range(3):
            uow.audit.append(at=clock() + timedelta(seconds=i), actor="user:alice",
                             action=f"test.{i}", subject="thing", details={"i": i})
        assert uow.audit.head().seq == 0  # chained only when the unit commits
    with store.unit(write=False) as uow:
        walked = list(uow.audit.walk(batch=2))
        some = uow.audit.query(AuditFilter(action="test.1"))
        head = uow.audit.head()
        assert uow.audit.row_id(walked[0].seq) == walked[0].id
        assert uow.audit.trigger_problems() == []
    with store.db.transaction(write=False) as tx:
        rows = list(audit_store.walk(tx))
    assert all(isinstance(e, AuditEntry) for e in walked)
    assert [dataclasses.asdict(e) for e in walked] == rows
    assert [e.action for e in walked] == ["test.0", "test.1", "test.2"]
    assert [(e.action, e.details) for e in some] == [("test.1", {"i": 1})]
    assert (head.seq, head.hash) == (walked[-1].seq, walked[-1].hash)
    assert verify_chain(rows).ok
