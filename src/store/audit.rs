//! The audit log's stored forms (records, their search columns, signed heads), appended
//! and read in order. The store owns them; the audit log (`crate::audit`) makes, hashes,
//! signs and checks them.

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
