-- Every gateway instance of a fleet says here, every few seconds, what it serves and which
-- policy set it enforces, so that an operator can see when instances disagree. An instance
-- is named by its audit chain (a new one each time a process starts).
CREATE TABLE gateway_instances (
    chain             TEXT    PRIMARY KEY,  -- the instance's audit chain id
    listen            TEXT    NOT NULL,     -- the host and port it serves
    policy_hash       TEXT    NOT NULL,     -- SHA-256 of the policy set it enforces
    policy_loaded_at  TEXT    NOT NULL,     -- when that set was loaded (RFC 3339)
    started_at        BIGINT  NOT NULL,     -- Unix seconds
    heartbeat_at      BIGINT  NOT NULL      -- Unix seconds: the latest word from it
);
CREATE INDEX gateway_instances_heartbeat ON gateway_instances (heartbeat_at);

-- Change notices. Every instance caches people's links and sharing choices for a moment;
-- each change to them, whoever makes it (any instance, any version of the gateway, an
-- operator's own SQL), tells every instance listening on `concord_changes` whose they were,
-- in the same transaction (PostgreSQL delivers the notice on commit, once per transaction
-- and payload). The payload is `consent:<gateway person id>` or `links:<gateway person id>`:
-- a uuid the gateway made, never an NHS number or a name.
CREATE FUNCTION concord_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('concord_changes', TG_ARGV[0] || ':' || NEW.person_id);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('concord_changes', TG_ARGV[0] || ':' || OLD.person_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER consents_changed AFTER INSERT OR UPDATE OR DELETE ON consents
    FOR EACH ROW EXECUTE FUNCTION concord_notify_change('consent');
CREATE TRIGGER source_links_changed AFTER INSERT OR UPDATE OR DELETE ON source_links
    FOR EACH ROW EXECUTE FUNCTION concord_notify_change('links');
-- A check forgotten means "look this person up there again" (a link found stale); a check
-- merely renewed changes nothing another instance must drop.
CREATE TRIGGER source_checks_forgotten AFTER DELETE ON source_checks
    FOR EACH ROW EXECUTE FUNCTION concord_notify_change('links');
