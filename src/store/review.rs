//! Break-glass reviews made in the IG console (migration 0009): one row per reviewed
//! emergency access, keyed by the reviewed record's chain and position, so that the first
//! review wins even when two arrive at once. The queue of accesses waiting for review is read
//! here too, from the audit log's search projection (purpose `ETREAT`, no review row).

use super::audit::{AuditRow, Row, audit_row};
use super::{AuditPosition, Store, StoreError};

/// A review of one emergency access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassReview {
    /// The reviewed record's chain.
    pub chain: String,
    /// The reviewed record's position.
    pub seq: i64,
    /// `appropriate`, `not-appropriate` or `follow-up`.
    pub outcome: String,
    /// The reviewer's note (may be empty). Kept here, never in the chain, which holds only its
    /// keyed hash: a note may name people, and the chain can never be edited.
    pub note: String,
    /// Who vouched for the reviewer (the OpenID Connect issuer, or `demo`).
    pub reviewer_issuer: String,
    /// The reviewer's id at that issuer.
    pub reviewer_subject: String,
    /// The reviewer's display name.
    pub reviewer_name: Option<String>,
    /// The reviewer's role.
    pub reviewer_role: Option<String>,
    /// The reviewer's organisation (ODS code).
    pub reviewer_org: Option<String>,
    /// When, Unix microseconds.
    pub reviewed_us: i64,
    /// The review's own audit record: its chain.
    pub review_chain: String,
    /// The review's own audit record: its position.
    pub review_seq: i64,
}

/// Whose emergency accesses a reviewer sees: every one, or those of their own organisations'
/// staff (the record's organisation). An empty list sees none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewScope {
    /// Every emergency access (a region-wide role).
    Everything,
    /// Those made by staff of these organisations.
    Orgs(Vec<String>),
}

type ReviewRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    String,
    i64,
);

const REVIEW_COLUMNS: &str = "v.chain, v.seq, v.outcome, v.note, v.reviewer_issuer, v.reviewer_subject, v.reviewer_name, v.reviewer_role, v.reviewer_org, v.reviewed_us, v.review_chain, v.review_seq";

fn review(r: ReviewRow) -> BreakGlassReview {
    let (
        chain,
        seq,
        outcome,
        note,
        reviewer_issuer,
        reviewer_subject,
        reviewer_name,
        reviewer_role,
        reviewer_org,
        reviewed_us,
        review_chain,
        review_seq,
    ) = r;
    BreakGlassReview {
        chain,
        seq,
        outcome,
        note,
        reviewer_issuer,
        reviewer_subject,
        reviewer_name,
        reviewer_role,
        reviewer_org,
        reviewed_us,
        review_chain,
        review_seq,
    }
}

/// Adds ` AND org IN (…)` for a scope limited to organisations (an empty list matches none).
fn push_scope<DB: sqlx::Database>(
    sql: &mut sqlx::QueryBuilder<DB>,
    column: &'static str,
    scope: &ReviewScope,
) where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let ReviewScope::Orgs(orgs) = scope else {
        return;
    };
    sql.push(" AND ").push(column).push(" IN (");
    let mut list = sql.separated(", ");
    for org in orgs {
        list.push_bind(org.clone());
    }
    if orgs.is_empty() {
        list.push("NULL");
    }
    sql.push(")");
}

impl Store {
    /// Keeps a review; false (and nothing kept) when the access already has one. The primary
    /// key decides, so of two reviews of one access arriving together exactly one is kept.
    pub async fn insert_break_glass_review(
        &self,
        r: &BreakGlassReview,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => sqlx::query("INSERT INTO break_glass_reviews (chain, seq, outcome, note, reviewer_issuer, reviewer_subject, reviewer_name, reviewer_role, reviewer_org, reviewed_us, review_chain, review_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (chain, seq) DO NOTHING")
            .bind(&r.chain).bind(r.seq).bind(&r.outcome).bind(&r.note)
            .bind(&r.reviewer_issuer).bind(&r.reviewer_subject).bind(&r.reviewer_name)
            .bind(&r.reviewer_role).bind(&r.reviewer_org).bind(r.reviewed_us)
            .bind(&r.review_chain).bind(r.review_seq)
            .execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// The review of the record at `seq` in `chain`, if it has one.
    pub async fn break_glass_review(
        &self,
        chain: &str,
        seq: i64,
    ) -> Result<Option<BreakGlassReview>, StoreError> {
        const SQL: &str = "SELECT v.chain, v.seq, v.outcome, v.note, v.reviewer_issuer, v.reviewer_subject, v.reviewer_name, v.reviewer_role, v.reviewer_org, v.reviewed_us, v.review_chain, v.review_seq FROM break_glass_reviews v WHERE v.chain = $1 AND v.seq = $2";
        let row: Option<ReviewRow> = with_pool!(self, pool => sqlx::query_as(SQL).bind(chain).bind(seq).fetch_optional(pool).await?);
        Ok(row.map(review))
    }

    /// Emergency accesses (purpose `ETREAT`) within `scope` that have no review, oldest
    /// first, after `after` in that order, at most `limit`. Read from the search projection
    /// over its partial index of emergency records.
    pub async fn break_glass_queue(
        &self,
        scope: &ReviewScope,
        after: Option<&AuditPosition>,
        limit: u32,
    ) -> Result<Vec<Row>, StoreError> {
        let rows: Vec<AuditRow> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::new(audit_select!(
                " WHERE purpose = 'ETREAT' AND NOT EXISTS (SELECT 1 FROM break_glass_reviews v WHERE v.chain = audit_search.chain AND v.seq = audit_search.seq)"
            ));
            push_scope(&mut sql, "org", scope);
            if let Some(after) = after {
                sql.push(" AND recorded_us >= ").push_bind(after.recorded_us);
                sql.push(" AND (recorded_us, chain, seq) > (")
                    .push_bind(after.recorded_us)
                    .push(", ")
                    .push_bind(after.chain.clone())
                    .push(", ")
                    .push_bind(after.seq)
                    .push(")");
            }
            sql.push(" ORDER BY recorded_us, chain, seq LIMIT ")
                .push_bind(i64::from(limit));
            sql.build_query_as::<AuditRow>().fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(audit_row).collect())
    }

    /// How many emergency accesses within `scope` wait for review, and how many of them were
    /// made before `overdue_before_us`.
    pub async fn break_glass_waiting(
        &self,
        scope: &ReviewScope,
        overdue_before_us: i64,
    ) -> Result<(i64, i64), StoreError> {
        let counts: (i64, Option<i64>) = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::new("SELECT COUNT(*), SUM(CASE WHEN recorded_us < ");
            sql.push_bind(overdue_before_us);
            sql.push(" THEN 1 ELSE 0 END) FROM audit_search WHERE purpose = 'ETREAT' AND NOT EXISTS (SELECT 1 FROM break_glass_reviews v WHERE v.chain = audit_search.chain AND v.seq = audit_search.seq)");
            push_scope(&mut sql, "org", scope);
            sql.build_query_as::<(i64, Option<i64>)>().fetch_one(pool).await?
        });
        Ok((counts.0, counts.1.unwrap_or(0)))
    }

    /// Reviews of emergency accesses within `scope` (by the reviewed record's organisation),
    /// newest review first, each with the reviewed record; after `before` (the last review
    /// shown: its time, and the reviewed record's chain and position), at most `limit`.
    pub async fn break_glass_reviews(
        &self,
        scope: &ReviewScope,
        before: Option<&AuditPosition>,
        limit: u32,
    ) -> Result<Vec<(BreakGlassReview, Row)>, StoreError> {
        let reviews: Vec<ReviewRow> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::new("SELECT ");
            sql.push(REVIEW_COLUMNS);
            sql.push(" FROM break_glass_reviews v JOIN audit_search s ON s.chain = v.chain AND s.seq = v.seq WHERE 1 = 1");
            push_scope(&mut sql, "s.org", scope);
            if let Some(before) = before {
                sql.push(" AND v.reviewed_us <= ").push_bind(before.recorded_us);
                sql.push(" AND (v.reviewed_us, v.chain, v.seq) < (")
                    .push_bind(before.recorded_us)
                    .push(", ")
                    .push_bind(before.chain.clone())
                    .push(", ")
                    .push_bind(before.seq)
                    .push(")");
            }
            sql.push(" ORDER BY v.reviewed_us DESC, v.chain DESC, v.seq DESC LIMIT ")
                .push_bind(i64::from(limit));
            sql.build_query_as::<ReviewRow>().fetch_all(pool).await?
        });
        let mut out = Vec::with_capacity(reviews.len());
        for r in reviews {
            let r = review(r);
            // INVARIANT: a review names a record that is in the log and its projection (the
            // join above found its search row); one that went missing is tampering, which
            // `audit verify` reports, and is left out here rather than shown half.
            if let Some(row) = self.audit_record(&r.chain, r.seq).await? {
                out.push((r, row));
            }
        }
        Ok(out)
    }
}
