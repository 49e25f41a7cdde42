//! "Who has looked at this record" (issue 16, item 5): every access to one person's record
//! that the audit log holds, within the user's scope, as a page and as a print-friendly
//! document an IG lead can send in answer to a subject access request.
//!
//! - The records are the audit search's: those whose person is this one, found through
//!   [`Console::search_of`], so the scope is the audit search's to the letter (a region-wide
//!   role sees every record; anyone else the accesses by their own organisation's staff).
//! - Newest first, [`REPORT_PAGE`] records a part, each part read with the search's keyset
//!   cursor (nothing unbounded is held in memory); a part says when older accesses follow
//!   and links to the next part.
//! - The console's own records that name the person (IG staff searching or opening their
//!   trail, and these reports) are listed too, marked "IG console": the person is told who
//!   looked at the trail as well as who looked at the record.
//! - Each view of a report, and each refused one, is itself an audit record naming the person
//!   before the answer leaves; when it cannot be kept, nothing is shown.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uuid::Uuid;

use super::Console;
use super::audit::{Failed, Filters, FormError, position};
use super::person_pages::{self, Report};
use crate::audit::unsettled::SETTLE_ROUTE;
use crate::audit::{Body, Row, WRITE_INTENT, Written};
use crate::fhir::NhsNumber;
use crate::store::ConsoleSession;

/// Records a part of the report holds.
pub(super) const REPORT_PAGE: usize = 200;

const PAGE_ROUTE: &str = "/console/person";
const PRINT_ROUTE: &str = "/console/person/{nhs}/report";

/// The query of a report page: the NHS number as typed and the cursor of a later part.
#[derive(Debug, Default)]
pub(super) struct Asked {
    pub(super) nhs: String,
    pub(super) cursor: String,
}

impl Asked {
    fn from_query(raw: Option<&str>) -> Asked {
        let mut asked = Asked::default();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "nhs" => value.trim().clone_into(&mut asked.nhs),
                "cursor" => value.trim().clone_into(&mut asked.cursor),
                _ => {}
            }
        }
        asked
    }
}

/// One agreement and rule behind what an access disclosed, and how many resources it
/// permitted there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ground {
    pub(super) agreement: String,
    pub(super) rule: String,
    pub(super) resources: usize,
    /// Only emergency access (break-glass) permitted them.
    pub(super) emergency: bool,
}

/// Who made an access, as a reader of the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// Staff through the FHIR API (a care record system).
    Staff,
    /// The person, or a carer acting for them, through a patient portal.
    Patient,
    /// Information-governance staff in this console (the person's audit trail was viewed).
    Console,
    /// A caller without a valid token (refused).
    Unauthenticated,
}

/// One access, as a row of the report.
#[derive(Debug, Clone)]
pub(super) struct Access {
    /// The audit record's id (`{chain}.{seq}`).
    pub(super) id: String,
    pub(super) when: String,
    pub(super) kind: Kind,
    /// Name and user id.
    pub(super) who: String,
    pub(super) role: String,
    pub(super) org: String,
    /// A carer's relationship to the person.
    pub(super) relationship: Option<String>,
    /// What was done: read, search, the whole record, a view of the trail.
    pub(super) action: String,
    pub(super) purpose: String,
    pub(super) break_glass: Option<String>,
    pub(super) grounds: Vec<Ground>,
    pub(super) disclosed: usize,
    pub(super) withheld: usize,
    pub(super) outcome: String,
}

/// The resource type a recorded target names (`/fhir/{Type}…`), if it looks like one.
pub(super) fn resource_type(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let rest = path.strip_prefix("/fhir/").unwrap_or(path);
    let first = rest.trim_start_matches('/').split('/').next()?;
    (!first.is_empty() && first.len() <= 64 && first.bytes().all(|b| b.is_ascii_alphabetic()))
        .then_some(first)
}

/// What a record says was done, in words.
pub(super) fn action(b: &Body) -> String {
    let route = b.route.strip_prefix("/fhir").unwrap_or(&b.route);
    let kind = resource_type(&b.target).unwrap_or("resource");
    let write = b.method != "GET" && b.method != "HEAD";
    match route {
        "/console/audit" => "searched the audit log for this person".into(),
        "/console/audit/{id}" => "opened an audit record about this person".into(),
        "/console/audit.csv" => "exported this person's audit records (CSV)".into(),
        PAGE_ROUTE => "viewed this access report".into(),
        PRINT_ROUTE => "viewed this access report (print version)".into(),
        r if r.starts_with("/console") => format!("used the IG console ({r})"),
        SETTLE_ROUTE => match &b.write {
            Some(w) => settled(w, &b.outcome),
            None => format!("{} {SETTLE_ROUTE}", b.method),
        },
        "/Patient/{id}/$everything" => "the whole record ($everything)".into(),
        "/AuditEvent" => "searched the audit trail".into(),
        "/AuditEvent/{id}" => "read an audit record".into(),
        "/Consent" if write => "recorded a sharing preference".into(),
        "/Consent" => "read sharing preferences".into(),
        "/{type}" | "/{type}/{id}" if write => match &b.write {
            Some(w) => written(w, kind, &b.outcome),
            // A record from before writes said what they wrote.
            None => format!("wrote {kind}"),
        },
        "/{type}" => format!("searched {kind}"),
        "/{type}/{id}" => format!("read {kind}"),
        other => format!("{} {other}", b.method),
    }
}

/// A write in words: its intent (recorded before it was sent), or its outcome as the source
/// (or the gateway) answered it.
fn written(w: &Written, kind: &str, outcome: &str) -> String {
    let verb = if w.action == "U" { "update" } else { "create" };
    if w.stage == WRITE_INTENT {
        format!("about to {verb} {kind} (recorded before it was sent)")
    } else if outcome == "success" {
        format!("{verb}d {kind}")
    } else {
        format!("tried to {verb} {kind}")
    }
}

/// A write whose outcome was not known, settled later by reading the source.
fn settled(w: &Written, outcome: &str) -> String {
    let kind = w
        .resource
        .as_deref()
        .and_then(|r| r.split('/').next())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphabetic()))
        .unwrap_or("resource");
    let verb = if w.action == "U" { "update" } else { "create" };
    if outcome == "success" {
        format!("checked at the source: the {verb} of {kind} was made")
    } else {
        format!("checked at the source: the {verb} of {kind} was not made")
    }
}

/// The agreements and rules behind what a record disclosed, each once, in the order first
/// met.
fn grounds(b: &Body) -> Vec<Ground> {
    let mut seen: BTreeMap<(&str, &str, bool), usize> = BTreeMap::new();
    let mut order = Vec::new();
    for d in &b.disclosed {
        let key = (&*d.agreement, &*d.rule, d.emergency);
        let count = seen.entry(key).or_insert(0);
        if *count == 0 {
            order.push(key);
        }
        *count += 1;
    }
    order
        .into_iter()
        .map(|key| Ground {
            agreement: key.0.to_owned(),
            rule: key.1.to_owned(),
            resources: seen.get(&key).copied().unwrap_or_default(),
            emergency: key.2,
        })
        .collect()
}

impl Access {
    /// The row of a record.
    pub(super) fn of(row: &Row) -> Access {
        let b: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
        let kind = if b.route.starts_with("/console") {
            Kind::Console
        } else {
            match b.caller.as_str() {
                "patient" | "carer" => Kind::Patient,
                "unauthenticated" => Kind::Unauthenticated,
                _ => Kind::Staff,
            }
        };
        let who = match (&b.user_name, &b.user) {
            (Some(name), Some(id)) => format!("{name} ({id})"),
            (None, Some(id)) => id.clone(),
            (Some(name), None) => name.clone(),
            (None, None) => "no valid token".to_owned(),
        };
        Access {
            id: format!("{}.{}", row.record.chain, row.record.seq),
            when: super::audit_pages::when(row.columns.recorded_us),
            kind,
            who,
            role: b.role.clone().unwrap_or_default(),
            org: b.org.clone().unwrap_or_default(),
            relationship: b.relationship.clone(),
            action: action(&b),
            purpose: b.purpose.clone().unwrap_or_default(),
            break_glass: b.break_glass_reason.clone(),
            grounds: grounds(&b),
            disclosed: b.disclosed.len(),
            withheld: b.withheld,
            outcome: format!("{} ({})", b.outcome, b.status),
        }
    }
}

/// One part of a person's report, and the person's gateway id when the gateway knows them.
struct Part {
    accesses: Vec<Access>,
    next: Option<String>,
    person: Option<Uuid>,
}

impl Console {
    /// One part of the report on `nhs`, within the session's scope.
    async fn part(
        &self,
        session: &ConsoleSession,
        nhs: &NhsNumber,
        cursor: &str,
    ) -> Result<Part, Failed> {
        let filters = Filters {
            nhs: nhs.as_str().to_owned(),
            cursor: cursor.to_owned(),
            ..Filters::default()
        };
        // The audit search's own query: the person, the session's scope and the cursor.
        let mut search = self.search_of(session, &filters).await?;
        search.query.limit = u32::try_from(REPORT_PAGE + 1).unwrap_or(u32::MAX);
        self.0.audit.settle().await;
        let mut rows = self.0.store.audit_search(&search.query).await?;
        let mut next = None;
        if rows.len() > REPORT_PAGE {
            rows.truncate(REPORT_PAGE);
            next = rows.last().map(|last| position(last).cursor());
        }
        Ok(Part {
            accesses: rows.iter().map(Access::of).collect(),
            next,
            person: search.person,
        })
    }

    /// Serves a report page (`print`: the print-friendly document) for the NHS number as
    /// typed, recording the view under `route`.
    async fn report(
        &self,
        headers: &HeaderMap,
        session: &ConsoleSession,
        asked: &Asked,
        print: bool,
    ) -> Response {
        let route = if print { PRINT_ROUTE } else { PAGE_ROUTE };
        let path = &self.0.path;
        let region = super::audit::sees_everything(self, session);
        let answer = match NhsNumber::parse(&asked.nhs) {
            Err(_) => Err(Failed::Form(vec![FormError::Nhs])),
            Ok(nhs) => self
                .part(session, &nhs, &asked.cursor)
                .await
                .map(|part| (nhs, part)),
        };
        let (status, html, person) = match answer {
            Ok((nhs, part)) => {
                let report = Report {
                    nhs: nhs.as_str(),
                    accesses: &part.accesses,
                    next: part.next.as_deref(),
                    later_part: !asked.cursor.is_empty(),
                    produced: super::audit_pages::when(jiff::Timestamp::now().as_microsecond()),
                };
                let html = if print {
                    person_pages::print(path, session, region, &report)
                } else {
                    person_pages::page(path, session, region, asked, &[], Some(&report))
                };
                (StatusCode::OK, html, part.person)
            }
            Err(Failed::Form(e)) => {
                let html = person_pages::page(path, session, region, asked, &e, None);
                (StatusCode::BAD_REQUEST, html, None)
            }
            Err(Failed::Console(e)) => return self.refusal(&e),
        };
        // No record, no disclosure.
        if let Err(e) = self
            .record_view(headers, route, session, person, status)
            .await
        {
            return self.refusal(&e);
        }
        self.page(status, html)
    }
}

/// `GET /console/person`: the form and, with `nhs`, the report's first (or a later) part.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let asked = Asked::from_query(raw.as_deref());
    if asked.nhs.is_empty() && asked.cursor.is_empty() {
        // Nobody is named yet: the form alone, not a view of anything.
        let region = super::audit::sees_everything(&console, &session);
        let html = person_pages::page(&console.0.path, &session, region, &asked, &[], None);
        return console.page(StatusCode::OK, html);
    }
    console.report(&headers, &session, &asked, false).await
}

/// `GET /console/person/{nhs}/report`: the print-friendly report (`cursor`: a later part).
pub(super) async fn print(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(nhs): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut asked = Asked::from_query(raw.as_deref());
    asked.nhs = nhs;
    console.report(&headers, &session, &asked, true).await
}

#[cfg(test)]
mod tests;
