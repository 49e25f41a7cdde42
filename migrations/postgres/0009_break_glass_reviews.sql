-- Break-glass reviews made in the IG console (issue 16, item 4). One row per reviewed
-- emergency access, keyed by the reviewed record's place in its chain: the primary key is
-- what makes the first review win, even when two reviewers press the button at once.
--
-- The review itself is an audit record in the chain, written first (route
-- `/console/review/{id}`, with the outcome and the note's keyed hash, never the note); this
-- row follows it and names it (`review_chain`, `review_seq`). A review counts only when its
-- row is here: a chain record with no row (the process died between the two writes, or
-- another reviewer's row came first) was an attempt, and the access stays in the queue.
CREATE TABLE break_glass_reviews (
    chain             TEXT    NOT NULL,  -- the reviewed record: its chain
    seq               BIGINT  NOT NULL,  -- and its position
    outcome           TEXT    NOT NULL,  -- appropriate | not-appropriate | follow-up
    note              TEXT    NOT NULL,  -- the reviewer's note (may be empty), at most 2,000 characters
    reviewer_issuer   TEXT    NOT NULL,  -- who vouched for the reviewer (the OIDC issuer, or `demo`)
    reviewer_subject  TEXT    NOT NULL,  -- the reviewer's id at that issuer
    reviewer_name     TEXT,
    reviewer_role     TEXT,
    reviewer_org      TEXT,              -- ODS code
    reviewed_us       BIGINT  NOT NULL,  -- Unix microseconds
    review_chain      TEXT    NOT NULL,  -- the review's own audit record: its chain
    review_seq        BIGINT  NOT NULL,  -- and its position
    PRIMARY KEY (chain, seq)
);
CREATE INDEX break_glass_reviews_newest ON break_glass_reviews (reviewed_us, chain, seq);
