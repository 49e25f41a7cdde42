//! The IG console's sessions and the sign-ins under way, shared by every instance. Ids,
//! states, nonces and browser bindings are kept only as their SHA-256 (lower-case hex); the
//! caller hashes them.

use super::{Store, StoreError};

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the session id.
    pub id_hash: String,
    /// The token the session's forms carry.
    pub csrf: String,
    /// The issuer that vouched for the user (`demo` for the demo sign-in).
    pub issuer: String,
    /// The user's id at the issuer.
    pub subject: String,
    /// Display name.
    pub name: Option<String>,
    /// The organisation (ODS code) the user acts for.
    pub org: Option<String>,
    /// The role the session runs as; `None` while the user still chooses.
    pub role: Option<String>,
    /// While the user chooses: the roles on offer, as JSON.
    pub choices: Option<String>,
    /// Sign-in, Unix seconds.
    pub created_s: i64,
    /// The latest request, Unix seconds.
    pub last_seen_s: i64,
}

/// A sign-in sent to the identity provider and not back yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// SHA-256 of `state`.
    pub state_hash: String,
    /// SHA-256 of the cookie binding it to the browser that started it.
    pub browser_hash: String,
    /// SHA-256 of the nonce the ID token must carry.
    pub nonce_hash: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// When it started, Unix seconds.
    pub created_s: i64,
}

type SessionRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

impl Store {
    /// Keeps a new session.
    pub async fn create_console_session(&self, s: &ConsoleSession) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO console_sessions (id_hash, csrf, issuer, subject, name, org, role, choices, created_s, last_seen_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&s.id_hash).bind(&s.csrf).bind(&s.issuer).bind(&s.subject)
                .bind(&s.name).bind(&s.org).bind(&s.role).bind(&s.choices)
                .bind(s.created_s).bind(s.last_seen_s)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// The session with this id hash, if there is one (expired or not: the caller decides).
    pub async fn console_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let row: Option<SessionRow> = with_pool!(self, pool => sqlx::query_as("SELECT id_hash, csrf, issuer, subject, name, org, role, choices, created_s, last_seen_s FROM console_sessions WHERE id_hash = $1").bind(id_hash).fetch_optional(pool).await?);
        Ok(row.map(
            |(id_hash, csrf, issuer, subject, name, org, role, choices, created_s, last_seen_s)| {
                ConsoleSession {
                    id_hash,
                    csrf,
                    issuer,
                    subject,
                    name,
                    org,
                    role,
                    choices,
                    created_s,
                    last_seen_s,
                }
            },
        ))
    }

    /// Notes a request of the session at `now`.
    pub async fn touch_console_session(&self, id_hash: &str, now: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE console_sessions SET last_seen_s = $2 WHERE id_hash = $1")
                .bind(id_hash).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// Settles a session's role and organisation (the user chose one); false when the
    /// session is gone or had no choice waiting.
    pub async fn choose_console_role(
        &self,
        id_hash: &str,
        role: &str,
        org: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => sqlx::query("UPDATE console_sessions SET role = $2, org = $3, choices = NULL WHERE id_hash = $1 AND role IS NULL AND choices IS NOT NULL")
            .bind(id_hash).bind(role).bind(org).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// Ends a session; false when there was none.
    pub async fn delete_console_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// Ends every session last used before `idle_before` or begun before `created_before`;
    /// how many.
    pub async fn expire_console_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM console_sessions WHERE last_seen_s < $1 OR created_s < $2")
            .bind(idle_before).bind(created_before).execute(pool).await?.rows_affected());
        Ok(done)
    }

    /// Keeps a sign-in under way, after dropping those begun before `expired_before`; false
    /// (and nothing kept) when `max` are already under way.
    pub async fn begin_console_login(
        &self,
        login: &PendingLogin,
        expired_before: i64,
        max: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM console_logins WHERE created_s < $1")
                .bind(expired_before).execute(pool).await?;
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM console_logins")
                .fetch_one(pool).await?;
            if count >= max {
                return Ok(false);
            }
            sqlx::query("INSERT INTO console_logins (state_hash, browser_hash, nonce_hash, verifier, created_s) VALUES ($1, $2, $3, $4, $5)")
                .bind(&login.state_hash).bind(&login.browser_hash).bind(&login.nonce_hash)
                .bind(&login.verifier).bind(login.created_s)
                .execute(pool).await?;
        });
        Ok(true)
    }

    /// Takes the sign-in with this state hash: it is deleted as it is read, so of two
    /// callbacks naming the same state only one finds it.
    pub async fn take_console_login(
        &self,
        state_hash: &str,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let row: Option<(String, String, String, String, i64)> = with_pool!(self, pool => sqlx::query_as("DELETE FROM console_logins WHERE state_hash = $1 RETURNING state_hash, browser_hash, nonce_hash, verifier, created_s").bind(state_hash).fetch_optional(pool).await?);
        Ok(row.map(
            |(state_hash, browser_hash, nonce_hash, verifier, created_s)| PendingLogin {
                state_hash,
                browser_hash,
                nonce_hash,
                verifier,
                created_s,
            },
        ))
    }
}
