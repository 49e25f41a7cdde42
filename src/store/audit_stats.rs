//! Counts over the audit log for the IG console's pictures and health page: one aggregate
//! query per chart over the search projection (`audit_search`), within a scope, and each
//! chain's last signed head. Nothing here reads a record's body or names a person.
//!
//! Days and weeks are UTC: a day is `recorded_us / 86_400_000_000` (days since 1970-01-01),
//! a week starts on a Monday and is numbered `(day + 3) / 7` (1970-01-01 was a Thursday), so
//! week `w` starts on day `7w - 3`.

use super::{Store, StoreError};

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// Whose records a count covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsScope<'a> {
    /// Every record.
    All,
    /// The records of accesses made by one organisation's staff (the record's `org`).
    Org(&'a str),
}

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

/// Answered accesses (outcome `success`) that carry a purpose of use, per day and purpose.
const ACCESSES: &str = "SELECT recorded_us / 86400000000 AS b, purpose AS k, count(*) AS n FROM audit_search WHERE recorded_us >= $1 AND recorded_us < $2 AND outcome = 'success' AND purpose IS NOT NULL GROUP BY b, k ORDER BY b, k";
const ACCESSES_OF_ORG: &str = "SELECT recorded_us / 86400000000 AS b, purpose AS k, count(*) AS n FROM audit_search WHERE org = $3 AND recorded_us >= $1 AND recorded_us < $2 AND outcome = 'success' AND purpose IS NOT NULL GROUP BY b, k ORDER BY b, k";
/// Answered emergency accesses (purpose `ETREAT`), per week and organisation.
const BREAK_GLASS: &str = "SELECT (recorded_us / 86400000000 + 3) / 7 AS b, org AS k, count(*) AS n FROM audit_search WHERE purpose = 'ETREAT' AND recorded_us >= $1 AND recorded_us < $2 AND outcome = 'success' GROUP BY b, k ORDER BY b, k";
const BREAK_GLASS_OF_ORG: &str = "SELECT (recorded_us / 86400000000 + 3) / 7 AS b, org AS k, count(*) AS n FROM audit_search WHERE org = $3 AND purpose = 'ETREAT' AND recorded_us >= $1 AND recorded_us < $2 AND outcome = 'success' GROUP BY b, k ORDER BY b, k";
/// Refused requests (outcome `refused`), per day.
const REFUSALS: &str = "SELECT recorded_us / 86400000000 AS b, count(*) AS n FROM audit_search WHERE outcome = 'refused' AND recorded_us >= $1 AND recorded_us < $2 GROUP BY b ORDER BY b";
const REFUSALS_OF_ORG: &str = "SELECT recorded_us / 86400000000 AS b, count(*) AS n FROM audit_search WHERE org = $3 AND outcome = 'refused' AND recorded_us >= $1 AND recorded_us < $2 GROUP BY b ORDER BY b";

/// Each chain's newest signed head, most recently signed first, and the chain's end.
const HEADS: &str = "SELECT h.chain, h.seq, h.signed_us, (SELECT max(r.seq) FROM audit_records r WHERE r.chain = h.chain) AS last_seq FROM audit_heads h JOIN (SELECT chain, max(seq) AS seq FROM audit_heads GROUP BY chain) m ON m.chain = h.chain AND m.seq = h.seq ORDER BY h.signed_us DESC, h.chain DESC LIMIT $1";
/// The same, after a place in that order.
const HEADS_AFTER: &str = "SELECT h.chain, h.seq, h.signed_us, (SELECT max(r.seq) FROM audit_records r WHERE r.chain = h.chain) AS last_seq FROM audit_heads h JOIN (SELECT chain, max(seq) AS seq FROM audit_heads GROUP BY chain) m ON m.chain = h.chain AND m.seq = h.seq WHERE h.signed_us < $2 OR (h.signed_us = $2 AND h.chain < $3) ORDER BY h.signed_us DESC, h.chain DESC LIMIT $1";

type KeyedRow = (i64, Option<String>, i64);

impl Store {
    /// Runs one of the keyed counts over `[from_us, to_us)` within `scope`.
    async fn keyed_counts(
        &self,
        (all, of_org): (&'static str, &'static str),
        from_us: i64,
        to_us: i64,
        scope: StatsScope<'_>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let rows: Vec<KeyedRow> = with_pool!(self, pool => match scope {
            StatsScope::All => sqlx::query_as(all).bind(from_us).bind(to_us).fetch_all(pool).await?,
            StatsScope::Org(org) => sqlx::query_as(of_org).bind(from_us).bind(to_us).bind(org).fetch_all(pool).await?,
        });
        Ok(rows
            .into_iter()
            .map(|(bucket, key, count)| AuditCount { bucket, key, count })
            .collect())
    }

    /// Answered accesses that carry a purpose of use (every FHIR request with a token does;
    /// the console's own records do not), per UTC day and purpose, in `[from_us, to_us)`.
    pub async fn audit_accesses_per_day(
        &self,
        from_us: i64,
        to_us: i64,
        scope: StatsScope<'_>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.keyed_counts((ACCESSES, ACCESSES_OF_ORG), from_us, to_us, scope)
            .await
    }

    /// Answered emergency (break-glass, `ETREAT`) accesses, per week (Monday first) and
    /// organisation of the user, in `[from_us, to_us)`.
    pub async fn audit_break_glass_per_week(
        &self,
        from_us: i64,
        to_us: i64,
        scope: StatsScope<'_>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        self.keyed_counts((BREAK_GLASS, BREAK_GLASS_OF_ORG), from_us, to_us, scope)
            .await
    }

    /// Refused requests, per UTC day, in `[from_us, to_us)`.
    pub async fn audit_refusals_per_day(
        &self,
        from_us: i64,
        to_us: i64,
        scope: StatsScope<'_>,
    ) -> Result<Vec<AuditCount>, StoreError> {
        let rows: Vec<(i64, i64)> = with_pool!(self, pool => match scope {
            StatsScope::All => sqlx::query_as(REFUSALS).bind(from_us).bind(to_us).fetch_all(pool).await?,
            StatsScope::Org(org) => sqlx::query_as(REFUSALS_OF_ORG).bind(from_us).bind(to_us).bind(org).fetch_all(pool).await?,
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
