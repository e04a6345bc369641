-- /readyz proves that the store can commit by rewriting this one row (at most once every
-- 1.5 s per process): a store that answers reads but cannot write is not ready.
CREATE TABLE store_probe (
    id                 INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at          TEXT NOT NULL
);
