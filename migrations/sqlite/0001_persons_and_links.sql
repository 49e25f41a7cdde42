-- A person is known to the gateway by one stable id and their NHS number.
CREATE TABLE persons (
    id          TEXT    PRIMARY KEY,
    nhs_number  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- When each source was last asked who the person is there (also when it did not know them).
CREATE TABLE source_checks (
    person_id   TEXT    NOT NULL REFERENCES persons (id),
    source_id   TEXT    NOT NULL,
    checked_at  INTEGER NOT NULL,
    PRIMARY KEY (person_id, source_id)
);

-- The person's own patient id(s) in each source. One local patient belongs to one person.
CREATE TABLE source_links (
    source_id   TEXT    NOT NULL,
    local_id    TEXT    NOT NULL,
    person_id   TEXT    NOT NULL REFERENCES persons (id),
    PRIMARY KEY (source_id, local_id)
);
CREATE INDEX source_links_person ON source_links (person_id);
