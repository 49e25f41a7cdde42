//! Counts over the audit log for the IG console's pictures and health page: one aggregate
//! query per chart over the search projection (`audit_search`), within a reader's scope (the
//! audit search's [`AuditScope`], applied by the same code), and each
//! chain's last signed head. Nothing here reads a record's body or names a person.
//!
//! Days and weeks are UTC: a day is `recorded_us / 86_400_000_000` (days since 1970-01-01),
//! a week starts on a Monday and is numbered `(day + 3) / 7` (1970-01-01 was a Thursday), so
//! week `w` starts on day `7w - 3`.

use super::audit_search::{AuditScope, push_scope};
use super::{Store, StoreError};

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// How many records fell in one day or week, for one key (a purpose, an organisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    /// The day (days since 1970-01-01, UTC) or week (see the module's doc).
    pub bucket: i64,
    /// The purpose of use or organisation counted; none for a count without a key, or for
    /// records that name no organisation.
    pub key: Option<String>,
    /// How many.
    pub count: i64,
}

/// A chain's last signed head, and how far the chain reaches now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: String,
    /// The position the head vouches for.
    pub seq: i64,
    /// When it was signed, Unix microseconds.
    pub signed_us: i64,
    /// The chain's last stored record now (none when its records are gone).
    pub last_seq: Option<i64>,
}

/// The three counts. Each reads `audit_search s`; the span, the reader's scope and the
/// grouping are added by [`push_count`]. Every piece is a constant of this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chart {
    /// Answered accesses (outcome `success`) that carry a purpose of use, per day and purpose.
    Accesses,
    /// Answered emergency accesses (purpose `ETREAT`), per week and organisation.
    BreakGlass,
    /// Refused requests (outcome `refused`), per day.
    Refusals,
}

impl Chart {
    fn select(self) -> &'static str {
        match self {
            Chart::Accesses => {
                "SELECT s.recorded_us / 86400000000 AS b, s.purpose AS k, count(*) AS n FROM audit_search s WHERE s.outcome = 'success' AND s.purpose IS NOT NULL"
            }
            Chart::BreakGlass => {
                "SELECT (s.recorded_us / 86400000000 + 3) / 7 AS b, s.org AS k, count(*) AS n FROM audit_search s WHERE s.purpose = 'ETREAT' AND s.outcome = 'success'"
            }
            Chart::Refusals => {
                "SELECT s.recorded_us / 86400000000 AS b, count(*) AS n FROM audit_search s WHERE s.outcome = 'refused'"
            }
        }
    }

    fn group(self) -> &'static str {
        match self {
            Chart::Accesses | Chart::BreakGlass => " GROUP BY b, k ORDER BY b, k",
            Chart::Refusals => " GROUP BY b ORDER BY b",
        }
    }
}

/// One count over `[from_us, to_us)`, within `scope` (`None`: every record), by the audit
/// search's own scope filter ([`push_scope`]), so the pictures and the search agree on who
/// sees what.
fn push_count<DB>(
    sql: &mut sqlx::QueryBuilder<DB>,
    chart: Chart,
    (from_us, to_us): (i64, i64),
    scope: Option<&AuditScope>,
    postgres: bool,
) where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    sql.push(chart.select());
    sql.push(" AND s.recorded_us >= ").push_bind(from_us);
    sql.push(" AND s.recorded_us < ").push_bind(to_us);
    if let Some(scope) = scope {
        // INVARIANT: outside the region roles, only the reader's records.
        push_scope(sql, scope, postgres);
    }
    sql.push(chart.group());
}

/// Each chain's newest signed head, most recently signed first, and the chain's end.
const HEADS: &str = "SELECT h.chain, h.seq, h.signed_us, (SELECT max(r.seq) FROM audit_records r WHERE r.chain = h.chain) AS last_seq FROM audit_heads h JOIN (SELECT chain, max(seq) AS seq FROM audit_heads GROUP BY chain) m ON m.chain = h.chain AND m.seq = h.seq ORDER BY h.signed_us DESC, h.chain DESC LIMIT $1";
/// The same, after a place in that order.
const HEADS_AFTER: &str = "SELECT h.chain, h.seq, h.signed_us, (SELECT max(r.seq) FROM audit_records r WHERE r.chain = h.chain) AS last_seq FROM audit_heads h JOIN (SELECT chain, max(seq) AS seq FROM audit_heads GROUP BY chain) m ON m.chain = h.chain AND m.seq = h.seq WHERE h.signed_us < $2 OR (h.signed_us = $2 AND h.chain < $3) ORDER BY h.signed_us DESC, h.chain DESC LIMIT $1";

type KeyedRow = (i64, Option<String>, i64);

impl Store {
    /// Runs one of the keyed counts over `[from_us, to_us)` within `scope`.
    async fn keyed_counts(
        &self,
        chart: Chart,
        span: (i64, i64),
        scope: Option<&AuditScope>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let postgres = matches!(self, Store::Postgres(_));
        let rows: Vec<KeyedRow> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::default();
            push_count(&mut sql, chart, span, scope, postgres);
            sql.build_query_as::<KeyedRow>().fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(bucket, key, count)| AuditCount { bucket, key, count })
            .collect())
    }

    /// Answered accesses that carry a purpose of use (every FHIR request with a token does;
    /// the console's own records do not), per UTC day and purpose, in `[from_us, to_us)`,
    /// within `scope` (`None`: every record; see [`AuditScope`]).
    pub async fn audit_accesses_per_day(
        &self,
        from_us: i64,
        to_us: i64,
        scope: Option<&AuditScope>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.keyed_counts(Chart::Accesses, (from_us, to_us), scope)
            .await
    }

    /// Answered emergency (break-glass, `ETREAT`) accesses, per week (Monday first) and
    /// organisation of the user, in `[from_us, to_us)`, within `scope`.
    pub async fn audit_break_glass_per_week(
        &self,
        from_us: i64,
        to_us: i64,
        scope: Option<&AuditScope>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.keyed_counts(Chart::BreakGlass, (from_us, to_us), scope)
            .await
    }

    /// Refused requests, per UTC day, in `[from_us, to_us)`, within `scope`.
    pub async fn audit_refusals_per_day(
        &self,
        from_us: i64,
        to_us: i64,
        scope: Option<&AuditScope>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let postgres = matches!(self, Store::Postgres(_));
        let rows: Vec<(i64, i64)> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::default();
            push_count(&mut sql, Chart::Refusals, (from_us, to_us), scope, postgres);
            sql.build_query_as::<(i64, i64)>().fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(bucket, count)| AuditCount {
                bucket,
                key: None,
                count,
            })
            .collect())
    }

    /// Up to `limit` chains' newest signed heads, most recently signed first, after
    /// `after` (a head's `(signed_us, chain)`) when given.
    pub async fn audit_last_heads(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ChainHead>, StoreError> {
        let limit = i64::from(limit);
        let rows: Vec<(String, i64, i64, Option<i64>)> = with_pool!(self, pool => match after {
            None => sqlx::query_as(HEADS).bind(limit).fetch_all(pool).await?,
            Some((signed_us, chain)) => sqlx::query_as(HEADS_AFTER).bind(limit).bind(signed_us).bind(chain).fetch_all(pool).await?,
        });
        Ok(rows
            .into_iter()
            .map(|(chain, seq, signed_us, last_seq)| ChainHead {
                chain,
                seq,
                signed_us,
                last_seq,
            })
            .collect())
    }

    /// How many chains have a signed head.
    pub async fn audit_signed_chains(&self) -> Result<i64, StoreError> {
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT count(DISTINCT chain) FROM audit_heads").fetch_one(pool).await?);
        Ok(n)
    }

    /// How many records the log holds, over every chain.
    pub async fn audit_record_total(&self) -> Result<i64, StoreError> {
        let n: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT count(*) FROM audit_records").fetch_one(pool).await?);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
