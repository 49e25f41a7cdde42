-- A person's sharing choices (FHIR Consent, scope patient-privacy). Rows are never updated:
-- the newest row for a (person, kind, organisation) says whether that objection stands.
CREATE TABLE consents (
    id           TEXT    PRIMARY KEY,
    person_id    TEXT    NOT NULL REFERENCES persons (id),
    kind         TEXT    NOT NULL,  -- not_from: a provider's records; not_to: an organisation
    org          TEXT    NOT NULL,  -- ODS code
    active       INTEGER NOT NULL,  -- 1: the objection stands; 0: withdrawn
    recorded_us  BIGINT  NOT NULL,  -- Unix microseconds
    resource     TEXT    NOT NULL   -- the Consent as the gateway serves it (JSON)
);
CREATE INDEX consents_person ON consents (person_id, recorded_us);
