//! Helpers for tests of this crate and its integration tests. Not part of the gateway.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Names the PostgreSQL server tests may use, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const ENV_TEST_DATABASE_URL: &str = "CONCORD_TEST_DATABASE_URL";

/// A throw-away PostgreSQL database made for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Makes a fresh database when `CONCORD_TEST_DATABASE_URL` is set; `None` when it is not.
    ///
    /// # Panics
    /// When the variable is set but the server cannot be used: a test run that was asked to
    /// cover PostgreSQL must fail rather than pass without it.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = std::env::var(ENV_TEST_DATABASE_URL).ok()?;
        let name = format!("concord_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("{ENV_TEST_DATABASE_URL} is set but PostgreSQL does not answer: {e}")
        });
        // The name is made here from a uuid: nothing from outside reaches this SQL.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        let mut url = reqwest::Url::parse(&admin_url)
            .unwrap_or_else(|e| panic!("{ENV_TEST_DATABASE_URL} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        Some(TestDatabase {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (best effort; a leftover one is harmless).
    pub async fn drop(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// The gateway's router with authentication taken out: every FHIR request runs as
/// `principal`. For the benchmarks that measure what verifying tokens costs; only with the
/// cargo feature `fixed-principal`, which the `concord` binary is never built with.
#[cfg(feature = "fixed-principal")]
pub fn app_with_fixed_principal(
    state: crate::server::AppState,
    principal: crate::auth::Principal,
) -> axum::Router {
    crate::server::router(
        state,
        crate::server::Assumed(Some(std::sync::Arc::new(principal))),
    )
}
