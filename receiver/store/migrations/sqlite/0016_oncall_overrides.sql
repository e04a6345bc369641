-- Temporary on-call overrides: USER takes ROLE from starts_at until ends_at. Revoking one
-- keeps its row (revoked_at, revoked_by): who was on duty when stays answerable.
CREATE TABLE oncall_overrides (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    role         TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    starts_at    TEXT NOT NULL,
    ends_at      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    revoked_by   TEXT,
    CHECK (ends_at > starts_at)
);
CREATE INDEX oncall_overrides_role_idx ON oncall_overrides (role, ends_at);
