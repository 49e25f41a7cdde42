-- The audit log's search projection (`audit_search`, its side tables and the projection
-- marks) moves to a SQLite file of its own beside the store's, `<file>-search`, which every
-- connection attaches as `search` and where the gateway makes these tables when they are
-- missing (`src/store/search.rs`). SQLite lets one transaction at a time write a file: in
-- the store's own file the projector's turns and their checkpoints held up the durable
-- appends of every request behind them (`benches/README.md`, issue 15).
--
-- The rows are copied, not projected again. Were this migration cut short after the copy
-- but before its own commit (the two files commit one after the other), it runs again and
-- copies the same rows over what is there.
INSERT OR IGNORE INTO search.audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review)
    SELECT chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review FROM main.audit_search;
INSERT OR IGNORE INTO search.audit_search_sources (chain, seq, source, recorded_us)
    SELECT chain, seq, source, recorded_us FROM main.audit_search_sources;
INSERT OR IGNORE INTO search.audit_search_agreements (chain, seq, agreement, recorded_us)
    SELECT chain, seq, agreement, recorded_us FROM main.audit_search_agreements;
INSERT INTO search.audit_projected (chain, seq) SELECT chain, seq FROM main.audit_projected WHERE true
    ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq;

DROP TABLE main.audit_search_sources;
DROP TABLE main.audit_search_agreements;
DROP TABLE main.audit_search;
DROP TABLE main.audit_projected;
