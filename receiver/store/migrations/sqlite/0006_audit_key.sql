-- The audit chain is keyed: new entries are HMAC-SHA256 under a key kept outside the
-- database. Entries written before have alg 'sha256' and still verify as plain SHA-256.
ALTER TABLE audit_log ADD COLUMN alg TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
-- The last unkeyed entry (a checkpoint's legacy_until) is one index probe away.
CREATE INDEX audit_log_alg_idx ON audit_log (alg, seq);
