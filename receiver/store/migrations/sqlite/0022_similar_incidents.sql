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
-- How far the chore has read the timeline (incident_events.id, the primary key): every event
-- up to seen_event_id was indexed once; up to settled_event_id once more after it settled,
-- so an event whose transaction committed late (a lower id seen after a higher one) is not
-- missed.
CREATE TABLE incident_terms_cursor (
    id                INTEGER NOT NULL PRIMARY KEY,
    settled_event_id  BIGINT NOT NULL,
    seen_event_id     BIGINT NOT NULL,
    CHECK (id = 1)
);
