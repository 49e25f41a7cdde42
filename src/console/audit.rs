//! The audit search (issue 16, item 3), one record in full, and the CSV export, each within
//! the user's scope (item 2, the rule of [`crate::audit::Readers`], shared with the
//! AuditEvent API):
//! - a user whose role is a region role (`[audit] region_roles`) sees every record;
//! - anyone else sees the records of accesses made by their own organisation's staff (the
//!   record's `org`) and of accesses to the data their organisation discloses (a resource
//!   disclosed from one of its sources); a record outside that is never listed or exported,
//!   and its page is 404, as for one that does not exist.
//!
//! Searches run in the store ([`crate::store::Store::audit_search`]) over the indexed
//! columns, newest first, paged by the same opaque keyset cursor as the AuditEvent API. Each
//! view and export is itself an audit record with the console user as the user, and, when it
//! is about one person, that person.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::audit_pages::{self, Listed};
use super::form_errors::Mistake;
use super::signin::Actor;
use super::{Console, ConsoleError};
use crate::audit::export::{CSV_COLUMNS, csv_line};
use crate::audit::{Body, REVIEW_BREAK_GLASS, REVIEW_CONSENT_WITHDRAWN_BY_STAFF, Row, event};
use crate::fhir::NhsNumber;
use crate::store::{AuditColumn, AuditPosition, AuditQuery, AuditSpan, ConsoleSession, Store};

/// Records per page of the search.
pub(super) const PAGE: usize = 50;
/// Records read from the store at a time by the CSV export.
const CSV_BATCH: u32 = 500;
/// The longest user id or organisation code a search may name.
const MAX_FIELD: usize = 256;

const SEARCH_ROUTE: &str = "/console/audit";
const RECORD_ROUTE: &str = "/console/audit/{id}";
const CSV_ROUTE: &str = "/console/audit.csv";

/// The search form's fields as the user wrote them, shown again in the form.
#[derive(Debug, Default, Clone)]
pub(super) struct Filters {
    pub(super) nhs: String,
    pub(super) user: String,
    pub(super) org: String,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) outcome: String,
    pub(super) purpose: String,
    pub(super) review: String,
    pub(super) agreement: String,
    pub(super) cursor: String,
}

impl Filters {
    /// The fields of a query string; unknown fields are ignored, blanks mean "any".
    fn from_query(raw: Option<&str>) -> Filters {
        let mut f = Filters::default();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let value = value.trim().to_owned();
            match name.as_ref() {
                "nhs" => f.nhs = value,
                "user" => f.user = value,
                "org" => f.org = value,
                "from" => f.from = value,
                "to" => f.to = value,
                "outcome" => f.outcome = value,
                "purpose" => f.purpose = value,
                "review" => f.review = value,
                "agreement" => f.agreement = value,
                "cursor" => f.cursor = value,
                _ => {}
            }
        }
        f
    }

    /// The query string of the filters (without the cursor), for links.
    pub(super) fn query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("nhs", &self.nhs),
            ("user", &self.user),
            ("org", &self.org),
            ("from", &self.from),
            ("to", &self.to),
            ("outcome", &self.outcome),
            ("purpose", &self.purpose),
            ("review", &self.review),
            ("agreement", &self.agreement),
        ] {
            if !value.is_empty() {
                out.append_pair(name, value);
            }
        }
        out.finish()
    }
}

/// Why a search could not be run: shown above the form again, with status 400. The text
/// never repeats what was typed (it may be an NHS number).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormError {
    /// Not an NHS number.
    #[error("the NHS number must be 10 digits with a valid check digit, such as 943 476 5919")]
    Nhs,
    /// Not a date.
    #[error("the date {0} must be a date such as 2026-11-25")]
    Date(&'static str),
    /// Not an outcome.
    #[error("the outcome must be success, refused or error")]
    Outcome,
    /// Not a purpose of use code.
    #[error("the purpose of use must be a code such as TREAT or ETREAT")]
    Purpose,
    /// Not a review flag.
    #[error("the review flag must be break-glass or consent-withdrawn-by-staff")]
    Review,
    /// Not an agreement id.
    #[error("the agreement must be an agreement id such as dsa-northshire-direct-care")]
    Agreement,
    /// A field longer than any id.
    #[error("the {0} is too long")]
    TooLong(&'static str),
    /// The date to is before the date from.
    #[error("the date to must be the same as or after the date from")]
    Backwards,
    /// A cursor this console did not make.
    #[error("this link to older records was not made by this console; please search again")]
    Cursor,
}

impl FormError {
    /// The id of the form's field the mistake is in; none for a link the console did not
    /// make.
    pub(super) fn field(&self) -> Option<&'static str> {
        match self {
            FormError::Nhs => Some("f-nhs"),
            FormError::Date("from") => Some("f-from"),
            FormError::Date(_) | FormError::Backwards => Some("f-to"),
            FormError::Outcome => Some("f-outcome"),
            FormError::Purpose => Some("f-purpose"),
            FormError::Review => Some("f-review"),
            FormError::Agreement => Some("f-agreement"),
            FormError::TooLong("user id") => Some("f-user"),
            FormError::TooLong(_) => Some("f-org"),
            FormError::Cursor => None,
        }
    }

    /// The mistake as a form shows it.
    pub(super) fn mistake(&self) -> Mistake {
        match self.field() {
            Some(field) => Mistake::at(field, self),
            None => Mistake::whole(self),
        }
    }
}

/// The mistakes of a form, as it shows them.
pub(super) fn mistakes(errors: &[FormError]) -> Vec<Mistake> {
    errors.iter().map(FormError::mistake).collect()
}

/// A search failed: the form was wrong (every mistake in it, in the form's order), or the
/// console could not serve it.
pub(super) enum Failed {
    Form(Vec<FormError>),
    Console(ConsoleError),
}

impl From<ConsoleError> for Failed {
    fn from(e: ConsoleError) -> Self {
        Failed::Console(e)
    }
}

impl From<crate::store::StoreError> for Failed {
    fn from(e: crate::store::StoreError) -> Self {
        Failed::Console(e.into())
    }
}

/// A search ready for the store, and the person it names, if exactly one.
pub(super) struct Search {
    pub(super) query: AuditQuery,
    pub(super) person: Option<Uuid>,
}

/// A code of letters, digits, `-` and `_`, at most 32 long.
fn is_code(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An agreement id as `concord policy check` accepts one: 1 to 64 of `a-z`, `0-9` and `-`.
fn is_agreement_id(value: &str) -> bool {
    value.len() <= 64 && crate::fhir::is_slug(value)
}

/// The equality groups and time spans of the form's fields, without the person (which needs
/// the store) and without the user's scope; every mistake is pushed to `errors`, in the
/// form's order.
fn groups(f: &Filters, query: &mut AuditQuery, errors: &mut Vec<FormError>) {
    for (value, column, name) in [
        (&f.user, AuditColumn::User, "user id"),
        (&f.org, AuditColumn::Org, "organisation"),
    ] {
        if value.len() > MAX_FIELD {
            errors.push(FormError::TooLong(name));
        } else if !value.is_empty() {
            query.equals.push((column, vec![value.clone()]));
        }
    }
    // From the start of the first day to the end of the last, UTC.
    let mut ends = [None, None];
    for (i, (value, prefix, name)) in [(&f.from, "ge", "from"), (&f.to, "le", "to")]
        .into_iter()
        .enumerate()
    {
        if value.is_empty() {
            continue;
        }
        let spans = value
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| AuditSpan::for_date(&format!("{prefix}{value}")).ok())
            .flatten();
        match spans {
            Some(spans) => {
                ends[i] = spans
                    .first()
                    .and_then(|s| if i == 0 { s.from } else { s.to });
                query.recorded.push(spans);
            }
            None => errors.push(FormError::Date(name)),
        }
    }
    // `to` is exclusive: the end of its day. Before or at the start of `from`'s day, the
    // range holds nothing.
    if let [Some(from), Some(to)] = ends
        && to <= from
    {
        errors.push(FormError::Backwards);
    }
    if !f.outcome.is_empty() {
        match event::outcome_word(&f.outcome) {
            Some(word) => query
                .equals
                .push((AuditColumn::Outcome, vec![word.to_owned()])),
            None => errors.push(FormError::Outcome),
        }
    }
    if !f.purpose.is_empty() {
        if is_code(&f.purpose) {
            query
                .equals
                .push((AuditColumn::Purpose, vec![f.purpose.clone()]));
        } else {
            errors.push(FormError::Purpose);
        }
    }
    if !f.review.is_empty() {
        if [REVIEW_BREAK_GLASS, REVIEW_CONSENT_WITHDRAWN_BY_STAFF].contains(&f.review.as_str()) {
            query
                .equals
                .push((AuditColumn::Review, vec![f.review.clone()]));
        } else {
            errors.push(FormError::Review);
        }
    }
    if !f.agreement.is_empty() {
        if is_agreement_id(&f.agreement) {
            query
                .equals
                .push((AuditColumn::Agreement, vec![f.agreement.clone()]));
        } else {
            errors.push(FormError::Agreement);
        }
    }
}

/// True when the session's role sees the whole audit log.
pub(super) fn sees_everything(console: &Console, session: &ConsoleSession) -> bool {
    console.0.readers.sees_everything(session.role.as_deref())
}

/// True when the record `body` is within what the session may see.
fn in_scope(console: &Console, session: &ConsoleSession, body: &Body) -> bool {
    console
        .0
        .readers
        .may_read(session.role.as_deref(), session.org.as_deref(), body)
}

/// True when an access made by staff of `org` is one the session answers for: a region
/// role's, or one made by the session's own organisation's staff (the break-glass review's
/// rule: the accessing organisation reviews its staff's emergency accesses).
pub(super) fn staff_in_scope(
    console: &Console,
    session: &ConsoleSession,
    org: Option<&str>,
) -> bool {
    sees_everything(console, session) || (session.org.is_some() && session.org.as_deref() == org)
}

/// The actor a console session stands for in the audit log.
pub(super) fn actor(session: &ConsoleSession) -> Actor {
    Actor {
        user: session.subject.clone(),
        name: session.name.clone(),
        org: session.org.clone(),
        role: session.role.clone(),
    }
}

impl Console {
    /// The store query of a form, within the session's scope.
    pub(super) async fn search_of(
        &self,
        session: &ConsoleSession,
        f: &Filters,
    ) -> Result<Search, Failed> {
        let mut query = AuditQuery::default();
        let mut errors = Vec::new();
        let nhs = if f.nhs.is_empty() {
            None
        } else {
            let parsed = NhsNumber::parse(&f.nhs);
            if parsed.is_err() {
                errors.push(FormError::Nhs);
            }
            parsed.ok()
        };
        groups(f, &mut query, &mut errors);
        let after = if f.cursor.is_empty() {
            None
        } else {
            let after = AuditPosition::from_cursor(&f.cursor);
            if after.is_none() {
                errors.push(FormError::Cursor);
            }
            after
        };
        if !errors.is_empty() {
            return Err(Failed::Form(errors));
        }
        query.after = after;
        let mut person = None;
        if let Some(nhs) = nhs {
            let known = self.0.store.person_by_nhs(nhs.as_str()).await?;
            person = known.map(|p| p.id);
            // Someone the gateway has never met has no records: an empty group matches none.
            let ids = person.iter().map(Uuid::to_string).collect();
            query.equals.push((AuditColumn::Person, ids));
        }
        // INVARIANT: outside the region roles, only the records of accesses by the user's
        // own organisation's staff and to its data, whatever else was asked; no organisation,
        // none.
        query.scope = self
            .0
            .readers
            .scope(session.role.as_deref(), session.org.as_deref());
        Ok(Search { query, person })
    }

    /// The agreements of the policy set in force: (id, title).
    fn agreements(&self) -> Vec<(String, String)> {
        self.0
            .policies
            .current()
            .agreements
            .iter()
            .map(|a| (a.id.to_string(), a.title.clone()))
            .collect()
    }

    /// The NHS numbers of the people these rows are about, by gateway id.
    async fn nhs_numbers(&self, rows: &[Row]) -> Result<HashMap<String, String>, ConsoleError> {
        let mut out = HashMap::new();
        for person in rows.iter().filter_map(|r| r.columns.person.as_deref()) {
            if out.contains_key(person) {
                continue;
            }
            let Ok(id) = Uuid::parse_str(person) else {
                continue;
            };
            if let Some(p) = self.0.store.person_by_id(id).await? {
                out.insert(person.to_owned(), p.nhs_number);
            }
        }
        Ok(out)
    }

    /// Records a view or export of the audit log by `session`, about `person` if it names one.
    pub(super) async fn record_view(
        &self,
        headers: &HeaderMap,
        route: &'static str,
        session: &ConsoleSession,
        person: Option<Uuid>,
        status: StatusCode,
    ) -> Result<(), ConsoleError> {
        let mut body = self.event(headers, "GET", route, Some(&actor(session)), status);
        body.person = person.map(|p| p.to_string());
        self.append(&body).await
    }

    /// One page of a search: the rows shown and the cursor of the next page.
    async fn page_of(
        &self,
        session: &ConsoleSession,
        filters: &Filters,
    ) -> Result<(Vec<Listed>, Option<String>, Option<Uuid>), Failed> {
        let mut search = self.search_of(session, filters).await?;
        // One more than the page, to know whether there is an older page.
        search.query.limit = u32::try_from(PAGE + 1).unwrap_or(u32::MAX);
        // Every record this instance has answered for is searchable from here on.
        self.0.audit.settle().await;
        let mut rows = self.0.store.audit_search(&search.query).await?;
        let mut next = None;
        if rows.len() > PAGE {
            rows.truncate(PAGE);
            next = rows.last().map(|last| position(last).cursor());
        }
        let people = self.nhs_numbers(&rows).await?;
        let listed = rows.iter().map(|r| Listed::of(r, &people)).collect();
        Ok((listed, next, search.person))
    }
}

/// A row's place in newest-first order.
pub(super) fn position(row: &Row) -> AuditPosition {
    AuditPosition {
        recorded_us: row.columns.recorded_us,
        chain: row.record.chain.clone(),
        seq: row.record.seq,
    }
}

/// `GET /console/audit`: the search form and, when it was filled in, one page of results.
pub(super) async fn search(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filters = Filters::from_query(raw.as_deref());
    let path = &console.0.path;
    let agreements = console.agreements();
    let form = audit_pages::Search {
        region: sees_everything(&console, &session),
        filters: &filters,
        agreements: &agreements,
    };
    let (status, html, person) = match console.page_of(&session, &filters).await {
        Ok((rows, next, person)) => {
            let results = audit_pages::Results {
                rows: &rows,
                next: next.as_deref(),
            };
            let html = audit_pages::search(path, &session, &form, &[], Some(results));
            (StatusCode::OK, html, person)
        }
        Err(Failed::Form(e)) => {
            let html = audit_pages::search(path, &session, &form, &e, None);
            (StatusCode::BAD_REQUEST, html, None)
        }
        Err(Failed::Console(e)) => return console.refusal(&e),
    };
    // No record, no disclosure.
    if let Err(e) = console
        .record_view(&headers, SEARCH_ROUTE, &session, person, status)
        .await
    {
        return console.refusal(&e);
    }
    console.page(status, html)
}

/// `GET /console/audit/{chain}.{seq}`: one record in full, if it is within the user's scope
/// (404 otherwise, as for one that does not exist).
pub(super) async fn record(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let found = async {
        let Some((chain, seq)) = event::parse_id(&id) else {
            return Ok(None);
        };
        console.0.audit.settle().await;
        let row = console.0.store.audit_record(chain, seq).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // A body that is not a record is shown to nobody but a region role (`audit verify`
        // names it); otherwise the same rule as the search.
        let body: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
        if !in_scope(&console, &session, &body) {
            return Ok(None);
        }
        let people = console.nhs_numbers(std::slice::from_ref(&row)).await?;
        let review = console.standing_of(&session, &row).await?;
        Ok::<_, ConsoleError>(Some((row, body, people, review)))
    };
    let (status, html, person) = match found.await {
        Ok(Some((row, body, people, review))) => {
            let nhs = row.columns.person.as_ref().and_then(|p| people.get(p));
            let person = row
                .columns
                .person
                .as_deref()
                .and_then(|p| Uuid::parse_str(p).ok());
            let nhs = nhs.map(String::as_str);
            let html = audit_pages::record(&console.0.path, &row, &body, nhs, review.as_ref());
            (StatusCode::OK, html, person)
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            audit_pages::not_found(&console.0.path),
            None,
        ),
        Err(e) => return console.refusal(&e),
    };
    if let Err(e) = console
        .record_view(&headers, RECORD_ROUTE, &session, person, status)
        .await
    {
        return console.refusal(&e);
    }
    console.page(status, html)
}

/// `GET /console/audit.csv`: every record of a search (within the user's scope), newest
/// first, streamed from the store a batch at a time. The cursor, if any, is ignored.
pub(super) async fn csv(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut filters = Filters::from_query(raw.as_deref());
    filters.cursor.clear();
    let mut search = match console.search_of(&session, &filters).await {
        Ok(s) => s,
        Err(Failed::Form(e)) => {
            let agreements = console.agreements();
            let form = audit_pages::Search {
                region: sees_everything(&console, &session),
                filters: &filters,
                agreements: &agreements,
            };
            let html = audit_pages::search(&console.0.path, &session, &form, &e, None);
            return console.page(StatusCode::BAD_REQUEST, html);
        }
        Err(Failed::Console(e)) => return console.refusal(&e),
    };
    if let Err(e) = console
        .record_view(&headers, CSV_ROUTE, &session, search.person, StatusCode::OK)
        .await
    {
        return console.refusal(&e);
    }
    console.0.audit.settle().await;
    search.query.limit = CSV_BATCH;
    let header_line = format!("{}\r\n", CSV_COLUMNS.join(","));
    let head = futures_util::stream::once(async move { Ok(Bytes::from(header_line)) });
    let rows = csv_batches(console.0.store.clone(), search.query);
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(head, rows));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"concord-audit.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// The CSV lines of every record `query` selects, a batch of `query.limit` at a time.
fn csv_batches(
    store: Store,
    query: AuditQuery,
) -> impl futures_util::Stream<Item = Result<Bytes, crate::store::StoreError>> {
    futures_util::stream::unfold(Some((store, query)), |state| async move {
        let (store, mut query) = state?;
        match store.audit_search(&query).await {
            Ok(rows) => {
                let mut chunk = String::new();
                for row in &rows {
                    chunk.push_str(&csv_line(row));
                    chunk.push_str("\r\n");
                }
                let full = u32::try_from(rows.len()).is_ok_and(|n| n >= query.limit);
                query.after = rows.last().map(position);
                let next = full.then_some((store, query));
                Some((Ok(Bytes::from(chunk)), next))
            }
            Err(e) => {
                tracing::error!(error = %e, "console audit export failed");
                Some((Err(e), None))
            }
        }
    })
}

#[cfg(test)]
mod tests;
