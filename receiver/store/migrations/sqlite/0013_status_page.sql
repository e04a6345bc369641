-- The public status page: incidents as the public sees them, the updates operators wrote
-- for them, and operators' overrides of a component's status. Nothing here is written by
-- intake: every row comes from an operator (page form or API).

-- One public incident per internal incident, created by its first public update. Its
-- title is the operator's, never the alert's. severity is the internal incident's at the
-- latest published update (what the components' status follows); status the latest
-- published update's.
CREATE TABLE status_incidents (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL UNIQUE REFERENCES incidents (id),
    title              TEXT NOT NULL,
    status             TEXT NOT NULL,
    severity           TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    published_at       TEXT,
    resolved_at        TEXT,
    CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved')),
    CHECK (severity IN ('P0', 'P1', 'P2', 'P3'))
);
CREATE INDEX status_incidents_published_idx ON status_incidents (published_at, resolved_at);

-- Each update an operator wrote. state 'pending' waits for a second operator (the first
-- public post of an incident, when status_page.approval.first_post is on); only
-- 'published' ones are shown. approved_by differs from created_by (checked in the
-- approving UPDATE and here).
CREATE TABLE status_updates (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    status_incident_id BIGINT NOT NULL REFERENCES status_incidents (id),
    status             TEXT NOT NULL,
    body               TEXT NOT NULL,
    state              TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    published_at       TEXT,
    decided_by         TEXT,
    decided_at         TEXT,
    CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved')),
    CHECK (state IN ('pending', 'published', 'rejected')),
    CHECK (decided_by IS NULL OR decided_by <> created_by)
);
CREATE INDEX status_updates_incident_idx ON status_updates (status_incident_id, state);
CREATE INDEX status_updates_published_idx ON status_updates (published_at);
-- At most one update of an incident waits for approval at a time.
CREATE UNIQUE INDEX status_updates_one_pending_idx ON status_updates (status_incident_id)
    WHERE state = 'pending';

-- The components each public incident affects, by the configured matchers, as of its
-- latest published update.
CREATE TABLE status_incident_components (
    status_incident_id BIGINT NOT NULL REFERENCES status_incidents (id),
    component          TEXT NOT NULL,
    PRIMARY KEY (status_incident_id, component)
);

-- An operator's override of a component's status (absent: it follows its incidents).
CREATE TABLE status_overrides (
    component          TEXT NOT NULL PRIMARY KEY,
    status             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    set_by             TEXT NOT NULL,
    set_at             TEXT NOT NULL,
    CHECK (status IN ('operational', 'degraded_performance', 'partial_outage',
                      'major_outage', 'under_maintenance'))
);
