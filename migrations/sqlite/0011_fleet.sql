-- Every gateway instance says here, every few seconds, what it serves and which policy set it
-- enforces (on SQLite there is one process per file, so one instance; the table is the same
-- as on PostgreSQL, where a fleet shares it). An instance is named by its audit chain.
CREATE TABLE gateway_instances (
    chain             TEXT    PRIMARY KEY,  -- the instance's audit chain id
    listen            TEXT    NOT NULL,     -- the host and port it serves
    policy_hash       TEXT    NOT NULL,     -- SHA-256 of the policy set it enforces
    policy_loaded_at  TEXT    NOT NULL,     -- when that set was loaded (RFC 3339)
    started_at        BIGINT  NOT NULL,     -- Unix seconds
    heartbeat_at      BIGINT  NOT NULL      -- Unix seconds: the latest word from it
);
CREATE INDEX gateway_instances_heartbeat ON gateway_instances (heartbeat_at);
