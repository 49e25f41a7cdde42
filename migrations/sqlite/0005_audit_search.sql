-- AuditEvent search (GET /fhir/AuditEvent): each searchable column with the time, so a page
-- of the newest matching records is read from the index's end. The time index gains the
-- keyset's tie-breakers (chain, seq) so that newest-first paging is an index walk.
CREATE INDEX audit_records_user ON audit_records (user_id, recorded_us);
CREATE INDEX audit_records_org ON audit_records (org, recorded_us);
CREATE INDEX audit_records_purpose ON audit_records (purpose, recorded_us);
CREATE INDEX audit_records_outcome ON audit_records (outcome, recorded_us);
CREATE INDEX audit_records_newest ON audit_records (recorded_us, chain, seq);
DROP INDEX audit_records_time;
