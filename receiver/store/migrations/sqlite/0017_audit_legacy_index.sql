-- Only unkeyed (sha256) entries are looked up by their algorithm (the last one is a
-- checkpoint's legacy_until), and no new entry is unkeyed: a partial index keeps that
-- lookup one probe away without writing an index page for every new entry.
DROP INDEX audit_log_alg_idx;
CREATE INDEX audit_log_legacy_idx ON audit_log (seq) WHERE alg = 'sha256';
