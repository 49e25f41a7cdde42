//! Searching the audit log: newest first, paged by a keyset, over the indexed columns.

use base64::Engine;

use super::audit::{AuditRow, Row, audit_row};
use super::{Store, StoreError};
use crate::fhir::search::{ParamError, Prefix, parse_date_criterion};

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
    /// An agreement that some disclosure of the record was made under
    /// (`audit_search_agreements`, one row per record and agreement).
    Agreement,
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
            AuditColumn::Agreement => "agreement",
        }
    }
}

/// The records a reader who does not see the whole log may see: the accesses made by staff
/// of `orgs` (the record's organisation) and the accesses that disclosed data from `sources`
/// (the sources of those organisations). Both empty: no record at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditScope {
    /// Organisations (ODS codes) whose staff's accesses are in scope.
    pub orgs: Vec<String>,
    /// Sources whose disclosures are in scope.
    pub sources: Vec<String>,
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

impl AuditSpan {
    /// The spans of `recorded_us` a FHIR date search value (with its comma alternatives)
    /// stands for. A date is a range as precise as it is written (`2026-11-25` is the whole
    /// day, UTC); a record's time is a point, so `eq` is within the range, `ge` from its
    /// start, `gt` from its end, `le` before its end and `lt` before its start. Shared by the
    /// AuditEvent API and the IG console's audit search.
    pub fn for_date(raw: &str) -> Result<Vec<AuditSpan>, ParamError> {
        let mut out = Vec::new();
        for alternative in raw.split(',') {
            let c = parse_date_criterion(alternative)?;
            let start = Some(c.range.start.saturating_mul(1000));
            let end = Some(c.range.end.saturating_mul(1000));
            let span = |from, to| AuditSpan { from, to };
            match c.prefix {
                Prefix::Eq => out.push(span(start, end)),
                Prefix::Ne => {
                    out.push(span(None, start));
                    out.push(span(end, None));
                }
                Prefix::Gt | Prefix::Sa => out.push(span(end, None)),
                Prefix::Ge => out.push(span(start, None)),
                Prefix::Lt | Prefix::Eb => out.push(span(None, start)),
                Prefix::Le => out.push(span(None, end)),
            }
        }
        Ok(out)
    }
}

impl AuditPosition {
    /// The opaque cursor of the page after this position: base64url of time, position and
    /// chain. Shared by the AuditEvent API and the IG console.
    pub fn cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}.{}", self.recorded_us, self.seq, self.chain))
    }

    /// Decodes a cursor made by [`AuditPosition::cursor`]; `None` when it is not one.
    pub fn from_cursor(raw: &str) -> Option<AuditPosition> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '.');
        let recorded_us = parts.next()?.parse().ok()?;
        let seq: i64 = parts.next()?.parse().ok().filter(|s| *s >= 0)?;
        let chain = parts.next()?;
        // The same shape as an audit record id's chain (`crate::audit::event::parse_id`).
        let chain_ok = !chain.is_empty()
            && chain.len() <= 64
            && chain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        chain_ok.then(|| AuditPosition {
            recorded_us,
            chain: chain.to_owned(),
            seq,
        })
    }
}

/// An audit search: every group must match (AND); within a group any value or span may
/// (OR). Results come newest first, by (recorded_us, chain, seq) descending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Column equality groups.
    pub equals: Vec<(AuditColumn, Vec<String>)>,
    /// Time groups.
    pub recorded: Vec<Vec<AuditSpan>>,
    /// Only the records within this scope; `None`: every record.
    pub scope: Option<AuditScope>,
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
                sql.push(" AND ");
                if *column == AuditColumn::Agreement {
                    sql.push("EXISTS (SELECT 1 FROM audit_search_agreements a WHERE a.chain = audit_search.chain AND a.seq = audit_search.seq AND a.agreement");
                } else {
                    sql.push(column.name());
                }
                sql.push(" IN (");
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
                    AuditColumn::Agreement => {
                        sql.push(")");
                    }
                    _ => {}
                }
            }
            if let Some(scope) = &query.scope {
                // INVARIANT: a reader's scope, whatever else was asked. An empty list matches
                // nothing, so a scope of no organisation and no source selects no record.
                sql.push(" AND (org IN (");
                let mut list = sql.separated(", ");
                for org in &scope.orgs {
                    list.push_bind(org.clone());
                }
                if scope.orgs.is_empty() {
                    list.push("NULL");
                }
                sql.push(") OR EXISTS (SELECT 1 FROM audit_search_sources d WHERE d.chain = audit_search.chain AND d.seq = audit_search.seq AND d.source IN (");
                let mut list = sql.separated(", ");
                for source in &scope.sources {
                    list.push_bind(source.clone());
                }
                if scope.sources.is_empty() {
                    list.push("NULL");
                }
                sql.push(")))");
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
