-- The audit log: hash chains, one per gateway process. `body` is the record (canonical JSON);
-- `hash` is HMAC-SHA-256 over chain, seq, prev_hash and body with a key kept outside the
-- database. The other columns repeat fields of the body for searching; `audit verify` checks
-- they match.
CREATE TABLE audit_records (
    chain        TEXT    NOT NULL,
    seq          BIGINT  NOT NULL,
    recorded_us  BIGINT  NOT NULL,
    person_id    TEXT,
    user_id      TEXT,
    org          TEXT,
    purpose      TEXT,
    outcome      TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_records_person ON audit_records (person_id, recorded_us);
CREATE INDEX audit_records_time ON audit_records (recorded_us);
