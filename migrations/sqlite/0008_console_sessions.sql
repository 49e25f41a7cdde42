-- The IG console's sessions, shared by every instance of a fleet. Only the SHA-256 of a
-- session id is kept (the id itself is in the browser's cookie alone). A session whose role
-- is not chosen yet (NHS CIS2 offered several) holds the choices and nothing else works.
CREATE TABLE console_sessions (
    id_hash      TEXT    PRIMARY KEY,  -- SHA-256 of the session id, lower-case hex
    csrf         TEXT    NOT NULL,     -- the token every form of the session carries
    issuer       TEXT    NOT NULL,     -- who vouched for the user (the OIDC issuer, or `demo`)
    subject      TEXT    NOT NULL,     -- the user's id at that issuer
    name         TEXT,                 -- display name
    org          TEXT,                 -- ODS code of the organisation the user acts for
    role         TEXT,                 -- the role chosen; NULL while choices wait
    choices      TEXT,                 -- JSON [[role, org], ...] while the user chooses
    created_s    BIGINT  NOT NULL,     -- Unix seconds: sign-in
    last_seen_s  BIGINT  NOT NULL      -- Unix seconds: the latest request
);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_s);
CREATE INDEX console_sessions_created ON console_sessions (created_s);

-- Sign-ins under way: sent to the identity provider, not back yet. Each is taken (deleted)
-- by the one callback that names its state, so a replayed callback finds nothing.
CREATE TABLE console_logins (
    state_hash    TEXT    PRIMARY KEY,  -- SHA-256 of `state`
    browser_hash  TEXT    NOT NULL,     -- SHA-256 of the cookie that binds it to one browser
    nonce_hash    TEXT    NOT NULL,     -- SHA-256 of the ID token's expected `nonce`
    verifier      TEXT    NOT NULL,     -- the PKCE code verifier (sent once, at the token endpoint)
    created_s     BIGINT  NOT NULL      -- Unix seconds
);
CREATE INDEX console_logins_created ON console_logins (created_s);
