-- Signed chain heads: now and then a gateway signs the newest stored record of its chain
-- (Ed25519) and keeps the signed head here, besides handing it to an outside witness.
-- `audit verify` checks every head: its signature, that the record it names is there with
-- that hash, and so that no chain was cut short after it was signed.
CREATE TABLE audit_heads (
    chain       TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    hash        TEXT    NOT NULL,
    signed_us   BIGINT  NOT NULL,
    public_key  TEXT    NOT NULL,
    signature   TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
