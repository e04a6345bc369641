-- The target a queued job waits for (held by another job's lock): releasing that lock makes
-- the job runnable at once, instead of at its timed retry.
ALTER TABLE jobs ADD COLUMN waiting_for TEXT;
CREATE INDEX jobs_waiting_for_idx ON jobs (waiting_for) WHERE waiting_for IS NOT NULL;
