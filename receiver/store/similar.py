"""The similar-incident index: signature terms of ended incidents, and what a lookup needs.

``incident_terms`` maps a term (``a:<alertname>``, ``s:<key>=<value>``, ``l:<key>=<value>``;
made by :mod:`receiver.incidents.similar`) to the incidents that carry it. A worker chore
reads the timeline's state events from a cursor (``incident_terms_cursor``, a range of
``incident_events``' primary key) and rewrites the terms of each incident they name; the
webhook never writes here and pays for no extra index. A lookup reads
each term's newest incident ids with a LIMIT (the primary key's order), so its cost depends
on the number of terms and the limit, not on the number of incidents. Every value is a bound
parameter. :class:`SimilarRepository` is ``uow.similar``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.store.repository import Repository, maybe, records

ENDED = ("resolved", "closed", "false_alarm")
_CHANGE_KINDS = "'resolved', 'reopened', 'state_changed'"
ROWS_PER_INSERT = 400
"""Rows per INSERT statement (two parameters each: well under either backend's limit)."""


@dataclass(frozen=True)
class IndexCursor:
    settled_event_id: int
    seen_event_id: int


@dataclass(frozen=True)
class ChangeEvent:
    """A timeline event that may change whether an incident has ended."""

    id: int
    incident_id: int
    at: datetime


@dataclass(frozen=True)
class IncidentState:
    id: int
    state: str


@dataclass(frozen=True)
class AlertSignature:
    """What an alert contributes to its incident's terms."""

    incident_id: int
    alertname: str
    labels: dict[str, str]


@dataclass(frozen=True)
class TermHit:
    term: str
    incident_id: int


@dataclass(frozen=True)
class PastIncident:
    id: int
    state: str
    severity: str
    title: str
    opened_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True)
class EndingEvent:
    """The last event that ended an incident (``resolved`` or a state change)."""

    incident_id: int
    kind: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class SucceededJob:
    """A job of a past incident that succeeded (not an undo), and who approved it."""

    incident_id: int
    id: int
    playbook: str
    rule: str
    finished_at: datetime | None
    decided_by: str | None


def _marks(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


class SimilarRepository(Repository):
    """The term index (written by the chore) and the reads of a similar-incident lookup."""

    # -- the chore ------------------------------------------------------------------------

    def cursor(self) -> IndexCursor:
        found = maybe(IndexCursor, self.tx.fetchone(
            "SELECT settled_event_id, seen_event_id FROM incident_terms_cursor WHERE id = 1"))
        return found or IndexCursor(0, 0)

    def events_after(self, after_id: int, *, upto_id: int | None = None,
                     limit: int) -> list[ChangeEvent]:
        """The ``resolved``, ``reopened`` and ``state_changed`` events after ``after_id``
        (up to ``upto_id``), oldest first: a range of the primary key."""
        upto = "" if upto_id is None else " AND id <= :upto"
        return records(ChangeEvent, self.tx.fetchall(
            f"""SELECT id, incident_id, at FROM incident_events
                 WHERE id > :after{upto} AND kind IN ({_CHANGE_KINDS})
                 ORDER BY id LIMIT :limit""",  # noqa: S608 - fixed fragments only
            {"after": after_id, "upto": upto_id, "limit": limit}))

    def states(self, incident_ids: Sequence[int]) -> list[IncidentState]:
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(IncidentState, self.tx.fetchall(
            f"SELECT id, state FROM incidents WHERE id IN ({marks})", params))  # noqa: S608 - placeholders only

    def advance(self, cursor: IndexCursor) -> None:
        self.tx.execute(
            """INSERT INTO incident_terms_cursor (id, settled_event_id, seen_event_id)
               VALUES (1, :settled, :seen)
               ON CONFLICT (id) DO UPDATE SET settled_event_id = excluded.settled_event_id,
                                              seen_event_id = excluded.seen_event_id""",
            {"settled": cursor.settled_event_id, "seen": cursor.seen_event_id})

    def alerts_of(self, incident_ids: Sequence[int]) -> list[AlertSignature]:
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(AlertSignature, self.tx.fetchall(
            f"SELECT incident_id, alertname, labels FROM alerts WHERE incident_id IN ({marks})",  # noqa: S608 - placeholders only
            params))

    def replace_terms(self, terms_by_incident: Mapping[int, Iterable[str]]) -> None:
        """Each incident's terms become the given ones (none: it leaves the index): one
        DELETE, then INSERTs of at most :data:`ROWS_PER_INSERT` rows each."""
        ids = sorted(terms_by_incident)
        if not ids:
            return
        marks, params = _marks("i", ids)
        self.tx.execute(f"DELETE FROM incident_terms WHERE incident_id IN ({marks})", params)  # noqa: S608 - placeholders only
        rows = [(t, i) for i in ids for t in sorted(set(terms_by_incident[i]))]
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            values = ", ".join(f"(:t{n}, :i{n})" for n in range(len(chunk)))
            bound: dict[str, Any] = {}
            for n, (term, incident_id) in enumerate(chunk):
                bound[f"t{n}"], bound[f"i{n}"] = term, incident_id
            self.tx.execute(
                f"INSERT INTO incident_terms (term, incident_id) VALUES {values} ON CONFLICT DO NOTHING",  # noqa: S608, E501 - numbered placeholders only
                bound)

    # -- the lookup -----------------------------------------------------------------------

    def hits(self, terms: Iterable[str], *, per_term: int) -> list[TermHit]:
        """For each term, its newest ``per_term`` incidents."""
        wanted = sorted(set(terms))
        if not wanted:
            return []
        # One statement, one index range per term (each with its own LIMIT).
        branches = " UNION ALL ".join(
            f"""SELECT term, incident_id FROM (SELECT term, incident_id FROM incident_terms
                 WHERE term = :t{i} ORDER BY incident_id DESC LIMIT :limit) AS h{i}"""  # noqa: S608 - numbered placeholders only
            for i in range(len(wanted)))
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(wanted)}
        return records(TermHit, self.tx.fetchall(branches, {**params, "limit": per_term}))

    def terms_of(self, incident_ids: Sequence[int]) -> list[TermHit]:
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(TermHit, self.tx.fetchall(
            f"SELECT term, incident_id FROM incident_terms WHERE incident_id IN ({marks})",  # noqa: S608 - placeholders only
            params))

    def past(self, incident_ids: Sequence[int]) -> list[PastIncident]:
        """Those of ``incident_ids`` that have ended."""
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        states, more = _marks("s", ENDED)
        return records(PastIncident, self.tx.fetchall(
            f"""SELECT id, state, severity, title, opened_at, resolved_at, closed_at
                  FROM incidents WHERE id IN ({marks}) AND state IN ({states})""",  # noqa: S608 - placeholders only
            {**params, **more}))

    def endings(self, incident_ids: Sequence[int]) -> list[EndingEvent]:
        """The ``resolved`` and ``state_changed`` events of the incidents, oldest first."""
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(EndingEvent, self.tx.fetchall(
            f"""SELECT incident_id, kind, actor, at FROM incident_events
                 WHERE incident_id IN ({marks}) AND kind IN ('resolved', 'state_changed')
                 ORDER BY id""",  # noqa: S608 - placeholders only
            params))

    def fixes(self, incident_ids: Sequence[int]) -> list[SucceededJob]:
        """The succeeded jobs (undos left out) of the incidents, oldest first."""
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(SucceededJob, self.tx.fetchall(
            f"""SELECT j.incident_id, j.id, j.playbook, j.rule, j.finished_at, a.decided_by
                  FROM jobs j LEFT JOIN approvals a ON a.job_id = j.id
                 WHERE j.incident_id IN ({marks}) AND j.state = 'succeeded'
                   AND j.undoes_job_id IS NULL
                 ORDER BY j.id""",  # noqa: S608 - placeholders only
            params))
