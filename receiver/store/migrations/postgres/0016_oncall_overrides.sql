-- Temporary on-call overrides: USER takes ROLE from starts_at until ends_at. Revoking one
-- keeps its row (revoked_at, revoked_by): who was on duty when stays answerable.
CREATE TABLE oncall_overrides (
    id           BIGSERIAL PRIMARY KEY,
    role         TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    starts_at    TIMESTAMPTZ NOT NULL,
    ends_at      TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    revoked_by   TEXT,
    CHECK (ends_at > starts_at)
);
CREATE INDEX oncall_overrides_role_idx ON oncall_overrides (role, ends_at);
