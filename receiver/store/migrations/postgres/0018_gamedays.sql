-- Game days: drills whose alerts carry a gameday="<id>" label. An alert first seen while its
-- game day runs (from started_at, before deadline_at and before ended_at) is a game-day
-- alert; an incident all of whose alerts are game-day alerts is a game-day incident (its
-- jobs run dry unless every target is one of ``targets``, and it is left out of the
-- response figures). A label naming no row here is an ordinary label.
CREATE TABLE gamedays (
    id                 TEXT NOT NULL PRIMARY KEY,
    name               TEXT NOT NULL,
    scenario           TEXT NOT NULL,
    targets            JSONB NOT NULL,
    details            JSONB NOT NULL,
    started_at         TIMESTAMPTZ NOT NULL,
    started_by         TEXT NOT NULL,
    deadline_at        TIMESTAMPTZ NOT NULL,
    ended_at           TIMESTAMPTZ,
    ended_by           TEXT,
    CHECK (deadline_at > started_at)
);
CREATE INDEX gamedays_started_idx ON gamedays (started_at);
