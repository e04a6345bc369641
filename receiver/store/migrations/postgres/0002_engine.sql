-- Remediation engine: job lifecycle columns, per-target locks, controls, the audit log.

ALTER TABLE jobs ADD COLUMN severity TEXT NOT NULL DEFAULT 'P3';
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN not_before TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN started_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN finished_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN approved_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN idempotent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN risk TEXT;
ALTER TABLE jobs ADD COLUMN targets JSONB;
ALTER TABLE jobs ADD COLUMN plan JSONB;
ALTER TABLE jobs ADD COLUMN result JSONB;
ALTER TABLE jobs ADD COLUMN reason TEXT;
ALTER TABLE jobs ADD COLUMN parent_job_id BIGINT;
ALTER TABLE jobs ADD COLUMN chain_depth INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_lease_idx ON jobs (state, lease_expires_at);

ALTER TABLE incident_events ADD COLUMN job_id BIGINT;

-- What each job touched and when: cooldowns, rate budgets and blast radius read this.
CREATE TABLE job_targets (
    job_id             BIGINT NOT NULL REFERENCES jobs (id),
    rule               TEXT NOT NULL,
    target             TEXT NOT NULL,
    acted_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, target)
);
CREATE INDEX job_targets_target_idx ON job_targets (target, acted_at);
CREATE INDEX job_targets_rule_idx ON job_targets (rule, acted_at);

-- Per-target mutual exclusion across every worker process and host.
CREATE TABLE target_locks (
    target             TEXT PRIMARY KEY,
    job_id             BIGINT NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL
);

-- Kill switches and circuit breakers: name -> value, changed only through audited calls.
CREATE TABLE controls (
    name               TEXT PRIMARY KEY,
    value              TEXT NOT NULL,
    reason             TEXT NOT NULL,
    updated_by         TEXT NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- Append-only, hash-chained: hash = sha256(prev_hash || canonical JSON of the entry).
CREATE TABLE audit_log (
    id                 BIGSERIAL PRIMARY KEY,
    seq                BIGINT NOT NULL UNIQUE,
    at                 TIMESTAMPTZ NOT NULL,
    actor              TEXT NOT NULL,
    action             TEXT NOT NULL,
    subject            TEXT NOT NULL,
    incident_id        BIGINT,
    details            JSONB NOT NULL,
    origin             JSONB NOT NULL,
    prev_hash          TEXT NOT NULL,
    hash               TEXT NOT NULL
);
CREATE INDEX audit_log_incident_idx ON audit_log (incident_id, seq);
CREATE INDEX audit_log_action_idx ON audit_log (action, seq);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
