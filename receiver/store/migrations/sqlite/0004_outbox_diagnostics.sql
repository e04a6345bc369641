-- Notifications outbox, diagnostics requests and evidence, incident lifecycle fields.

-- One row per event worth telling people about, written in the event's transaction.
CREATE TABLE outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    kind               TEXT NOT NULL,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    job_id             BIGINT,
    message            TEXT NOT NULL,
    detail             TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    expanded_at        TEXT
);
CREATE INDEX outbox_unexpanded_idx ON outbox (expanded_at, id);

-- One row per (message, channel): retried with backoff until delivered.
CREATE TABLE outbox_deliveries (
    outbox_id          BIGINT NOT NULL REFERENCES outbox (id),
    channel            TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    TEXT NOT NULL,
    lease_owner        TEXT,
    lease_expires_at   TEXT,
    last_error         TEXT,
    delivered_at       TEXT,
    PRIMARY KEY (outbox_id, channel),
    CHECK (state IN ('pending', 'sending', 'delivered', 'dropped'))
);
CREATE INDEX outbox_deliveries_due_idx ON outbox_deliveries (state, next_attempt_at);

-- Diagnostics to run for an incident (on open, or on demand), claimed by workers.
CREATE TABLE diagnostic_requests (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    reason             TEXT NOT NULL,
    requested_by       TEXT NOT NULL,
    state              TEXT NOT NULL,
    requested_at       TEXT NOT NULL,
    lease_owner        TEXT,
    lease_expires_at   TEXT,
    finished_at        TEXT,
    CHECK (state IN ('pending', 'running', 'done'))
);
CREATE INDEX diagnostic_requests_state_idx ON diagnostic_requests (state, id);

-- Evidence gathered for an incident: timestamped, size-capped, secrets redacted.
CREATE TABLE evidence (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    request_id         BIGINT REFERENCES diagnostic_requests (id),
    check_name         TEXT NOT NULL,
    kind               TEXT NOT NULL,
    ok                 INTEGER NOT NULL,
    summary            TEXT NOT NULL,
    detail             TEXT NOT NULL,
    started_at         TEXT NOT NULL,
    duration_ms        INTEGER NOT NULL
);
CREATE INDEX evidence_incident_idx ON evidence (incident_id, id);

ALTER TABLE incidents ADD COLUMN assignee TEXT;
ALTER TABLE incidents ADD COLUMN postmortem TEXT;
ALTER TABLE incidents ADD COLUMN false_alarm_at TEXT;
ALTER TABLE incidents ADD COLUMN sla_breached_at TEXT;
ALTER TABLE incidents ADD COLUMN escalation_level INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN next_escalation_at TEXT;
ALTER TABLE incidents ADD COLUMN last_reminder_at TEXT;
ALTER TABLE incidents ADD COLUMN resolved_by TEXT;
