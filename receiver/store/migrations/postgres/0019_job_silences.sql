-- The Alertmanager silences a job made while it acted, one row per Alertmanager: expired
-- (expired_at set) when the job's verification finishes or the job fails. One left open
-- when its job ended (Alertmanager was down then) is tried again by the workers' chores
-- from retry_at.
CREATE TABLE job_silences (
    id            BIGSERIAL PRIMARY KEY,
    job_id        BIGINT NOT NULL REFERENCES jobs (id),
    alertmanager  TEXT NOT NULL,
    silence_id    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    ends_at       TIMESTAMPTZ NOT NULL,
    expired_at    TIMESTAMPTZ,
    retry_at      TIMESTAMPTZ,
    UNIQUE (alertmanager, silence_id)
);
CREATE INDEX job_silences_open_idx ON job_silences (job_id) WHERE expired_at IS NULL;
