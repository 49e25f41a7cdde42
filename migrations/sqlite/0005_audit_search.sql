-- AuditEvent search (GET /fhir/AuditEvent): whose record (person, in 0003), who looked (user)
-- and which organisation, each with the time, so a page of the newest matching records is
-- read from the index's end. The time index gains the keyset's tie-breakers (chain, seq) so
-- that newest-first paging is an index walk.
--
-- Every index costs each append (a busy gateway appends thousands of records a second), so
-- purpose and outcome get partial indexes over the records an IG lead reviews, which are
-- few: break-glass access (the ETREAT queue) and requests that were refused or failed.
-- Searches for common values (TREAT, success) walk the time index instead.
CREATE INDEX audit_records_user ON audit_records (user_id, recorded_us);
CREATE INDEX audit_records_org ON audit_records (org, recorded_us);
CREATE INDEX audit_records_emergency ON audit_records (recorded_us) WHERE purpose = 'ETREAT';
CREATE INDEX audit_records_unsuccessful ON audit_records (outcome, recorded_us) WHERE outcome <> 'success';
CREATE INDEX audit_records_newest ON audit_records (recorded_us, chain, seq);
DROP INDEX audit_records_time;
