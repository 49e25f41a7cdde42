//! The audit log's stored forms (records, their search columns, signed heads), appended
//! and read in order. The store owns them; the audit log (`crate::audit`) makes, hashes,
//! signs and checks them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

// The audit log's stored forms. The store owns them (it reads and writes them); the audit log
// (`crate::audit`) makes, hashes, signs and checks them.

/// A stored (or spooled) record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The chain.
    pub chain: String,
    /// Position in the chain, from 0.
    pub seq: i64,
    /// The body's canonical encoding.
    pub body: String,
    /// The previous record's hash (`GENESIS`, all zeros, for the first).
    pub prev_hash: String,
    /// This record's keyed hash.
    pub hash: String,
}

/// The columns stored beside the body for searching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// Microseconds.
    pub recorded_us: i64,
    /// The person.
    pub person: Option<String>,
    /// The user.
    pub user: Option<String>,
    /// The organisation.
    pub org: Option<String>,
    /// The purpose.
    pub purpose: Option<String>,
    /// The outcome.
    pub outcome: String,
    /// Why it is flagged for IG review, if it is.
    pub review: Option<String>,
    /// The sources whose data it disclosed (each once, sorted): `audit_search_sources`.
    /// Filled for projecting; empty on rows read back by a search or an export (the body
    /// holds them).
    pub sources: Vec<String>,
    /// The agreements its disclosures were made under (each once, sorted):
    /// `audit_search_agreements`. Filled for projecting, like `sources`.
    pub agreements: Vec<String>,
}

/// A record found by a search: the record and its searchable columns.
#[derive(Debug, Clone)]
pub struct Row {
    /// The record.
    pub record: Record,
    /// The columns.
    pub columns: Columns,
}

/// A record's row in the search projection: its chain, position and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// The chain.
    pub chain: std::sync::Arc<str>,
    /// Position in the chain.
    pub seq: i64,
    /// The searchable columns.
    pub columns: Columns,
}

/// A chain's head, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The chain.
    pub chain: String,
    /// The position of the newest record vouched for.
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// When it was signed, Unix microseconds.
    pub signed_us: i64,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    /// The Ed25519 signature over `SignedHead::message` (in `audit::heads`), hex.
    pub signature: String,
}

pub(super) type AuditRow = (
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    String,
);

/// A record's own columns, as read: chain, seq, body, prev_hash, hash.
type RecordRow = (String, i64, String, String, String);

fn record((chain, seq, body, prev_hash, hash): RecordRow) -> Record {
    Record {
        chain,
        seq,
        body,
        prev_hash,
        hash,
    }
}

pub(super) fn audit_row(r: AuditRow) -> Row {
    let (
        chain,
        seq,
        recorded_us,
        person,
        user,
        org,
        purpose,
        outcome,
        review,
        body,
        prev_hash,
        hash,
    ) = r;
    Row {
        record: record((chain, seq, body, prev_hash, hash)),
        columns: Columns {
            recorded_us,
            person,
            user,
            org,
            purpose,
            outcome,
            review,
            sources: Vec::new(),
            agreements: Vec::new(),
        },
    }
}

/// Names chains in `audit_projected` (at mark -1) if they are not there yet, so that their
/// records are found for projection even if the process dies before it projects them.
async fn name_chains<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    chains: &[&str],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    for chain in chains {
        sqlx::query::<DB>("INSERT INTO audit_projected (chain, seq) VALUES ($1, -1) ON CONFLICT (chain) DO NOTHING")
            .bind(*chain)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Moves each chain's projection mark over a run `(chain, first, last)` of projected
/// positions when the run continues it.
async fn move_marks<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    runs: &[(&str, i64, i64)],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    for (chain, first, last) in runs {
        sqlx::query::<DB>(
            "UPDATE audit_projected SET seq = $3 WHERE chain = $1 AND seq >= $2 - 1 AND seq < $3",
        )
        .bind(*chain)
        .bind(*first)
        .bind(*last)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The chains a batch holds (one, the writer's or a spool's, but anything else is named too).
fn chains(records: &[Record]) -> Vec<&str> {
    let mut chains: Vec<&str> = Vec::new();
    for record in records {
        if !chains.contains(&record.chain.as_str()) {
            chains.push(record.chain.as_str());
        }
    }
    chains
}

/// The unbroken runs `(chain, first, last)` of positions in projected rows.
fn runs(rows: &[Projection]) -> Vec<(&str, i64, i64)> {
    let mut runs: Vec<(&str, i64, i64)> = Vec::new();
    for row in rows {
        match runs.last_mut() {
            Some((chain, _, last)) if **chain == *row.chain && *last + 1 == row.seq => {
                *last = row.seq;
            }
            _ => runs.push((&row.chain, row.seq, row.seq)),
        }
    }
    runs
}

/// A side table of the search projection: one row per record and value of a multi-valued
/// column (migration 0010).
struct SideTable {
    /// The head of a SQLite multi-row insert.
    sqlite: &'static str,
    /// The whole PostgreSQL insert, over arrays of chains, positions, values and times.
    postgres: &'static str,
    /// The record's values.
    values: fn(&Columns) -> &[String],
}

/// The sources each record disclosed data from, and the agreements it disclosed under.
const SIDE_TABLES: [SideTable; 2] = [
    SideTable {
        sqlite: "INSERT OR IGNORE INTO audit_search_sources (chain, seq, source, recorded_us) ",
        postgres: "INSERT INTO audit_search_sources (chain, seq, source, recorded_us) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[]) ON CONFLICT DO NOTHING",
        values: |c| &c.sources,
    },
    SideTable {
        sqlite: "INSERT OR IGNORE INTO audit_search_agreements (chain, seq, agreement, recorded_us) ",
        postgres: "INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[]) ON CONFLICT DO NOTHING",
        values: |c| &c.agreements,
    },
];

/// The rows of a side table for projected rows: (chain, seq, value, recorded_us).
fn side_rows(
    rows: &[Projection],
    values: fn(&Columns) -> &[String],
) -> Vec<(&str, i64, &str, i64)> {
    rows.iter()
        .flat_map(|p| {
            values(&p.columns)
                .iter()
                .map(|v| (&*p.chain, p.seq, v.as_str(), p.columns.recorded_us))
        })
        .collect()
}

/// Inserts records into the log on PostgreSQL, in one statement (committed on its own when
/// `executor` is the pool). One statement text whatever the batch's size, so it is prepared
/// once per connection.
async fn postgres_insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    records: &[Record],
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_records (chain, seq, body, prev_hash, hash) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[])")
        .bind(records.iter().map(|r| r.chain.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.prev_hash.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>())
        .execute(executor)
        .await?;
    Ok(())
}

/// `items` in pieces of `most` (a power of two) and then of ever smaller powers of two, for
/// multi-row inserts on SQLite: a batch of any size is written by statements of at most
/// `log2(most) + 1` shapes, which the connection keeps prepared, instead of a statement of
/// its own size parsed and planned again for almost every batch.
fn pieces<T>(items: &[T], most: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= most {
            most
        } else {
            1 << rest.len().ilog2()
        };
        let (piece, after) = rest.split_at(size);
        rest = after;
        Some(piece)
    })
}

/// [`Store::append_audit`] on one SQLite connection. Each chain is first named in
/// `audit_projected`, in a transaction of its own: the projection lives in a file of its
/// own (`store::search`), and the append's transaction writes the store's file alone, so
/// that it never waits for the projector's. A chain named whose append then fails has no
/// records to project, which is harmless.
async fn sqlite_append(
    conn: &mut sqlx::SqliteConnection,
    records: &[Record],
) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    name_chains(&mut tx, &chains(records)).await?;
    tx.commit().await?;
    let mut tx = conn.begin().await?;
    log_insert("", records, "")
        .build()
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Most records in one insert into the log (SQLite): a writer's whole batch (the audit
/// writer's `MAX_BATCH`), 2,560 parameters, within SQLite's 32,766 for one statement.
const LOG_ROWS_PER_INSERT: usize = 512;

/// The log's rows for `records` (SQLite) as one text, after `head` and before `tail`, which
/// the connection's thread runs in one round trip: one multi-row insert for a writer's batch,
/// and one for each [`LOG_ROWS_PER_INSERT`] records of a longer list. The text is the same
/// for every batch of the same size; the connection keeps the last hundred texts it ran
/// prepared (sqlx's statement cache), which holds every size the demo's load meets. Under
/// 256 writers, whose batches take many sizes, a text may be parsed again, and they
/// appended as fast as with one cached text for each power-of-two piece of a batch
/// (`benches/README.md`, issue 15; the cache's hit rate was not measured).
fn log_insert(head: &str, records: &[Record], tail: &str) -> sqlx::QueryBuilder<sqlx::Sqlite> {
    let mut sql = sqlx::QueryBuilder::new(head);
    for (i, chunk) in records.chunks(LOG_ROWS_PER_INSERT).enumerate() {
        if i > 0 {
            sql.push("; ");
        }
        sql.push("INSERT INTO audit_records (chain, seq, body, prev_hash, hash) ");
        sql.push_values(chunk, |mut row, record| {
            row.push_bind(record.chain.as_str())
                .push_bind(record.seq)
                .push_bind(record.body.as_str())
                .push_bind(record.prev_hash.as_str())
                .push_bind(record.hash.as_str());
        });
    }
    sql.push(tail);
    sql
}

/// [`sqlite_append`] of a named chain on the lane's kept connection, in one round trip to
/// the connection's thread: `BEGIN`, the insert and `COMMIT` as one text. Each round trip
/// waits for the connection's thread and then for a runtime worker to take the answer up
/// again, and under load both wait for a core: a batch of 11 records, sent as inserts of 8, 2
/// and 1 records, took three (`benches/README.md`, issue 15). The rows and what commits when
/// are those of [`sqlite_append`]. A failed statement leaves the transaction open, so this is
/// only for a connection that is closed when a turn fails ([`in_turn`]), never for a pooled
/// one: closing it rolls the transaction back.
async fn sqlite_append_kept(
    conn: &mut sqlx::SqliteConnection,
    records: &[Record],
) -> Result<(), StoreError> {
    log_insert("BEGIN; ", records, "; COMMIT")
        .build()
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// [`Store::project_audit`] on one SQLite connection, in one transaction that writes the
/// projection's file alone (`store::search`); its commit does not wait for the disk.
async fn sqlite_project(
    conn: &mut sqlx::SqliteConnection,
    rows: &[Projection],
    runs: &[(&str, i64, i64)],
) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    for chunk in pieces(rows, 512) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR IGNORE INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review) ",
        );
        insert.push_values(chunk, |mut row, p| {
            let c = &p.columns;
            row.push_bind(&*p.chain)
                .push_bind(p.seq)
                .push_bind(c.recorded_us)
                .push_bind(c.person.as_deref())
                .push_bind(c.user.as_deref())
                .push_bind(c.org.as_deref())
                .push_bind(c.purpose.as_deref())
                .push_bind(c.outcome.as_str())
                .push_bind(c.review.as_deref());
        });
        insert.build().execute(&mut *tx).await?;
    }
    for side in &SIDE_TABLES {
        let values = side_rows(rows, side.values);
        for chunk in pieces(&values, 1024) {
            let mut insert = sqlx::QueryBuilder::new(side.sqlite);
            insert.push_values(chunk, |mut row, (chain, seq, value, recorded_us)| {
                row.push_bind(*chain)
                    .push_bind(*seq)
                    .push_bind(*value)
                    .push_bind(*recorded_us);
            });
            insert.build().execute(&mut *tx).await?;
        }
    }
    move_marks(&mut tx, runs).await?;
    tx.commit().await?;
    Ok(())
}

/// A connection kept for one kind of write, and the turns taken on it.
type Kept = Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>;

/// The audit log's own way into the store. On SQLite it keeps two connections, one for the
/// log's appends and one for the projector's rows, each written in turns, in order: a
/// connection whose page cache another connection's commit made stale must drop that cache
/// and read its pages again, which the writers did to each other on every transaction when
/// each took whichever pooled connection came next; and SQLite's lock is met in turn, not
/// through its busy handler, which sleeps and polls. The two write different files (the
/// projection is a file of its own, `store::search`), so neither waits for the other. On
/// PostgreSQL it is the pool (the two write different tables and never wait on each other).
/// The kept connections are the lane's own, beside the pool; one that failed a transaction
/// is closed and another opened.
#[derive(Debug, Clone)]
pub struct AuditLane {
    store: Store,
    /// The appends' connection (SQLite).
    kept: Option<Kept>,
    /// The projector's connection (SQLite).
    projecting: Option<Kept>,
    /// The chain this lane has named in `audit_projected` before a committed append: naming
    /// it again would cost every append two more round trips on PostgreSQL, and on SQLite a
    /// transaction on the projection's file, in turn with the projector's.
    named: Arc<std::sync::Mutex<Option<String>>>,
}

/// A connection of the lane's own, beside the pool (it does not take one of the pool's
/// places), with the pool's settings and the search projection attached.
async fn lane_connection(pool: &sqlx::SqlitePool) -> Result<sqlx::SqliteConnection, StoreError> {
    use sqlx::ConnectOptions;
    let mut conn = pool.connect_options().connect().await?;
    super::search::attach_beside(pool, &mut conn).await?;
    Ok(conn)
}

impl AuditLane {
    /// The lane into `store`.
    pub fn new(store: Store) -> AuditLane {
        let sqlite = matches!(store, Store::Sqlite(_));
        AuditLane {
            store,
            kept: sqlite.then(Arc::default),
            projecting: sqlite.then(Arc::default),
            named: Arc::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// [`Store::append_audit`] in turn. Once the lane's chain is named (by its first append,
    /// which is [`Store::append_audit`]'s on PostgreSQL), an append writes the log alone: on
    /// PostgreSQL one statement, committed on its own (one round trip instead of four:
    /// begin, insert, name, commit), and committed exactly as before (`synchronous_commit`
    /// on); on SQLite one transaction on the store's file.
    pub async fn append(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let named = self.is_named(records);
        match (&self.store, self.turns(SqliteFile::Store)) {
            (_, Some((pool, kept))) => {
                in_turn(pool, kept, async |conn| {
                    if named {
                        sqlite_append_kept(conn, records).await
                    } else {
                        sqlite_append(conn, records).await
                    }
                })
                .await?;
            }
            (Store::Postgres(pool), _) if named => return postgres_insert(pool, records).await,
            _ => self.store.append_audit(records).await?,
        }
        if let (false, [first, ..], Ok(mut named)) = (named, records, self.named.lock()) {
            *named = Some(first.chain.clone());
        }
        Ok(())
    }

    /// Whether every record is of the chain this lane has named already.
    fn is_named(&self, records: &[Record]) -> bool {
        let Ok(named) = self.named.lock() else {
            return false;
        };
        named
            .as_deref()
            .is_some_and(|chain| records.iter().all(|r| r.chain == chain))
    }

    /// The SQLite pool and the kept connection whose turns write `file`: the appends' for the
    /// store's file, the projector's for the projection's. None on PostgreSQL.
    fn turns(&self, file: SqliteFile) -> Option<(&sqlx::SqlitePool, &Kept)> {
        let Store::Sqlite(pool) = &self.store else {
            return None;
        };
        let kept = match file {
            SqliteFile::Store => self.kept.as_ref(),
            SqliteFile::Projection => self.projecting.as_ref(),
        };
        Some((pool, kept?))
    }

    /// Copies a SQLite file's write-ahead log into the file in the turn of the connection
    /// that writes it (a passive checkpoint; nothing on PostgreSQL).
    ///
    /// SQLite starts its log again from the beginning only when a write begins on a log
    /// that is wholly copied. For the store's file, a checkpoint on another connection
    /// never gets there while the log is appended to all the time (the appends go on during
    /// its pass), so the log would grow without end under steady load; this one runs while
    /// the lane's appends wait, so the lane's next write finds the whole log copied and
    /// starts it again. The projection's file has the projector as its only writer, so its
    /// next turn finds the log wholly copied (unless a search still reads an older state).
    pub(crate) async fn checkpoint(&self, file: SqliteFile) -> Result<(), StoreError> {
        match self.turns(file) {
            Some((pool, kept)) => {
                in_turn(pool, kept, async |conn| sqlite_checkpoint(conn, file).await).await
            }
            None => Ok(()),
        }
    }

    /// `PRAGMA synchronous` (2 is FULL, 1 NORMAL) of the store's file on the appends'
    /// connection and of the projection's on the projector's, asked in turn: for tests of
    /// what each commit waits for, after failed turns too.
    #[cfg(test)]
    pub(crate) async fn synchronous(&self) -> Result<(i64, i64), StoreError> {
        let mut levels = (-1, -1);
        let asks = [
            (SqliteFile::Store, "PRAGMA main.synchronous", &mut levels.0),
            (
                SqliteFile::Projection,
                "PRAGMA search.synchronous",
                &mut levels.1,
            ),
        ];
        for (file, sql, level) in asks {
            if let Some((pool, kept)) = self.turns(file) {
                in_turn(pool, kept, async |conn| {
                    *level = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
                    Ok(())
                })
                .await?;
            }
        }
        Ok(levels)
    }

    /// [`Store::project_audit`] in turn.
    pub async fn project(&self, rows: &[Projection]) -> Result<(), StoreError> {
        match self.turns(SqliteFile::Projection) {
            Some((pool, projecting)) => {
                in_turn(pool, projecting, async |conn| {
                    sqlite_project(conn, rows, &runs(rows)).await
                })
                .await
            }
            None => self.store.project_audit(rows).await,
        }
    }
}

/// Which SQLite file a checkpoint copies the log of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SqliteFile {
    /// The store's (`main`).
    Store,
    /// The search projection's (`search`).
    Projection,
}

/// A passive checkpoint of one database file on one connection.
pub(crate) async fn sqlite_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    file: SqliteFile,
) -> Result<(), StoreError> {
    let sql = match file {
        SqliteFile::Store => "PRAGMA main.wal_checkpoint(PASSIVE)",
        SqliteFile::Projection => "PRAGMA search.wal_checkpoint(PASSIVE)",
    };
    sqlx::query(sql).execute(&mut *conn).await?;
    Ok(())
}

/// Runs `write` on the lane's kept connection (opened when there is none), waiting for its
/// turn. The connection is kept only after a write that finished well; one that failed, or
/// was cut short, is closed and the next turn opens another.
async fn in_turn(
    pool: &sqlx::SqlitePool,
    kept: &tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
    write: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut slot = kept.lock().await;
    let mut conn = match slot.take() {
        Some(conn) => conn,
        None => lane_connection(pool).await?,
    };
    write(&mut conn).await?;
    *slot = Some(conn);
    Ok(())
}

impl Store {
    /// Appends audit records to the log in one transaction, committed before returning. Only
    /// the log and its key are written here (the search projection follows, see
    /// [`Store::project_audit`]); each chain is named in `audit_projected` (on PostgreSQL in
    /// the same transaction, on SQLite in one just before, on the projection's file) so that
    /// its records are found for projection even if this process dies before it projects
    /// them.
    pub async fn append_audit(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                postgres_insert(&mut *tx, records).await?;
                name_chains(&mut tx, &chains(records)).await?;
                tx.commit().await?;
            }
            Store::Sqlite(pool) => {
                sqlite_append(&mut *pool.acquire().await?, records).await?;
            }
        }
        Ok(())
    }

    /// Adds records' rows to the search projection (`audit_search`, and a row in
    /// `audit_search_sources` and `audit_search_agreements` for each source and agreement of
    /// their disclosures), in one transaction, and moves each chain's mark past every run of
    /// positions that continues it. Rows already there are left as they are, so
    /// projecting a record twice (the writer and a catch-up) is harmless. The mark moves
    /// only over an unbroken run, so a record skipped here is projected later from its body.
    pub async fn project_audit(&self, rows: &[Projection]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let runs = runs(rows);
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The projection can be rebuilt from the log: its commit need not wait for
                // the disk. A lost commit takes its mark's move with it, and the log's next
                // commit (synchronous) flushes the write-ahead log past it.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                let text = |f: fn(&Columns) -> Option<&str>| {
                    rows.iter().map(|p| f(&p.columns)).collect::<Vec<_>>()
                };
                sqlx::query("INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) ON CONFLICT (chain, seq) DO NOTHING")
                    .bind(rows.iter().map(|p| &*p.chain).collect::<Vec<_>>())
                    .bind(rows.iter().map(|p| p.seq).collect::<Vec<_>>())
                    .bind(rows.iter().map(|p| p.columns.recorded_us).collect::<Vec<_>>())
                    .bind(text(|c| c.person.as_deref()))
                    .bind(text(|c| c.user.as_deref()))
                    .bind(text(|c| c.org.as_deref()))
                    .bind(text(|c| c.purpose.as_deref()))
                    .bind(rows.iter().map(|p| p.columns.outcome.as_str()).collect::<Vec<_>>())
                    .bind(text(|c| c.review.as_deref()))
                    .execute(&mut *tx)
                    .await?;
                for side in &SIDE_TABLES {
                    let values = side_rows(rows, side.values);
                    if values.is_empty() {
                        continue;
                    }
                    sqlx::query(side.postgres)
                        .bind(values.iter().map(|v| v.0).collect::<Vec<_>>())
                        .bind(values.iter().map(|v| v.1).collect::<Vec<_>>())
                        .bind(values.iter().map(|v| v.2).collect::<Vec<_>>())
                        .bind(values.iter().map(|v| v.3).collect::<Vec<_>>())
                        .execute(&mut *tx)
                        .await?;
                }
                move_marks(&mut tx, &runs).await?;
                tx.commit().await?;
            }
            Store::Sqlite(pool) => {
                sqlite_project(&mut *pool.acquire().await?, rows, &runs).await?;
            }
        }
        Ok(())
    }

    /// Up to `limit` records past their chain's projection mark, chain by chain in order,
    /// each with its chain's mark: what the search projection does not cover yet.
    pub async fn audit_unprojected(&self, limit: u32) -> Result<Vec<(i64, Record)>, StoreError> {
        type R = (i64, String, i64, String, String, String);
        let rows: Vec<R> = with_pool!(self, pool => sqlx::query_as(
            "SELECT p.seq, r.chain, r.seq, r.body, r.prev_hash, r.hash FROM audit_projected p JOIN audit_records r ON r.chain = p.chain AND r.seq > p.seq ORDER BY r.chain, r.seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(mark, chain, seq, body, prev_hash, hash)| {
                (mark, record((chain, seq, body, prev_hash, hash)))
            })
            .collect())
    }

    /// Each chain's projection mark: every record at or before it has its search row.
    pub async fn audit_projection_marks(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let marks: Vec<(String, i64)> = with_pool!(self, pool => sqlx::query_as("SELECT chain, seq FROM audit_projected ORDER BY chain").fetch_all(pool).await?);
        Ok(marks)
    }

    /// Tries an audit append without keeping it: one row in a transaction that is rolled
    /// back. It meets what a real append meets (locks, triggers, constraints, a read-only or
    /// full disk), so readiness can tell that the audit log could be written again.
    pub async fn probe_audit_append(&self) -> Result<(), StoreError> {
        let chain = format!("probe-{}", uuid::Uuid::new_v4());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO audit_records (chain, seq, body, prev_hash, hash) VALUES ($1, 0, '{}', '', '')")
                .bind(chain)
                .execute(&mut *tx)
                .await?;
            tx.rollback().await?;
        });
        Ok(())
    }

    /// The last position and hash of a chain, if it has records.
    pub async fn audit_head(&self, chain: &str) -> Result<Option<(i64, String)>, StoreError> {
        let head: Option<(i64, String)> = with_pool!(self, pool => sqlx::query_as("SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1").bind(chain).fetch_optional(pool).await?);
        Ok(head)
    }

    /// Every audit record, chain by chain in order, streamed (never all in memory).
    pub fn audit_rows(&self) -> futures_util::stream::BoxStream<'_, Result<Record, StoreError>> {
        use futures_util::{StreamExt, TryStreamExt};
        const SQL: &str =
            "SELECT chain, seq, body, prev_hash, hash FROM audit_records ORDER BY chain, seq";
        with_pool!(self, pool => sqlx::query_as::<_, RecordRow>(SQL)
            .fetch(pool)
            .map_ok(record)
            .map_err(StoreError::from)
            .boxed())
    }

    /// Audit rows of `sql` (an [`audit_select!`] query) with `binds` as `$1`, `$2`, …,
    /// streamed.
    fn audit_stream(
        &self,
        sql: &'static str,
        binds: &[i64],
    ) -> futures_util::stream::BoxStream<'_, Result<Row, StoreError>> {
        use futures_util::{StreamExt, TryStreamExt};
        with_pool!(self, pool => binds
            .iter()
            .fold(sqlx::query_as::<_, AuditRow>(sql), |q, b| q.bind(*b))
            .fetch(pool)
            .map_ok(audit_row)
            .map_err(StoreError::from)
            .boxed())
    }
}

impl Store {
    /// Audit records recorded in `[since, until)` (Unix microseconds, either open), oldest
    /// first, streamed (never all in memory). Read through the search projection: records
    /// not projected yet are not among them (see `audit::project_pending`).
    pub fn audit_export(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> futures_util::stream::BoxStream<'_, Result<Row, StoreError>> {
        let (since, until) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        self.audit_stream(
            audit_select!(
                " WHERE recorded_us >= $1 AND recorded_us < $2 ORDER BY recorded_us, chain, seq"
            ),
            &[since, until],
        )
    }

    /// How many audit records were recorded in `[since, until)` (as projected).
    pub async fn audit_count(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (since, until) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT count(*) FROM audit_search WHERE recorded_us >= $1 AND recorded_us < $2").bind(since).bind(until).fetch_one(pool).await?);
        Ok(n)
    }

    /// Keeps a signed chain head.
    pub async fn record_audit_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO audit_heads (chain, seq, hash, signed_us, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain, seq) DO NOTHING")
                .bind(&head.chain)
                .bind(head.seq)
                .bind(&head.hash)
                .bind(head.signed_us)
                .bind(&head.public_key)
                .bind(&head.signature)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every signed head, chain by chain in order. Heads are few (one per chain per signing
    /// interval), so they are read whole.
    pub async fn audit_heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        type HeadRow = (String, i64, String, i64, String, String);
        let rows: Vec<HeadRow> = with_pool!(self, pool => sqlx::query_as("SELECT chain, seq, hash, signed_us, public_key, signature FROM audit_heads ORDER BY chain, seq").fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(
                |(chain, seq, hash, signed_us, public_key, signature)| SignedHead {
                    chain,
                    seq,
                    hash,
                    signed_us,
                    public_key,
                    signature,
                },
            )
            .collect())
    }
}
