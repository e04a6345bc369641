-- Look-ups for the /metrics summary (one aggregate query per scrape): an incident's started
-- jobs, and the timeline events written by people (a small part of all events).
CREATE INDEX jobs_incident_idx ON jobs (incident_id, started_at);
CREATE INDEX incident_events_human_idx ON incident_events (incident_id) WHERE actor LIKE 'user:%';
