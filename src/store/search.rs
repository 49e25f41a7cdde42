//! The audit log's search projection on SQLite, in a database file of its own beside the
//! store's (`<file>-search`), attached to every connection as `search` (migration 0015 moved
//! it there). SQLite lets one transaction at a time write a file: with the projection in the
//! store's own file, each turn of the projector (hundreds of rows and their index pages) and
//! each checkpoint of what it wrote held up every durable append behind it, and requests
//! waited for them (`benches/README.md`, issue 15). In a file of its own, the projector writes
//! and checkpoints beside the appends, never before them.
//!
//! The projection can be rebuilt from the log, so its file commits without waiting for the
//! disk (`synchronous = NORMAL`): a crash may take its last turns, and their marks with them
//! (the marks live in the same file), and those records are projected again from the log. A
//! projection file that is missing is made anew, empty, and filled from the log when the
//! store is migrated ([`name_every_chain`]): stopping the gateway and deleting the file (and
//! its `-wal` and `-shm`) rebuilds the projection.
//!
//! Statements name the projection's tables without a schema: SQLite finds a table in `main`
//! first and in `search` next, and `main` holds none of them once migration 0015 has run.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

use super::StoreError;

/// The projection's tables and indexes, made where they are missing: as migrations 0007 and
/// 0010 made them in the store's file.
const SCHEMA: [&str; 13] = [
    "CREATE TABLE IF NOT EXISTS search.audit_search (chain TEXT NOT NULL, seq BIGINT NOT NULL, recorded_us BIGINT NOT NULL, person_id TEXT, user_id TEXT, org TEXT, purpose TEXT, outcome TEXT NOT NULL, review TEXT, PRIMARY KEY (chain, seq))",
    "CREATE TABLE IF NOT EXISTS search.audit_projected (chain TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search.audit_search_sources (chain TEXT NOT NULL, seq BIGINT NOT NULL, source TEXT NOT NULL, recorded_us BIGINT NOT NULL, PRIMARY KEY (chain, seq, source)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS search.audit_search_agreements (chain TEXT NOT NULL, seq BIGINT NOT NULL, agreement TEXT NOT NULL, recorded_us BIGINT NOT NULL, PRIMARY KEY (chain, seq, agreement)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS search.audit_search_person ON audit_search (person_id, recorded_us)",
    "CREATE INDEX IF NOT EXISTS search.audit_search_user ON audit_search (user_id, recorded_us)",
    "CREATE INDEX IF NOT EXISTS search.audit_search_org ON audit_search (org, recorded_us)",
    "CREATE INDEX IF NOT EXISTS search.audit_search_emergency ON audit_search (recorded_us) WHERE purpose = 'ETREAT'",
    "CREATE INDEX IF NOT EXISTS search.audit_search_unsuccessful ON audit_search (outcome, recorded_us) WHERE outcome <> 'success'",
    "CREATE INDEX IF NOT EXISTS search.audit_search_review ON audit_search (recorded_us) WHERE review IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS search.audit_search_newest ON audit_search (recorded_us, chain, seq)",
    "CREATE INDEX IF NOT EXISTS search.audit_search_sources_newest ON audit_search_sources (source, recorded_us, chain, seq)",
    "CREATE INDEX IF NOT EXISTS search.audit_search_agreements_newest ON audit_search_agreements (agreement, recorded_us, chain, seq)",
];

/// Where a store's search projection lives, and how each connection attaches it.
#[derive(Debug, Clone)]
pub(super) struct Search {
    /// What `ATTACH` opens: a path, or a shared in-memory database's URI.
    file: Arc<str>,
    /// An in-memory store has an in-memory projection (no write-ahead log).
    memory: bool,
    /// The page cache for the projection, per connection: `PRAGMA cache_size`'s value
    /// (pages, or KiB when negative).
    cache_size: i64,
}

impl Search {
    /// The projection beside the database `options` opens: `<file>-search`, or for an
    /// in-memory database (named `file:…`, as sqlx names `:memory:`) a shared in-memory
    /// database of its own.
    pub(super) fn beside(
        options: &SqliteConnectOptions,
        cache_size: i64,
    ) -> Result<Search, StoreError> {
        let name = options
            .get_filename()
            .to_str()
            .ok_or_else(|| StoreError::Url("the SQLite file's path is not UTF-8".into()))?;
        let memory = name.starts_with("file:") || name == ":memory:";
        let file = if memory {
            format!("{name}-search?mode=memory&cache=shared")
        } else {
            format!("{name}-search")
        };
        Ok(Search {
            file: file.into(),
            memory,
            cache_size,
        })
    }

    /// Attaches the projection's file to `conn` as `search`, with its own settings: a
    /// write-ahead log, commits that do not wait for the disk, and its page cache. SQLite
    /// makes the file when it is missing.
    pub(super) async fn attach(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        sqlx::query("ATTACH DATABASE $1 AS search")
            .bind(&*self.file)
            .execute(&mut *conn)
            .await?;
        if !self.memory {
            sqlx::query("PRAGMA search.journal_mode = WAL")
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("PRAGMA search.synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        // An integer, not text from outside.
        let cache_size = format!("PRAGMA search.cache_size = {}", self.cache_size);
        sqlx::query(sqlx::AssertSqlSafe(cache_size))
            .execute(&mut *conn)
            .await?;
        // As the store's file: its log is cut back to 64 MiB after a checkpoint.
        sqlx::query("PRAGMA search.journal_size_limit = 67108864")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Makes the projection's tables where they are missing (a new file).
pub(super) async fn create(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    for statement in SCHEMA {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Names every chain of the log in `audit_projected` (at mark -1, so that all its records are
/// projected) where it is not named yet. The chains are found along the log's key, one step
/// per chain, not by reading every record.
pub(super) async fn name_every_chain(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "WITH RECURSIVE r(chain) AS (SELECT min(chain) FROM audit_records UNION ALL SELECT (SELECT min(x.chain) FROM audit_records x WHERE x.chain > r.chain) FROM r WHERE r.chain IS NOT NULL) \
         INSERT INTO audit_projected (chain, seq) SELECT chain, -1 FROM r WHERE chain IS NOT NULL ON CONFLICT (chain) DO NOTHING",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The projection's page cache on the audit lane's own connections, in KiB: 1 MiB, whatever
/// the pool's. The projector's turns dirty index pages all over the file, and with the
/// pool's 8 MiB the gateway's resident memory grew by about 35 MB under the demo's load (141
/// MB against 101 before the projection had a file of its own); with 1 MiB it grew by 5 MB,
/// and requests per second and p99 did not move (`benches/README.md`, issue 15). The
/// appends' connection reads the projection only to name its chain.
const LANE_CACHE_KIB: i64 = 1024;

/// Attaches the projection of the store `pool` opens to `conn`, a connection of the audit
/// lane's own, opened beside the pool with its options.
pub(super) async fn attach_beside(
    pool: &SqlitePool,
    conn: &mut SqliteConnection,
) -> Result<(), StoreError> {
    Search::beside(&pool.connect_options(), -LANE_CACHE_KIB)?
        .attach(conn)
        .await?;
    Ok(())
}
