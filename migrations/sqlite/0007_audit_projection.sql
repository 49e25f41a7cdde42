-- The audit log becomes an append-only table and a search projection kept beside it.
--
-- `audit_records` keeps what the chain needs and nothing else: the position, the body (the
-- record), the previous hash and the keyed hash. A request's durable append writes this table
-- and its primary key only, so a commit writes few pages. The searchable fields (when, whose
-- record, who, which organisation, purpose, outcome, review) live in `audit_search` with the
-- indexes the AuditEvent API and the IG console search; the audit writer fills it in larger
-- batches just after each commit, off the request's path. `audit_projected` says, per chain,
-- up to which position every record has its search row; records past it are found and
-- projected from their bodies (after a crash, a spool replay, or a lagging writer), and
-- `audit verify` checks that the projection says what the bodies say and hides none of them.
CREATE TABLE audit_search (
    chain        TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    recorded_us  BIGINT  NOT NULL,
    person_id    TEXT,
    user_id      TEXT,
    org          TEXT,
    purpose      TEXT,
    outcome      TEXT    NOT NULL,
    review       TEXT,
    PRIMARY KEY (chain, seq)
);
INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review)
    SELECT chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review FROM audit_records;

CREATE TABLE audit_projected (
    chain  TEXT    PRIMARY KEY,
    seq    BIGINT  NOT NULL
);
INSERT INTO audit_projected (chain, seq) SELECT chain, max(seq) FROM audit_records GROUP BY chain;

CREATE TABLE audit_log (
    chain      TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
INSERT INTO audit_log (chain, seq, body, prev_hash, hash)
    SELECT chain, seq, body, prev_hash, hash FROM audit_records ORDER BY chain, seq;
DROP TABLE audit_records;
ALTER TABLE audit_log RENAME TO audit_records;

CREATE INDEX audit_search_person ON audit_search (person_id, recorded_us);
CREATE INDEX audit_search_user ON audit_search (user_id, recorded_us);
CREATE INDEX audit_search_org ON audit_search (org, recorded_us);
CREATE INDEX audit_search_emergency ON audit_search (recorded_us) WHERE purpose = 'ETREAT';
CREATE INDEX audit_search_unsuccessful ON audit_search (outcome, recorded_us) WHERE outcome <> 'success';
CREATE INDEX audit_search_review ON audit_search (recorded_us) WHERE review IS NOT NULL;
CREATE INDEX audit_search_newest ON audit_search (recorded_us, chain, seq);
