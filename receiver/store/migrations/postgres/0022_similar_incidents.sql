-- Similar past incidents: an inverted index of each ended incident's signature terms
-- (a:<alertname>, s:<service label>=<value>, l:<label>=<value>; long terms hashed), written
-- by a worker chore, never by the webhook. A lookup reads, for each term of the incident
-- at hand, the newest incident ids of that term (the primary key's order, with a LIMIT),
-- then scores the candidates in Python (receiver/incidents/similar.py).
CREATE TABLE incident_terms (
    term          TEXT NOT NULL,
    incident_id   BIGINT NOT NULL REFERENCES incidents (id),
    PRIMARY KEY (term, incident_id)
);
CREATE INDEX incident_terms_incident_idx ON incident_terms (incident_id);
-- How far the chore has indexed: the (updated_at, id) of the last incident it read.
CREATE TABLE incident_terms_cursor (
    id            INTEGER NOT NULL PRIMARY KEY,
    updated_at    TIMESTAMPTZ NOT NULL,
    incident_id   BIGINT NOT NULL,
    CHECK (id = 1)
);
-- The chore walks incidents in (updated_at, id) order from its cursor.
CREATE INDEX incidents_updated_idx ON incidents (updated_at, id);
