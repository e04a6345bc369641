"""The similar-incident index: signature terms of ended incidents, and what a lookup needs.

``incident_terms`` maps a term (``a:<alertname>``, ``s:<key>=<value>``, ``l:<key>=<value>``;
made by :mod:`receiver.incidents.similar`) to the incidents that carry it. A worker chore
walks incidents in ``(updated_at, id)`` order from a cursor (``incident_terms_cursor``) and
rewrites the terms of each one that has ended; the webhook never writes here. A lookup reads
each term's newest incident ids with a LIMIT (the primary key's order), so its cost depends
on the number of terms and the limit, not on the number of incidents. Every value is a bound
parameter. :class:`SimilarRepository` is ``uow.similar``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from receiver.store.repository import Repository, maybe, records

ENDED = ("resolved", "closed", "false_alarm")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class IndexCursor:
    updated_at: datetime
    incident_id: int


@dataclass(frozen=True)
class ChangedIncident:
    """An incident the chore reads: its id, whether it has ended, its place in the walk."""

    id: int
    state: str
    updated_at: datetime


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
            "SELECT updated_at, incident_id FROM incident_terms_cursor WHERE id = 1"))
        return found or IndexCursor(_EPOCH, 0)

    def changed_since(self, cursor: IndexCursor, *, limit: int) -> list[ChangedIncident]:
        """Incidents after ``cursor`` in ``(updated_at, id)`` order, at most ``limit``."""
        return records(ChangedIncident, self.tx.fetchall(
            """SELECT id, state, updated_at FROM incidents
                WHERE updated_at > :t OR (updated_at = :t AND id > :id)
                ORDER BY updated_at, id LIMIT :limit""",
            {"t": cursor.updated_at, "id": cursor.incident_id, "limit": limit}))

    def advance(self, cursor: IndexCursor) -> None:
        self.tx.execute(
            """INSERT INTO incident_terms_cursor (id, updated_at, incident_id)
               VALUES (1, :t, :id)
               ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at,
                                              incident_id = excluded.incident_id""",
            {"t": cursor.updated_at, "id": cursor.incident_id})

    def alerts_of(self, incident_ids: Sequence[int]) -> list[AlertSignature]:
        if not incident_ids:
            return []
        marks, params = _marks("i", incident_ids)
        return records(AlertSignature, self.tx.fetchall(
            f"SELECT incident_id, alertname, labels FROM alerts WHERE incident_id IN ({marks})",  # noqa: S608 - placeholders only
            params))

    def replace_terms(self, incident_id: int, terms: Iterable[str]) -> None:
        """The incident's terms become ``terms`` (none: it leaves the index)."""
        self.tx.execute("DELETE FROM incident_terms WHERE incident_id = :id",
                        {"id": incident_id})
        for term in sorted(set(terms)):
            self.tx.execute(
                """INSERT INTO incident_terms (term, incident_id) VALUES (:term, :id)
                   ON CONFLICT DO NOTHING""",
                {"term": term, "id": incident_id})

    # -- the lookup -----------------------------------------------------------------------

    def hits(self, terms: Iterable[str], *, per_term: int) -> list[TermHit]:
        """For each term, its newest ``per_term`` incidents."""
        out: list[TermHit] = []
        for term in sorted(set(terms)):
            out += records(TermHit, self.tx.fetchall(
                """SELECT term, incident_id FROM incident_terms WHERE term = :term
                    ORDER BY incident_id DESC LIMIT :limit""",
                {"term": term, "limit": per_term}))
        return out

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
