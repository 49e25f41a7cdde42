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

/// Where a branch of a search starts reading: the table whose index gives the records in
/// newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver<'q> {
    /// `audit_search` itself (by the time index, or whichever index its filters allow).
    Search,
    /// `audit_search` by organisation: the accesses by these organisations' staff.
    Staff(&'q [String]),
    /// `audit_search_sources`: the records that disclosed data from this source.
    Source(&'q str),
    /// `audit_search_agreements`: the records with a disclosure under this agreement.
    Agreement(&'q str),
}

impl Driver<'_> {
    /// The alias whose `recorded_us, chain, seq` order the branch.
    fn alias(self) -> &'static str {
        match self {
            Driver::Search | Driver::Staff(_) => "s",
            Driver::Source(_) | Driver::Agreement(_) => "x",
        }
    }
}

/// The branches a search reads, each newest first and cut at the page's size, merged.
///
/// Neither database can tell from a plain index how many records one value holds (SQLite
/// keeps no statistics unless asked), so the search chooses its way in by what it knows of
/// the log:
/// - a person's or a user's trail is short, and so are the records the partial indexes hold
///   (break-glass, refused and failed requests, review flags): one of them leads, and the
///   reader's scope and the agreement are checked on each of its records;
/// - otherwise an agreement leads: its side table's index walks its records in order;
/// - otherwise a reader's scope is read as one branch per way in, their staff's accesses by
///   the organisation index and each of their sources by its side table, so that a reader
///   whose organisation has few records does not walk the whole log to find them.
fn branches(query: &AuditQuery) -> Vec<Driver<'_>> {
    let short = |column: AuditColumn, values: &[String]| match column {
        AuditColumn::Person | AuditColumn::User | AuditColumn::Review => true,
        AuditColumn::Purpose => values.iter().all(|v| v == "ETREAT"),
        AuditColumn::Outcome => values.iter().all(|v| v != "success"),
        AuditColumn::Org | AuditColumn::Agreement => false,
    };
    if query.equals.iter().any(|(c, v)| short(*c, v)) {
        return vec![Driver::Search];
    }
    let agreement = query
        .equals
        .iter()
        .find_map(|(column, values)| match values.as_slice() {
            [one] if *column == AuditColumn::Agreement => Some(one.as_str()),
            _ => None,
        });
    if let Some(agreement) = agreement {
        return vec![Driver::Agreement(agreement)];
    }
    match &query.scope {
        None => vec![Driver::Search],
        Some(scope) => {
            let mut out = Vec::with_capacity(scope.sources.len() + 1);
            if !scope.orgs.is_empty() {
                out.push(Driver::Staff(&scope.orgs));
            }
            out.extend(scope.sources.iter().map(|s| Driver::Source(s)));
            out
        }
    }
}

/// `expression IN (values)`, bound; an empty list matches nothing.
fn push_in<DB>(sql: &mut sqlx::QueryBuilder<DB>, expression: &str, values: &[String])
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    sql.push(expression).push(" IN (");
    let mut list = sql.separated(", ");
    for value in values {
        list.push_bind(value.clone());
    }
    if values.is_empty() {
        list.push("NULL");
    }
    sql.push(")");
}

/// ` AND (…)`: only the records of `audit_search s` within `scope`, the accesses by its
/// organisations' staff and those that disclosed data from its sources. Empty lists match
/// nothing: no organisation and no source select no record. The one place the scope becomes
/// SQL, for the search and for the console's counts ([`super::audit_stats`]).
pub(super) fn push_scope<DB>(sql: &mut sqlx::QueryBuilder<DB>, scope: &AuditScope, postgres: bool)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    sql.push(" AND (");
    push_in(sql, "s.org", &scope.orgs);
    if !scope.sources.is_empty() {
        sql.push(" OR EXISTS (SELECT 1 FROM audit_search_sources d WHERE d.chain = s.chain AND d.seq = s.seq AND ");
        push_in(sql, "d.source", &scope.sources);
        if postgres {
            // Probed for each record read, never hashed whole: PostgreSQL would otherwise
            // read every record of the sources first (a fence, as `OFFSET 0` keeps the
            // subquery from being turned into a join).
            sql.push(" OFFSET 0");
        }
        sql.push(")");
    }
    sql.push(")");
}

/// One branch: the `recorded_us, chain, seq` of at most `query.limit` records, newest first.
fn push_branch<DB>(
    sql: &mut sqlx::QueryBuilder<DB>,
    query: &AuditQuery,
    driver: Driver<'_>,
    postgres: bool,
) where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    // Every name below is a constant of this code; values are bound.
    let x = driver.alias();
    sql.push(format_args!(
        "SELECT {x}.recorded_us, {x}.chain, {x}.seq FROM "
    ));
    match driver {
        Driver::Search | Driver::Staff(_) => {
            sql.push("audit_search s WHERE 1 = 1");
        }
        Driver::Source(source) => {
            sql.push("audit_search_sources x JOIN audit_search s ON s.chain = x.chain AND s.seq = x.seq WHERE x.source = ")
                .push_bind(source.to_owned());
        }
        Driver::Agreement(agreement) => {
            sql.push("audit_search_agreements x JOIN audit_search s ON s.chain = x.chain AND s.seq = x.seq WHERE x.agreement = ")
                .push_bind(agreement.to_owned());
        }
    }
    if let Driver::Staff(orgs) = driver {
        sql.push(" AND ");
        push_in(sql, "s.org", orgs);
    }
    for (column, values) in &query.equals {
        if *column == AuditColumn::Agreement {
            if matches!(driver, Driver::Agreement(a) if values.len() == 1 && values[0] == a) {
                continue;
            }
            sql.push(" AND EXISTS (SELECT 1 FROM audit_search_agreements a WHERE a.chain = s.chain AND a.seq = s.seq AND ");
            push_in(sql, "a.agreement", values);
            sql.push(")");
            continue;
        }
        sql.push(" AND ");
        push_in(sql, &format!("s.{}", column.name()), values);
        // Implied by the list, written as literals so the planner can use the partial
        // indexes of migration 0007 (constants of this code, not input).
        match column {
            AuditColumn::Purpose if values.iter().all(|v| v == "ETREAT") => {
                sql.push(" AND s.purpose = 'ETREAT'");
            }
            AuditColumn::Outcome if values.iter().all(|v| v != "success") => {
                sql.push(" AND s.outcome <> 'success'");
            }
            AuditColumn::Review => {
                sql.push(" AND s.review IS NOT NULL");
            }
            _ => {}
        }
    }
    if let (Some(scope), Driver::Search | Driver::Agreement(_)) = (&query.scope, driver) {
        // INVARIANT: a reader's scope, whatever else was asked (the other drivers are the
        // scope's own ways in).
        push_scope(sql, scope, postgres);
    }
    for spans in &query.recorded {
        match spans.as_slice() {
            // One span is written plainly, so that the index's range is used.
            [one] => push_span(sql, x, one),
            _ => {
                sql.push(" AND (1 = 0");
                for span in spans {
                    sql.push(" OR (1 = 1");
                    push_span(sql, x, span);
                    sql.push(")");
                }
                sql.push(")");
            }
        }
    }
    if let Some(after) = &query.after {
        // The first comparison lets both backends narrow by the time index; the row
        // comparison is the exact keyset.
        sql.push(format_args!(" AND {x}.recorded_us <= "))
            .push_bind(after.recorded_us);
        sql.push(format_args!(
            " AND ({x}.recorded_us, {x}.chain, {x}.seq) < ("
        ))
        .push_bind(after.recorded_us)
        .push(", ")
        .push_bind(after.chain.clone())
        .push(", ")
        .push_bind(after.seq)
        .push(")");
    }
    sql.push(format_args!(
        " ORDER BY {x}.recorded_us DESC, {x}.chain DESC, {x}.seq DESC LIMIT "
    ))
    .push_bind(i64::from(query.limit));
}

/// ` AND from <= {x}.recorded_us AND {x}.recorded_us < to`, for the bounds a span has.
fn push_span<DB>(sql: &mut sqlx::QueryBuilder<DB>, x: &str, span: &AuditSpan)
where
    DB: sqlx::Database,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    if let Some(from) = span.from {
        sql.push(format_args!(" AND {x}.recorded_us >= "))
            .push_bind(from);
    }
    if let Some(to) = span.to {
        sql.push(format_args!(" AND {x}.recorded_us < "))
            .push_bind(to);
    }
}

/// The whole search: its branches merged (a record reached by two is listed once), the
/// newest `query.limit` of them, with their rows and records.
fn push_search<DB>(sql: &mut sqlx::QueryBuilder<DB>, query: &AuditQuery, postgres: bool)
where
    DB: sqlx::Database,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    sql.push("SELECT s.chain, s.seq, s.recorded_us, s.person_id, s.user_id, s.org, s.purpose, s.outcome, s.review, r.body, r.prev_hash, r.hash FROM (");
    let branches = branches(query);
    if branches.is_empty() {
        // A scope of no organisation and no source: no record.
        sql.push("SELECT recorded_us, chain, seq FROM audit_search WHERE 1 = 0");
    }
    for (i, driver) in branches.into_iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ");
        }
        sql.push("SELECT * FROM (");
        push_branch(sql, query, driver, postgres);
        sql.push(") b");
    }
    sql.push(") h JOIN audit_search s ON s.chain = h.chain AND s.seq = h.seq JOIN audit_records r ON r.chain = h.chain AND r.seq = h.seq ORDER BY h.recorded_us DESC, h.chain DESC, h.seq DESC LIMIT ")
        .push_bind(i64::from(query.limit));
}

impl Store {
    /// One page of audit records matching `query`, newest first, read over the indexed
    /// columns with a keyset (never an offset), at most `query.limit` rows.
    pub async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<Row>, StoreError> {
        let postgres = matches!(self, Store::Postgres(_));
        let rows: Vec<AuditRow> = with_pool!(self, pool => {
            let mut sql = sqlx::QueryBuilder::default();
            push_search(&mut sql, query, postgres);
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
