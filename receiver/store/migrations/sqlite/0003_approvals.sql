-- Approvals: one per parked job; votes are unique per approver (the two-person rule).

CREATE TABLE approvals (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id             BIGINT NOT NULL UNIQUE REFERENCES jobs (id),
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    state              TEXT NOT NULL,
    required           INTEGER NOT NULL,
    groups             TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    decided_at         TEXT,
    decided_by         TEXT,
    CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled'))
);
CREATE INDEX approvals_state_idx ON approvals (state, expires_at);

CREATE TABLE approval_votes (
    approval_id        BIGINT NOT NULL REFERENCES approvals (id),
    approver           TEXT NOT NULL,
    decision           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    at                 TEXT NOT NULL,
    origin             TEXT NOT NULL,
    PRIMARY KEY (approval_id, approver),
    CHECK (decision IN ('approve', 'deny'))
);
