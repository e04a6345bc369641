-- Chat rooms of incidents (Matrix). One row per incident, its primary key: retries, HA
-- duplicates and any number of workers never make two rooms for one incident. ``room_key``
-- is written into the room's creation content, so that a retry after a crash recognises
-- the room it made (its alias) and a room someone else holds under that alias is refused.
CREATE TABLE chat_rooms (
    incident_id        BIGINT NOT NULL PRIMARY KEY REFERENCES incidents (id),
    backend            TEXT NOT NULL,
    name               TEXT NOT NULL UNIQUE,
    room_key           TEXT NOT NULL,
    room_id            TEXT UNIQUE,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TIMESTAMPTZ NOT NULL,
    lease_owner        TEXT,
    lease_expires_at   TIMESTAMPTZ,
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    ready_at           TIMESTAMPTZ,
    CHECK (state IN ('pending', 'ready'))
);
CREATE INDEX chat_rooms_due_idx ON chat_rooms (next_attempt_at);

-- What to post in a room, in order: the pinned summary, then one message per timeline
-- event. ``txn_id`` is the client transaction id of the send, so a send repeated after a
-- lost answer is one message on the homeserver.
CREATE TABLE chat_messages (
    id                 BIGSERIAL PRIMARY KEY,
    incident_id        BIGINT NOT NULL REFERENCES chat_rooms (incident_id),
    source_event_id    BIGINT UNIQUE REFERENCES incident_events (id),
    kind               TEXT NOT NULL,
    job_id             BIGINT,
    body               TEXT NOT NULL,
    txn_id             TEXT NOT NULL UNIQUE,
    state              TEXT NOT NULL,
    event_id           TEXT UNIQUE,
    created_at         TIMESTAMPTZ NOT NULL,
    sent_at            TIMESTAMPTZ,
    CHECK (state IN ('pending', 'sent'))
);
CREATE INDEX chat_messages_room_idx ON chat_messages (incident_id, state, id);

-- Reactions and commands read from the rooms: each handled once.
CREATE TABLE chat_inbound (
    event_id           TEXT NOT NULL PRIMARY KEY,
    room_id            TEXT NOT NULL,
    sender             TEXT NOT NULL,
    job_id             BIGINT,
    action             TEXT NOT NULL,
    outcome            TEXT NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL
);

-- Where each backend's reading of the rooms stands, and which worker reads (a lease).
CREATE TABLE chat_sync (
    backend            TEXT NOT NULL PRIMARY KEY,
    since              TEXT,
    lease_owner        TEXT,
    lease_expires_at   TIMESTAMPTZ
);
