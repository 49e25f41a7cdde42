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
);

CREATE TABLE audit_search_agreements (
    chain        TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    agreement    TEXT    NOT NULL,
    recorded_us  BIGINT  NOT NULL,
    PRIMARY KEY (chain, seq, agreement)
);

-- A body as JSON, or NULL when it is not JSON (PostgreSQL 15 has no test for that), so that
-- one corrupt record cannot stop the migration: its search row is already wrong and `audit
-- verify` names it.
CREATE FUNCTION pg_temp.concord_jsonb(body text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN body::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The records already projected, from their bodies. Records past their chain's projection
-- mark get theirs when they are projected.
CREATE TEMPORARY TABLE concord_disclosed AS
    SELECT s.chain, s.seq, s.recorded_us,
           d.value ->> 'reference' AS ref, d.value ->> 'agreement' AS agreement
    FROM audit_search s
    JOIN audit_records r ON r.chain = s.chain AND r.seq = s.seq
    CROSS JOIN LATERAL (SELECT pg_temp.concord_jsonb(r.body) -> 'disclosed' AS list) b
    CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN jsonb_typeof(b.list) = 'array' THEN b.list ELSE '[]'::jsonb END
    ) d
    WHERE jsonb_typeof(d.value) = 'object';

INSERT INTO audit_search_sources (chain, seq, source, recorded_us)
    SELECT chain, seq, split_part(tail, '.', 1), recorded_us
    FROM (
        SELECT chain, seq, recorded_us, substr(ref, strpos(ref, '/') + 1) AS tail
        FROM concord_disclosed
        WHERE strpos(ref, '/') > 0
    ) t
    WHERE strpos(tail, '.') > 1
    ON CONFLICT DO NOTHING;

INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us)
    SELECT chain, seq, agreement, recorded_us
    FROM concord_disclosed
    WHERE agreement IS NOT NULL
    ON CONFLICT DO NOTHING;

DROP TABLE concord_disclosed;
DROP FUNCTION pg_temp.concord_jsonb(text);

CREATE INDEX audit_search_sources_newest ON audit_search_sources (source, recorded_us, chain, seq);
CREATE INDEX audit_search_agreements_newest ON audit_search_agreements (agreement, recorded_us, chain, seq);
