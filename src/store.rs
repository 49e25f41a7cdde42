//! The gateway's own state in SQLite (the embedded default) or PostgreSQL (production):
//! people and their links to each source. Migrations live under `migrations/sqlite` and
//! `migrations/postgres` and are compiled into the binary. One file per table family:
//! `people` (persons and their links), `consent` (sharing choices), `audit` (the audit log's
//! records and signed heads), `audit_verify` (what `audit verify` reads), `audit_search` (its search), `console` (the IG console's
//! sessions and sign-ins under way), `review` (break-glass reviews and their queue) and
//! `fleet` (the instances sharing the store), `held` (what `kind = "store"` sources keep), `locator` (the record locator's index of who
//! holds which NHS numbers, and each source's sync); `notify` hears the changes other instances
//! make on PostgreSQL. This file holds the pool.
//!
//! Both backends run the same SQL text (`$1` placeholders work in both); times are Unix
//! seconds in an integer column and ids are text, so rows read the same from either.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

/// A store failure. The message never carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one we can use.
    #[error("store url: {0}")]
    Url(String),
    /// The database said no (connection, query or constraint).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not what the schema promises.
    #[error("corrupt row in `{0}`")]
    Corrupt(&'static str),
    /// The store did not answer within the time the caller could wait.
    #[error("the store did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// A connection pool to one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite in WAL mode.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

/// A query reading whole audit rows (the columns [`AuditRow`] decodes) through the search
/// projection, followed by `$rest`.
macro_rules! audit_select {
    ($rest:literal) => {
        concat!(
            "SELECT chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review, body, prev_hash, hash FROM audit_search JOIN audit_records USING (chain, seq)",
            $rest
        )
    };
}

mod audit;
mod audit_search;
mod audit_stats;
mod audit_verify;
mod consent;
mod console;
mod fleet;
mod held;
mod locator;
pub mod notify;
mod people;
mod review;
mod search;

pub(crate) use audit::SqliteFile;
pub use audit::{AuditLane, Columns, Projection, Record, Row, SignedHead};
pub use audit_search::{AuditColumn, AuditPosition, AuditQuery, AuditScope, AuditSpan};
pub use audit_stats::{AuditCount, ChainHead, DAY_US};
pub use audit_verify::{ChainReader, ChainRecord, ChainRecords, ProjectionRange};
pub use consent::ConsentRecord;
pub use console::{ConsoleSession, PendingLogin};
pub use fleet::{Instance, MAX_INSTANCES};
pub use held::{HeldVersion, HeldWrite};
pub use locator::{LocatorSource, PageRead, RoundEnd};
pub use people::{Link, PersonRecord};
pub use review::{BreakGlassReview, ReviewScope};
use search::Search;

/// SQLite's page cache per connection for one-off commands ([`Store::connect`]): `audit
/// verify` and the console's checks read the whole log once, and a large cache serves them.
pub const LARGE_SQLITE_CACHE_MIB: u32 = 64;

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) with a page cache of
    /// [`LARGE_SQLITE_CACHE_MIB`] per SQLite connection. A SQLite file and its folder are
    /// created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::connect_with_cache(url, max_connections, LARGE_SQLITE_CACHE_MIB).await
    }

    /// [`Store::connect`] with `sqlite_cache_mib` MiB of page cache per SQLite connection
    /// (nothing on PostgreSQL). Each connection of the pool, and the audit lane's own,
    /// keeps up to that much once it has read or written as many pages: the serving
    /// gateway's `[store] sqlite_cache_mib`.
    pub async fn connect_with_cache(
        url: &str,
        max_connections: u32,
        sqlite_cache_mib: u32,
    ) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            // The page cache per connection, in KiB (negative), for the store's file and again
            // for the search projection's (`store::search`).
            let cache_size = -i64::from(sqlite_cache_mib.max(1)) * 1024;
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk when it returns, so an audit record survives a
                // power cut, not only a crash. With WAL that is one fsync per transaction, and
                // the audit log's group commit shares it among the records of a batch.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                // The page cache per connection, in KiB (a negative `cache_size`): pages
                // beyond it are read again from the file (the operating system's cache), and
                // the audit lane's connection, which appends all the time, would otherwise
                // fill it as the log grows. No checkpoint inside a commit (it would stall the
                // request whose commit ran it): the audit projector checkpoints after its
                // turns, at most every 100 ms ([`Store::checkpoint`], then
                // [`audit::AuditLane::checkpoint`]), and index pages dirtied again and again
                // in between are written back once.
                .pragma("cache_size", cache_size.to_string())
                .pragma("wal_autocheckpoint", "0")
                // After a checkpoint the log file is cut back to 64 MiB, so a burst does not
                // leave a huge file behind.
                .pragma("journal_size_limit", "67108864");
            if let Some(dir) = options
                .get_filename()
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Url(format!("cannot create `{}`: {e}", dir.display()))
                })?;
            }
            let projection = Search::beside(&options, cache_size)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .after_connect(move |conn, _| {
                    let projection = projection.clone();
                    Box::pin(async move { projection.attach(conn).await })
                })
                .connect_with(options)
                .await?;
            search::create(&mut *pool.acquire().await?).await?;
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::Url(
                "must start with `sqlite:` or `postgres://`".into(),
            ))
        }
    }

    /// Which backend, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies pending migrations. On SQLite it then names every chain of the log in the
    /// search projection's file, so that a projection file made anew (the first start after
    /// migration 0015, or one deleted to be rebuilt) is filled from the log.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => {
                sqlx::migrate!("./migrations/sqlite").run(pool).await?;
                search::name_every_chain(pool).await?;
            }
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Copies what the SQLite write-ahead log of the database file (not the search
    /// projection's, which its projector checkpoints) holds into that file without blocking
    /// writers (a passive checkpoint on a connection of the pool); nothing on PostgreSQL.
    /// See [`AuditLane::checkpoint`] for the pass that lets the log start again.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Store::Sqlite(pool) = self {
            audit::sqlite_checkpoint(&mut *pool.acquire().await?, SqliteFile::Store).await?;
        }
        Ok(())
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }
}

fn parse_id(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt("persons.id"))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod audit_search_tests;

#[cfg(test)]
mod console_tests;

#[cfg(test)]
mod fleet_tests;

#[cfg(test)]
mod locator_tests;

#[cfg(test)]
mod review_tests;
