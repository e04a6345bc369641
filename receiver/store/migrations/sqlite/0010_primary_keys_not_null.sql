-- A text PRIMARY KEY column takes NULL in SQLite (an old SQLite quirk kept for
-- compatibility), any number of times, where PostgreSQL refuses it: a NULL control name,
-- session id or lock target would be stored and never conflict. The three tables keyed by
-- text are rebuilt with NOT NULL on the key (SQLite cannot alter a column), in the order
-- SQLite documents: new table, copy, drop, rename, indexes. Rows with a NULL key can not
-- have been read by their key; they are not copied.

CREATE TABLE controls_rebuilt (
    name               TEXT NOT NULL PRIMARY KEY,
    value              TEXT NOT NULL,
    reason             TEXT NOT NULL,
    updated_by         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
INSERT INTO controls_rebuilt (name, value, reason, updated_by, updated_at)
    SELECT name, value, reason, updated_by, updated_at FROM controls WHERE name IS NOT NULL;
DROP TABLE controls;
ALTER TABLE controls_rebuilt RENAME TO controls;

CREATE TABLE target_locks_rebuilt (
    target             TEXT NOT NULL PRIMARY KEY,
    job_id             BIGINT NOT NULL,
    expires_at         TEXT NOT NULL
);
INSERT INTO target_locks_rebuilt (target, job_id, expires_at)
    SELECT target, job_id, expires_at FROM target_locks WHERE target IS NOT NULL;
DROP TABLE target_locks;
ALTER TABLE target_locks_rebuilt RENAME TO target_locks;

CREATE TABLE sessions_rebuilt (
    id_hash              TEXT NOT NULL PRIMARY KEY,
    user_name            TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    last_seen_at         TEXT NOT NULL,
    expires_at           TEXT NOT NULL,
    password_fingerprint TEXT NOT NULL,
    address              TEXT,
    revoked_at           TEXT,
    revoked_reason       TEXT
);
INSERT INTO sessions_rebuilt (id_hash, user_name, created_at, last_seen_at, expires_at,
                              password_fingerprint, address, revoked_at, revoked_reason)
    SELECT id_hash, user_name, created_at, last_seen_at, expires_at,
           password_fingerprint, address, revoked_at, revoked_reason
      FROM sessions WHERE id_hash IS NOT NULL;
DROP TABLE sessions;
ALTER TABLE sessions_rebuilt RENAME TO sessions;
CREATE INDEX sessions_user_idx ON sessions (user_name, revoked_at);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
