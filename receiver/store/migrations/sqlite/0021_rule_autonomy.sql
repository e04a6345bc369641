-- Earned autonomy (approval: {mode: earned}): a rule's current level and what set it back.
-- rule_autonomy holds one row per rule that has ever been assessed: 'approval' (its jobs
-- need approval) or 'autonomous' (they run without); streak_started_at is the last setback,
-- so only runs verified after it count towards a promotion.
CREATE TABLE rule_autonomy (
    rule          TEXT NOT NULL PRIMARY KEY,
    level         TEXT NOT NULL,
    changed_at    TEXT NOT NULL,
    streak_started_at TEXT,
    reason        TEXT NOT NULL,
    job_id        BIGINT,
    incident_id   BIGINT,
    CHECK (level IN ('approval', 'autonomous'))
);
-- What set a rule back: a job's verification failed, the job was undone, or its alert
-- fired again within the rule's recurrence. One row per job and cause, whoever sees it.
CREATE TABLE rule_setbacks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    rule          TEXT NOT NULL,
    job_id        BIGINT NOT NULL REFERENCES jobs (id),
    cause         TEXT NOT NULL,
    at            TEXT NOT NULL,
    incident_id   BIGINT NOT NULL,
    detail        TEXT NOT NULL,
    recorded_at   TEXT NOT NULL,
    UNIQUE (rule, job_id, cause),
    CHECK (cause IN ('verification_failed', 'undone', 'recurred'))
);
CREATE INDEX rule_setbacks_rule_idx ON rule_setbacks (rule, at);
CREATE INDEX jobs_rule_finished_idx ON jobs (rule, finished_at);
