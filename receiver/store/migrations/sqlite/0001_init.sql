-- remediator schema v1 (SQLite). Uniqueness lives here, not in application code.

CREATE TABLE notifications (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    digest             TEXT NOT NULL UNIQUE,
    receiver           TEXT NOT NULL,
    group_key          TEXT NOT NULL,
    status             TEXT NOT NULL,
    external_url       TEXT NOT NULL,
    alert_count        INTEGER NOT NULL,
    body               TEXT NOT NULL,
    first_received_at  TEXT NOT NULL,
    last_received_at   TEXT NOT NULL,
    deliveries         INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key                TEXT NOT NULL,
    open_key           TEXT UNIQUE,          -- = key while active, NULL once resolved/closed
    state              TEXT NOT NULL,
    severity           TEXT NOT NULL,
    severity_reason    TEXT NOT NULL,
    title              TEXT NOT NULL,
    receiver           TEXT NOT NULL,
    group_key          TEXT NOT NULL,
    group_labels       TEXT NOT NULL,
    opened_at          TEXT NOT NULL,
    ack_due_at         TEXT NOT NULL,
    acknowledged_at    TEXT,
    mitigated_at       TEXT,
    resolved_at        TEXT,
    closed_at          TEXT,
    last_seen_at       TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    reopened_count     INTEGER NOT NULL DEFAULT 0,
    change_tx          TEXT NOT NULL,
    CHECK (severity IN ('P0', 'P1', 'P2', 'P3')),
    CHECK ((open_key IS NULL) = (state IN ('resolved', 'closed', 'false_alarm')))
);
CREATE INDEX incidents_key_idx ON incidents (key, resolved_at);
CREATE INDEX incidents_opened_idx ON incidents (opened_at DESC, id DESC);
CREATE INDEX incidents_state_idx ON incidents (state);

CREATE TABLE alerts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint        TEXT NOT NULL,
    starts_at          TEXT NOT NULL,
    ends_at            TEXT,
    status             TEXT NOT NULL,
    alertname          TEXT NOT NULL,
    labels             TEXT NOT NULL,
    annotations        TEXT NOT NULL,
    generator_url      TEXT NOT NULL,
    severity           TEXT NOT NULL,
    incident_id        BIGINT REFERENCES incidents (id),
    first_seen_at      TEXT NOT NULL,
    last_seen_at       TEXT NOT NULL,
    resolved_at        TEXT,
    deliveries         INTEGER NOT NULL DEFAULT 1,
    change_tx          TEXT NOT NULL,
    UNIQUE (fingerprint, starts_at),
    CHECK (status IN ('firing', 'resolved'))
);
CREATE INDEX alerts_incident_idx ON alerts (incident_id, status);

CREATE TABLE incident_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    at                 TEXT NOT NULL,
    kind               TEXT NOT NULL,
    actor              TEXT NOT NULL,
    message            TEXT NOT NULL,
    detail             TEXT NOT NULL
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, id);

-- Remediation jobs: one per (rule, alert episode) or (rule, incident), enforced here.
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    alert_id           BIGINT REFERENCES alerts (id),
    rule               TEXT NOT NULL,
    playbook           TEXT NOT NULL,
    dedupe_key         TEXT NOT NULL,
    params             TEXT NOT NULL,
    state              TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (rule, dedupe_key)
);
CREATE INDEX jobs_state_idx ON jobs (state, id);
