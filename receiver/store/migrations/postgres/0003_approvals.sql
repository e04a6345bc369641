-- Approvals: one per parked job; votes are unique per approver (the two-person rule).

CREATE TABLE approvals (
    id                 BIGSERIAL PRIMARY KEY,
    job_id             BIGINT NOT NULL UNIQUE REFERENCES jobs (id),
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    state              TEXT NOT NULL,
    required           INTEGER NOT NULL,
    groups             JSONB NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    decided_at         TIMESTAMPTZ,
    decided_by         TEXT,
    CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled'))
);
CREATE INDEX approvals_state_idx ON approvals (state, expires_at);

CREATE TABLE approval_votes (
    approval_id        BIGINT NOT NULL REFERENCES approvals (id),
    approver           TEXT NOT NULL,
    decision           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    at                 TIMESTAMPTZ NOT NULL,
    origin             JSONB NOT NULL,
    PRIMARY KEY (approval_id, approver),
    CHECK (decision IN ('approve', 'deny'))
);
