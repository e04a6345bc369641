-- An undo is a job of its own: undoes_job_id names the job whose action it takes back
-- (the undo runs the playbook's undo instead of its run). A job is undone at most once.
ALTER TABLE jobs ADD COLUMN undoes_job_id BIGINT REFERENCES jobs (id);
CREATE UNIQUE INDEX jobs_undoes_job_id_key ON jobs (undoes_job_id) WHERE undoes_job_id IS NOT NULL;
