-- The record locator: which sources hold which NHS numbers, so that finding a person asks only
-- the sources that hold them. Fed by what sources answer during resolution and by a bounded
-- background sync of each source.
--
-- An entry says "this source said, at `seen_at`, that it holds a Patient with this NHS
-- number". It is removed when the source, asked about the person, says it does not.
CREATE TABLE locator_entries (
    nhs_number  TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    seen_at     BIGINT  NOT NULL,   -- Unix seconds
    PRIMARY KEY (nhs_number, source_id)
);
CREATE INDEX locator_entries_source ON locator_entries (source_id);

-- Each source's sync: when its last complete pass began (the index holds everyone it held
-- then), the pass under way (its next page), when the next round is due, the lease an
-- instance holds while it runs a round (so a fleet syncs each source once), and the last
-- failure (its kind, never an upstream's text).
CREATE TABLE locator_sources (
    source_id        TEXT    PRIMARY KEY,
    synced_at        BIGINT,            -- start of the last complete pass; NULL: never
    pass_started_at  BIGINT,            -- start of the pass under way; NULL: none
    cursor           TEXT,              -- where the pass under way goes on; NULL: from the start
    pages            BIGINT  NOT NULL DEFAULT 0,  -- pages read in the pass under way
    due_at           BIGINT  NOT NULL,  -- when the next round may start
    lease_until      BIGINT,            -- a round is under way until then
    leased_by        TEXT,              -- by which instance (its audit chain)
    attempted_at     BIGINT,            -- the last round's start
    failed_at        BIGINT,            -- the last failed round's start; NULL after a success
    failure          TEXT,              -- what kind of failure
    entries          BIGINT  NOT NULL DEFAULT 0   -- entries held for the source, as last counted
);
