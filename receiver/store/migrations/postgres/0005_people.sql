-- Login sessions kept on the server (revocable) and failed-login counters (rate limits).

-- One row per login. The cookie carries the session id; only its SHA-256 is stored here.
-- password_fingerprint is an HMAC of the user's password hash at login: when the
-- configured hash changes, every session of that user stops working.
CREATE TABLE sessions (
    id_hash              TEXT PRIMARY KEY,
    user_name            TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ NOT NULL,
    expires_at           TIMESTAMPTZ NOT NULL,
    password_fingerprint TEXT NOT NULL,
    address              TEXT,
    revoked_at           TIMESTAMPTZ,
    revoked_reason       TEXT
);
CREATE INDEX sessions_user_idx ON sessions (user_name, revoked_at);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Failed logins per user name, per client address and in all ('global', '*': bounds
-- the audit entries), in a fixed window from the first.
-- attempts counts every try of the window (including the ones refused with 429);
-- previous_attempts keeps the count of the window before, for the audit entry.
CREATE TABLE login_failures (
    kind                 TEXT NOT NULL,
    key                  TEXT NOT NULL,
    window_started_at    TIMESTAMPTZ NOT NULL,
    attempts             INTEGER NOT NULL,
    previous_attempts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key),
    CHECK (kind IN ('user', 'address', 'global')),
    CHECK (attempts >= 0)
);
CREATE INDEX login_failures_window_idx ON login_failures (window_started_at);
