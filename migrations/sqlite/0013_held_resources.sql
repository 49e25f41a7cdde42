-- Resources a `kind = "store"` source keeps in Concord's own store (what no provider owns:
-- a region's shared care plans, goals and alerts). One row per resource: its current version.
CREATE TABLE held_resources (
    source_id      TEXT    NOT NULL,  -- the configured source that holds it
    resource_type  TEXT    NOT NULL,
    id             TEXT    NOT NULL,  -- its id in that source
    person_id      TEXT    NOT NULL REFERENCES persons (id),  -- whom it is about
    version        BIGINT  NOT NULL,  -- meta.versionId, from 1
    updated_at     BIGINT  NOT NULL,  -- Unix seconds of meta.lastUpdated
    body           TEXT    NOT NULL,  -- the resource as served (FHIR JSON)
    PRIMARY KEY (source_id, resource_type, id)
);
CREATE INDEX held_resources_person ON held_resources (source_id, person_id, resource_type);

-- Every version ever written, never overwritten: the history of each resource.
CREATE TABLE held_resource_versions (
    source_id      TEXT    NOT NULL,
    resource_type  TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    version        BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    body           TEXT    NOT NULL,
    PRIMARY KEY (source_id, resource_type, id, version)
);
