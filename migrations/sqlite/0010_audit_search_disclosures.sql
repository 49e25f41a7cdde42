-- Who sees an audit record depends on more than who made the request: an IG lead sees the
-- accesses by their own organisation's staff (`audit_search.org`) and the accesses to the
-- data their organisation discloses, and searches by the agreement behind a disclosure. A
-- record discloses resources from several sources under several agreements, so both are
-- side tables of the search projection, one row per record and value, written by the
-- projector in the same transaction as the record's `audit_search` row and compared with
-- the bodies by `audit verify`.
--
-- The source is the part of a disclosed resource's gateway id (`Type/{source}.{id}`) before
-- its first `.`: a source id never changes once in use (README, `[[source]] id`), and the
-- config says which organisation controls each source's data, so a search asks for the
-- sources of the reader's organisation. Each row repeats its record's time so that a page of
-- the newest records of one source or agreement is read from the index's end.
CREATE TABLE audit_search_sources (
    chain        TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    source       TEXT    NOT NULL,
    recorded_us  BIGINT  NOT NULL,
    PRIMARY KEY (chain, seq, source)
) WITHOUT ROWID;

CREATE TABLE audit_search_agreements (
    chain        TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    agreement    TEXT    NOT NULL,
    recorded_us  BIGINT  NOT NULL,
    PRIMARY KEY (chain, seq, agreement)
) WITHOUT ROWID;

-- The records already projected, from their bodies (a body that is not JSON gives none; its
-- search row is already wrong and `audit verify` names it). Records past their chain's
-- projection mark get theirs when they are projected.
INSERT OR IGNORE INTO audit_search_sources (chain, seq, source, recorded_us)
    SELECT chain, seq, substr(tail, 1, instr(tail, '.') - 1), recorded_us
    FROM (
        SELECT s.chain, s.seq, s.recorded_us,
               substr(ref, instr(ref, '/') + 1) AS tail
        FROM (
            SELECT s.chain, s.seq, s.recorded_us,
                   CASE WHEN e.type = 'object' THEN json_extract(e.value, '$.reference') END AS ref
            FROM audit_search s
            JOIN audit_records r ON r.chain = s.chain AND r.seq = s.seq,
                 json_each(CASE WHEN json_valid(r.body) THEN r.body ELSE '{}' END, '$.disclosed') e
        ) s
        WHERE instr(ref, '/') > 0
    )
    WHERE instr(tail, '.') > 1;

INSERT OR IGNORE INTO audit_search_agreements (chain, seq, agreement, recorded_us)
    SELECT chain, seq, agreement, recorded_us
    FROM (
        SELECT s.chain, s.seq, s.recorded_us,
               CASE WHEN e.type = 'object' THEN json_extract(e.value, '$.agreement') END AS agreement
        FROM audit_search s
        JOIN audit_records r ON r.chain = s.chain AND r.seq = s.seq,
             json_each(CASE WHEN json_valid(r.body) THEN r.body ELSE '{}' END, '$.disclosed') e
    )
    WHERE agreement IS NOT NULL;

CREATE INDEX audit_search_sources_newest ON audit_search_sources (source, recorded_us, chain, seq);
CREATE INDEX audit_search_agreements_newest ON audit_search_agreements (agreement, recorded_us, chain, seq);
