-- The Alertmanager silences a job made while it acted, one row per Alertmanager: expired
-- (expired_at set) when the job's verification finishes or the job fails. One left open
-- when its job ended (Alertmanager was down then) is tried again by the workers' chores
-- from retry_at.
CREATE TABLE job_silences (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        BIGINT NOT NULL REFERENCES jobs (id),
    alertmanager  TEXT NOT NULL,
    silence_id    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    ends_at       TEXT NOT NULL,
    expired_at    TEXT,
    retry_at      TEXT,
    UNIQUE (alertmanager, silence_id)
);
CREATE INDEX job_silences_open_idx ON job_silences (job_id) WHERE expired_at IS NULL;
