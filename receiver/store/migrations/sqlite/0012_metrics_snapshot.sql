-- The incident figures of /metrics, computed by a worker's chores at most every
-- server.metrics_refresh and read by every scrape (one row, whatever the number of incidents).
CREATE TABLE metrics_snapshots (
    name               TEXT PRIMARY KEY NOT NULL,
    computed_at        TEXT NOT NULL,
    figures            TEXT NOT NULL
);
