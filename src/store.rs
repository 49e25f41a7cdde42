//! The gateway's own state in SQLite (the embedded default) or PostgreSQL (production):
//! people and their links to each source. Migrations live under `migrations/sqlite` and
//! `migrations/postgres` and are compiled into the binary.
//!
//! Both backends run the same SQL text (`$1` placeholders work in both); times are Unix
//! seconds in an integer column and ids are text, so rows read the same from either.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
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

/// A person's link to one source: their patient id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The source.
    pub source_id: String,
    /// The person's patient id in that source.
    pub local_id: String,
}

/// A person as the store knows them.
#[derive(Debug, Clone)]
pub struct PersonRecord {
    /// The gateway patient id.
    pub id: Uuid,
    /// Their NHS number (ten digits).
    pub nhs_number: String,
    /// Links to sources.
    pub links: Vec<Link>,
    /// When each source was last asked: (source id, Unix seconds).
    pub checked: Vec<(String, i64)>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). A SQLite file and its folder are
    /// created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk when it returns, so an audit record survives a
                // power cut, not only a crash. With WAL that is one fsync per transaction, and
                // the audit log's group commit shares it among the records of a batch.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                // 64 MiB of page cache per connection. No checkpoint inside a commit (it would
                // stall the request whose commit ran it): the audit writer starts one in the
                // background every second ([`Store::checkpoint`]), and index pages dirtied
                // again and again in that second are written back once.
                .pragma("cache_size", "-65536")
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
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .connect_with(options)
                .await?;
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

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Copies what the SQLite write-ahead log holds into the database file without blocking
    /// writers (a passive checkpoint); nothing on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Store::Sqlite(pool) = self {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await?;
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

    /// The person with this NHS number, with their links, if the gateway has met them.
    pub async fn person_by_nhs(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PersonRecord>, StoreError> {
        let id: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT id FROM persons WHERE nhs_number = $1").bind(nhs_number).fetch_optional(pool).await?);
        match id {
            Some(id) => self
                .load_person(parse_id(&id)?, nhs_number.to_owned())
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The person with this gateway id, with their links.
    pub async fn person_by_id(&self, id: Uuid) -> Result<Option<PersonRecord>, StoreError> {
        let nhs: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT nhs_number FROM persons WHERE id = $1").bind(id.to_string()).fetch_optional(pool).await?);
        match nhs {
            Some(nhs) => self.load_person(id, nhs).await.map(Some),
            None => Ok(None),
        }
    }

    /// The person a source's local patient id is linked to.
    pub async fn person_by_link(
        &self,
        source_id: &str,
        local_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT person_id FROM source_links WHERE source_id = $1 AND local_id = $2").bind(source_id).bind(local_id).fetch_optional(pool).await?);
        id.as_deref().map(parse_id).transpose()
    }

    async fn load_person(&self, id: Uuid, nhs_number: String) -> Result<PersonRecord, StoreError> {
        let key = id.to_string();
        let links: Vec<(String, String)> = with_pool!(self, pool => sqlx::query_as("SELECT source_id, local_id FROM source_links WHERE person_id = $1 ORDER BY source_id, local_id").bind(&key).fetch_all(pool).await?);
        let checked: Vec<(String, i64)> = with_pool!(self, pool => sqlx::query_as("SELECT source_id, checked_at FROM source_checks WHERE person_id = $1").bind(&key).fetch_all(pool).await?);
        Ok(PersonRecord {
            id,
            nhs_number,
            links: links
                .into_iter()
                .map(|(source_id, local_id)| Link {
                    source_id,
                    local_id,
                })
                .collect(),
            checked,
        })
    }

    /// The gateway id of the person with this NHS number, made now if they are new. Safe under
    /// concurrency across instances: the NHS number is unique, so all agree on one id.
    pub async fn ensure_person(&self, nhs_number: &str, now: i64) -> Result<Uuid, StoreError> {
        let candidate = Uuid::new_v4().to_string();
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO persons (id, nhs_number, created_at) VALUES ($1, $2, $3) ON CONFLICT (nhs_number) DO NOTHING")
                .bind(&candidate).bind(nhs_number).bind(now).execute(pool).await?;
        });
        let id: String = with_pool!(self, pool => sqlx::query_scalar("SELECT id FROM persons WHERE nhs_number = $1").bind(nhs_number).fetch_one(pool).await?);
        parse_id(&id)
    }

    /// Records what one source said about the person: their local ids there (possibly none),
    /// as of `now`. Replaces what was known before. A local id that was linked to someone else
    /// (a source that corrected an NHS number) moves to this person, and the previous owner's
    /// check of that source is forgotten so their links are looked up again; their ids are
    /// returned.
    pub async fn record_links(
        &self,
        person: Uuid,
        source_id: &str,
        local_ids: &[String],
        now: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let key = person.to_string();
        let mut previous: Vec<String> = Vec::new();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM source_links WHERE person_id = $1 AND source_id = $2")
                .bind(&key).bind(source_id).execute(&mut *tx).await?;
            for local in local_ids {
                let owner: Option<String> = sqlx::query_scalar("SELECT person_id FROM source_links WHERE source_id = $1 AND local_id = $2")
                    .bind(source_id).bind(local).fetch_optional(&mut *tx).await?;
                if let Some(owner) = owner.filter(|o| *o != key) {
                    sqlx::query("DELETE FROM source_checks WHERE person_id = $1 AND source_id = $2")
                        .bind(&owner).bind(source_id).execute(&mut *tx).await?;
                    previous.push(owner);
                }
                sqlx::query("INSERT INTO source_links (source_id, local_id, person_id) VALUES ($1, $2, $3) ON CONFLICT (source_id, local_id) DO UPDATE SET person_id = excluded.person_id")
                    .bind(source_id).bind(local).bind(&key).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO source_checks (person_id, source_id, checked_at) VALUES ($1, $2, $3) ON CONFLICT (person_id, source_id) DO UPDATE SET checked_at = excluded.checked_at")
                .bind(&key).bind(source_id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        previous.iter().map(|p| parse_id(p)).collect()
    }

    /// Forgets when a source was last asked about the person, so their links there are
    /// looked up again on the next request (used when a source's answer shows a link is stale).
    pub async fn forget_check(&self, person: Uuid, source_id: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM source_checks WHERE person_id = $1 AND source_id = $2")
                .bind(person.to_string()).bind(source_id).execute(pool).await?;
        });
        Ok(())
    }
}

/// One recorded sharing choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Its id.
    pub id: Uuid,
    /// The person.
    pub person: Uuid,
    /// `not_from` (a provider's records) or `not_to` (an organisation).
    pub kind: String,
    /// The organisation's ODS code.
    pub org: String,
    /// True while the objection stands; false for a withdrawal.
    pub active: bool,
    /// When it was recorded, Unix microseconds.
    pub recorded_us: i64,
    /// The Consent resource, as served.
    pub resource: String,
}

impl Store {
    /// Records a sharing choice (rows are never changed; the newest per person, kind and
    /// organisation counts).
    pub async fn record_consent(&self, c: &ConsentRecord) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO consents (id, person_id, kind, org, active, recorded_us, resource) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(c.id.to_string()).bind(c.person.to_string()).bind(&c.kind).bind(&c.org)
                .bind(i32::from(c.active)).bind(c.recorded_us).bind(&c.resource)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Every sharing choice recorded for the person, oldest first.
    pub async fn consents(&self, person: Uuid) -> Result<Vec<ConsentRecord>, StoreError> {
        type Row = (String, String, String, i32, i64, String);
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as("SELECT id, kind, org, active, recorded_us, resource FROM consents WHERE person_id = $1 ORDER BY recorded_us, id").bind(person.to_string()).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(id, kind, org, active, recorded_us, resource)| {
                Ok(ConsentRecord {
                    id: Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt("consents.id"))?,
                    person,
                    kind,
                    org,
                    active: active != 0,
                    recorded_us,
                    resource,
                })
            })
            .collect()
    }
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A stored row: the record and its searchable columns.
#[derive(Debug, Clone)]
pub struct Row {
    /// The record.
    pub record: Record,
    /// The columns.
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

/// A query reading whole audit rows (the columns [`AuditRow`] decodes), followed by `$rest`.
macro_rules! audit_select {
    ($rest:literal) => {
        concat!(
            "SELECT chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review, body, prev_hash, hash FROM audit_records",
            $rest
        )
    };
}

type AuditRow = (
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

fn audit_row(r: AuditRow) -> Row {
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
        record: Record {
            chain,
            seq,
            body,
            prev_hash,
            hash,
        },
        columns: Columns {
            recorded_us,
            person,
            user,
            org,
            purpose,
            outcome,
            review,
        },
    }
}

impl Store {
    /// Appends audit records in one transaction, committed before returning.
    pub async fn append_audit(&self, rows: &[(Record, Columns)]) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Many rows per statement: one round trip to the database per 256 records.
            for chunk in rows.chunks(256) {
                let mut insert = sqlx::QueryBuilder::new("INSERT INTO audit_records (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review, body, prev_hash, hash) ");
                insert.push_values(chunk, |mut row, (record, c)| {
                    row.push_bind(record.chain.clone())
                        .push_bind(record.seq)
                        .push_bind(c.recorded_us)
                        .push_bind(c.person.clone())
                        .push_bind(c.user.clone())
                        .push_bind(c.org.clone())
                        .push_bind(c.purpose.clone())
                        .push_bind(c.outcome.clone())
                        .push_bind(c.review.clone())
                        .push_bind(record.body.clone())
                        .push_bind(record.prev_hash.clone())
                        .push_bind(record.hash.clone());
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Tries an audit append without keeping it: one row in a transaction that is rolled
    /// back. It meets what a real append meets (locks, triggers, constraints, a read-only or
    /// full disk), so readiness can tell that the audit log could be written again.
    pub async fn probe_audit_append(&self) -> Result<(), StoreError> {
        let chain = format!("probe-{}", uuid::Uuid::new_v4());
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO audit_records (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review, body, prev_hash, hash) VALUES ($1, 0, 0, NULL, NULL, NULL, NULL, 'probe', NULL, '{}', '', '')")
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
    pub fn audit_rows(&self) -> futures_util::stream::BoxStream<'_, Result<Row, StoreError>> {
        self.audit_stream(audit_select!(" ORDER BY chain, seq"), &[])
    }

    /// Audit rows of `sql` (an [`audit_select!`] query) with `binds` as `$1`, `$2`, …,
    /// streamed.
    fn audit_stream(
        &self,
        sql: &'static str,
        binds: &[i64],
    ) -> futures_util::stream::BoxStream<'_, Result<Row, StoreError>> {
        use futures_util::{StreamExt, TryStreamExt};
        match self {
            Store::Sqlite(pool) => binds
                .iter()
                .fold(sqlx::query_as::<_, AuditRow>(sql), |q, b| q.bind(*b))
                .fetch(pool)
                .map_ok(audit_row)
                .map_err(StoreError::from)
                .boxed(),
            Store::Postgres(pool) => binds
                .iter()
                .fold(sqlx::query_as::<_, AuditRow>(sql), |q, b| q.bind(*b))
                .fetch(pool)
                .map_ok(audit_row)
                .map_err(StoreError::from)
                .boxed(),
        }
    }
}

impl Store {
    /// Audit records recorded in `[since, until)` (Unix microseconds, either open), oldest
    /// first, streamed (never all in memory).
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

    /// How many audit records were recorded in `[since, until)`.
    pub async fn audit_count(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (since, until) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT count(*) FROM audit_records WHERE recorded_us >= $1 AND recorded_us < $2").bind(since).bind(until).fetch_one(pool).await?);
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

fn parse_id(raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt("persons.id"))
}

#[cfg(test)]
mod tests;

/// A searchable column of `audit_records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditColumn {
    /// `person_id`: the person's gateway id.
    Person,
    /// `user_id`: the user (`sub`).
    User,
    /// `org`: the user's organisation (ODS code).
    Org,
    /// `purpose`: the purpose of use.
    Purpose,
    /// `outcome`: `success`, `refused` or `error`.
    Outcome,
    /// `review`: why the record is flagged for IG review (`break-glass`,
    /// `consent-withdrawn-by-staff`); absent on most records.
    Review,
}

impl AuditColumn {
    /// The column's name. A fixed set: nothing from outside reaches the SQL text.
    fn name(self) -> &'static str {
        match self {
            AuditColumn::Person => "person_id",
            AuditColumn::User => "user_id",
            AuditColumn::Org => "org",
            AuditColumn::Purpose => "purpose",
            AuditColumn::Outcome => "outcome",
            AuditColumn::Review => "review",
        }
    }
}

/// A half-open span of `recorded_us`: `from <= recorded_us < to`; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSpan {
    /// Inclusive start, Unix microseconds.
    pub from: Option<i64>,
    /// Exclusive end, Unix microseconds.
    pub to: Option<i64>,
}

/// The position of an audit record in newest-first order: (recorded_us, chain, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPosition {
    /// When, Unix microseconds.
    pub recorded_us: i64,
    /// The chain.
    pub chain: String,
    /// Position in the chain.
    pub seq: i64,
}

/// An audit search: every group must match (AND); within a group any value or span may
/// (OR). Results come newest first, by (recorded_us, chain, seq) descending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Column equality groups.
    pub equals: Vec<(AuditColumn, Vec<String>)>,
    /// Time groups.
    pub recorded: Vec<Vec<AuditSpan>>,
    /// Only records strictly after this position in newest-first order (the keyset cursor).
    pub after: Option<AuditPosition>,
    /// Most rows returned.
    pub limit: u32,
}

impl Store {
    /// One page of audit records matching `query`, newest first, read over the indexed
    /// columns with a keyset (never an offset), at most `query.limit` rows.
    pub async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<Row>, StoreError> {
        let rows: Vec<AuditRow> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::new(audit_select!(" WHERE 1 = 1"));
            for (column, values) in &query.equals {
                sql.push(" AND ").push(column.name()).push(" IN (");
                let mut list = sql.separated(", ");
                for value in values {
                    list.push_bind(value.clone());
                }
                if values.is_empty() {
                    // An empty alternative list matches nothing.
                    list.push("NULL");
                }
                sql.push(")");
                // Implied by the list, written as literals so the planner can use the partial
                // indexes of migration 0005 (constants of this code, not input).
                match column {
                    AuditColumn::Purpose if values.iter().all(|v| v == "ETREAT") => {
                        sql.push(" AND purpose = 'ETREAT'");
                    }
                    AuditColumn::Outcome if values.iter().all(|v| v != "success") => {
                        sql.push(" AND outcome <> 'success'");
                    }
                    AuditColumn::Review => {
                        sql.push(" AND review IS NOT NULL");
                    }
                    _ => {}
                }
            }
            for spans in &query.recorded {
                sql.push(" AND (1 = 0");
                for span in spans {
                    sql.push(" OR (1 = 1");
                    if let Some(from) = span.from {
                        sql.push(" AND recorded_us >= ").push_bind(from);
                    }
                    if let Some(to) = span.to {
                        sql.push(" AND recorded_us < ").push_bind(to);
                    }
                    sql.push(")");
                }
                sql.push(")");
            }
            if let Some(after) = &query.after {
                // The first comparison lets both backends narrow by the time index; the row
                // comparison is the exact keyset.
                sql.push(" AND recorded_us <= ").push_bind(after.recorded_us);
                sql.push(" AND (recorded_us, chain, seq) < (")
                    .push_bind(after.recorded_us)
                    .push(", ")
                    .push_bind(after.chain.clone())
                    .push(", ")
                    .push_bind(after.seq)
                    .push(")");
            }
            sql.push(" ORDER BY recorded_us DESC, chain DESC, seq DESC LIMIT ")
                .push_bind(i64::from(query.limit));
            sql.build_query_as::<AuditRow>().fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(audit_row).collect())
    }

    /// One audit record by its chain and position.
    pub async fn audit_record(&self, chain: &str, seq: i64) -> Result<Option<Row>, StoreError> {
        const SQL: &str = audit_select!(" WHERE chain = $1 AND seq = $2");
        let row: Option<AuditRow> = with_pool!(self, pool => sqlx::query_as(SQL).bind(chain).bind(seq).fetch_optional(pool).await?);
        Ok(row.map(audit_row))
    }
}

#[cfg(test)]
mod audit_search_tests;
