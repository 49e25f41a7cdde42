-- Records flagged for IG review besides break-glass (whose purpose is ETREAT): for example a
-- person's objection to sharing withdrawn by staff on the person's request. Few records carry
-- a reason, so a partial index keeps the review queue a short index walk and costs ordinary
-- appends nothing.
ALTER TABLE audit_records ADD COLUMN review TEXT;
CREATE INDEX audit_records_review ON audit_records (recorded_us) WHERE review IS NOT NULL;
