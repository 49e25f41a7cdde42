//! `GET /fhir/AuditEvent` and `GET /fhir/AuditEvent/{id}`: the audit log as FHIR R4
//! AuditEvents (rendered by [`crate::audit::event`]).
//!
//! Who sees what, deny by default:
//! - staff with role `ig-lead` or a region role (`[audit] region_roles`) whose scopes allow it
//!   (`user/AuditEvent.rs`, or a wildcard that covers it) see records in full: a region role
//!   every record, anyone else the records of accesses by their own organisation's staff and
//!   of accesses to the data their organisation discloses (the rule of
//!   [`crate::audit::Readers`], the IG console's too); a record outside is 404 on read and
//!   absent from searches;
//! - a person with a patient token acting for themself (`patient/AuditEvent.rs`) sees the
//!   records about their own person, without staff's personal details or the gateway's
//!   internals; naming anyone else with `patient` is 403, reading another person's record 404;
//! - everyone else (carers, any other role, whatever their scopes) is refused (403).
//!
//! Access is decided by role and scope, not by data-sharing agreements: the audit trail is
//! not a disclosure of anyone's care record.
//!
//! Searches run in the store over the indexed columns, newest first, one page at a time,
//! paged by a keyset cursor (the last record's time, chain and position), never by offset;
//! no total is counted.

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, bundle_response, fhir_response};
use super::query::{self, CURSOR, Used};
use super::record::Reply;
use crate::audit::event::{self, View};
use crate::auth::Principal;
use crate::auth::scopes::Interaction;
use crate::fhir::ODS_SYSTEM;
use crate::fhir::bundle::{SearchMode, Searchset};
use crate::store::{AuditColumn, AuditPosition, AuditQuery, AuditSpan};

/// The role that reads the audit log (within its organisation's scope, unless it is also a
/// region role).
const IG_LEAD: &str = "ig-lead";

/// The largest page of AuditEvents, whatever `_count` asks.
const MAX_PAGE: usize = 500;

/// The longest `policy` value searched for (agreement ids are at most 64 characters).
const MAX_POLICY: usize = 256;

const OUTCOME_SYSTEM: &str = "http://hl7.org/fhir/audit-event-outcome";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// The system of review reasons (the `review` search parameter's tokens).
const REVIEW_SYSTEM: &str = crate::audit::event::EXT_REVIEW;
/// Why records are flagged for IG review.
const REVIEW_REASONS: [&str; 2] = [
    crate::audit::REVIEW_BREAK_GLASS,
    crate::audit::REVIEW_CONSENT_WITHDRAWN_BY_STAFF,
];

/// Whose records a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Viewer {
    /// Records in full, within what an IG lead with this role at this organisation may read
    /// ([`crate::audit::Readers`]).
    Staff {
        /// The caller's role.
        role: Option<String>,
        /// The caller's organisation.
        org: Option<String>,
    },
    /// The records about this person, in the person's view; `None` when the gateway has
    /// never met the person (they have no records).
    Person(Option<Uuid>),
}

impl Viewer {
    fn view(&self) -> View {
        match self {
            Viewer::Staff { .. } => View::Full,
            Viewer::Person(_) => View::Person,
        }
    }

    /// The person a patient caller is: every AuditEvent request they make, answered or
    /// refused, is recorded as about them.
    fn own(&self) -> Option<Uuid> {
        match self {
            Viewer::Staff { .. } => None,
            Viewer::Person(own) => *own,
        }
    }
}

/// A refusal, recorded as about the caller's own person when they are a patient.
fn refused(viewer: &Viewer, e: ApiError) -> Response {
    Reply::new(facts(viewer.own()), e.into_response()).into_response()
}

/// Who the caller may see records of, or 403.
async fn viewer(
    state: &AppState,
    principal: &Principal,
    interaction: Interaction,
) -> Result<Viewer, ApiError> {
    let verb = match interaction {
        Interaction::Read => "reading AuditEvent",
        _ => "searching AuditEvent",
    };
    match &principal.patient {
        Some(p) if p.acting_for_relationship.is_some() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a carer cannot see the audit trail of the person's record; the person can",
        )),
        Some(p) => {
            if !principal.may("AuditEvent", interaction) {
                return Err(ApiError::insufficient_scope(verb));
            }
            let person = state
                .door
                .federation()
                .store()
                .person_by_nhs(p.nhs.as_str())
                .await?;
            Ok(Viewer::Person(person.map(|p| p.id)))
        }
        None if principal.role.as_deref() != Some(IG_LEAD)
            && !state
                .audit_readers
                .sees_everything(principal.role.as_deref()) =>
        {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the audit log is for information-governance leads (role ig-lead, or a region role), and for people about their own record",
            ))
        }
        None if !principal.may("AuditEvent", interaction) => {
            Err(ApiError::insufficient_scope(verb))
        }
        None => Ok(Viewer::Staff {
            role: principal.role.clone(),
            org: principal.org.clone(),
        }),
    }
}

/// A parsed AuditEvent search.
#[derive(Debug, Default)]
struct Search {
    /// The filters (no cursor, no limit yet).
    query: AuditQuery,
    /// The gateway patient ids named by `patient`, each group an OR.
    patients: Vec<Vec<String>>,
    /// Page size.
    count: usize,
    /// Where the page starts.
    cursor: Option<AuditPosition>,
    /// Pretty-print the answer.
    pretty: bool,
    /// What was used and ignored.
    used: Used,
}

/// The comma-separated alternatives of a token value, each non-empty, with `system|` taken
/// off when it is `system` (or absent: `|code`); another system is a 400.
fn tokens(param: &str, raw: &str, system: Option<&str>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for alternative in raw.split(',') {
        let value = match (alternative.split_once('|'), system) {
            (Some((s, v)), Some(expected)) if s.is_empty() || s == expected => v,
            (Some(_), Some(expected)) => {
                return Err(ApiError::bad_param(
                    param,
                    format!("the only system searched is `{expected}`"),
                ));
            }
            _ => alternative,
        };
        if value.is_empty() {
            return Err(ApiError::bad_param(param, "may not be empty"));
        }
        out.push(value.to_owned());
    }
    Ok(out)
}

/// The spans of `recorded_us` a `date` value stands for (see [`AuditSpan::for_date`]).
fn date_spans(raw: &str) -> Result<Vec<AuditSpan>, ApiError> {
    AuditSpan::for_date(raw).map_err(|e| ApiError::bad_param("date", e))
}

/// The `_cursor` of the page after `last` (see [`AuditPosition::cursor`]).
fn encode_cursor(last: &AuditPosition) -> String {
    last.cursor()
}

/// Decodes a `_cursor` made by [`encode_cursor`].
fn decode_cursor(raw: &str) -> Option<AuditPosition> {
    AuditPosition::from_cursor(raw)
}

/// Parses the search's parameters.
fn parse(
    pairs: Vec<(String, String)>,
    strict: bool,
    base: &str,
    page: (usize, usize),
) -> Result<Search, ApiError> {
    let mut search = Search {
        count: page.0,
        ..Search::default()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "patient" => {
                let ids = value
                    .split(',')
                    .map(|v| query::patient_id(v, base, "patient"))
                    .collect::<Result<Vec<_>, _>>()?;
                search.query.equals.push((AuditColumn::Person, ids.clone()));
                search.patients.push(ids);
            }
            "agent" => {
                let users = tokens("agent", &value, None)?;
                search.query.equals.push((AuditColumn::User, users));
            }
            "agent-org" => {
                let orgs = tokens("agent-org", &value, Some(ODS_SYSTEM))?;
                search.query.equals.push((AuditColumn::Org, orgs));
            }
            "outcome" => {
                let words = tokens("outcome", &value, Some(OUTCOME_SYSTEM))?
                    .iter()
                    .map(|code| {
                        event::outcome_word(code).map(str::to_owned).ok_or_else(|| {
                            ApiError::bad_param(
                                "outcome",
                                "must be 0 (success), 4 (refused) or 8 (error), or success, refused or error",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                search.query.equals.push((AuditColumn::Outcome, words));
            }
            "purpose" => {
                let codes = tokens("purpose", &value, Some(ACT_REASON))?;
                search.query.equals.push((AuditColumn::Purpose, codes));
            }
            "policy" => {
                // FHIR's parameter for `agent.policy`, where a record's agreements appear.
                let agreements = tokens("policy", &value, None)?;
                if agreements.iter().any(|a| a.len() > MAX_POLICY) {
                    return Err(ApiError::bad_param(
                        "policy",
                        "is longer than any agreement id",
                    ));
                }
                search
                    .query
                    .equals
                    .push((AuditColumn::Agreement, agreements));
            }
            "review" => {
                let reasons = tokens("review", &value, Some(REVIEW_SYSTEM))?;
                if let Some(bad) = reasons
                    .iter()
                    .find(|r| !REVIEW_REASONS.contains(&r.as_str()))
                {
                    let shown: String = bad.chars().take(64).collect();
                    return Err(ApiError::bad_param(
                        "review",
                        format!(
                            "`{shown}` is not a review reason; use {}",
                            REVIEW_REASONS.join(", ")
                        ),
                    ));
                }
                search.query.equals.push((AuditColumn::Review, reasons));
            }
            "date" => search.query.recorded.push(date_spans(&value)?),
            "_count" => search.count = query::page_size(&value, page.1)?,
            "_sort" => {
                if value != "-date" {
                    return Err(ApiError::bad_param(
                        "_sort",
                        "AuditEvents are served newest first only (`-date`)",
                    ));
                }
            }
            CURSOR => {
                search.cursor = Some(decode_cursor(&value).ok_or_else(|| {
                    ApiError::bad_param(
                        CURSOR,
                        "is not a cursor this gateway made; follow the Bundle's next link",
                    )
                })?);
                continue; // never repeated in self links
            }
            "_format" => query::check_format(&value)?,
            "_pretty" => search.pretty = value == "true",
            other => {
                search.used.unknown(other, strict)?;
                continue;
            }
        }
        search.used.pairs.push((name, value));
    }
    Ok(search)
}

/// `GET /fhir/AuditEvent`.
pub(super) async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let viewer = viewer(&state, &principal, Interaction::Search).await?;
    Ok(search_as(&state, &viewer, raw.as_deref(), &headers)
        .await
        .unwrap_or_else(|e| refused(&viewer, e)))
}

async fn search_as(
    state: &AppState,
    viewer: &Viewer,
    raw: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let page = (
        state.config.default_page_size.min(MAX_PAGE),
        state.config.max_page_size.min(MAX_PAGE),
    );
    let mut search = parse(
        query::pairs(raw)?,
        query::strict(headers),
        &state.base,
        page,
    )?;
    let person = match viewer {
        Viewer::Staff { role, org } => {
            // INVARIANT: within what the caller may read, whatever else was asked.
            search.query.scope = state.audit_readers.scope(role.as_deref(), org.as_deref());
            match search.patients.as_slice() {
                [one] if one.len() == 1 => Uuid::parse_str(&one[0]).ok(),
                _ => None,
            }
        }
        Viewer::Person(own) => {
            let own_id = own.map(|p| p.to_string());
            let theirs = search
                .patients
                .iter()
                .flatten()
                .all(|id| own_id.as_deref() == Some(id.as_str()));
            if !theirs {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a patient token sees the audit trail of its own record only",
                ));
            }
            // INVARIANT: the person's own records only, whatever else was asked.
            search
                .query
                .equals
                .push((AuditColumn::Person, own_id.into_iter().collect()));
            *own
        }
    };
    let mut bundle = Searchset::new(&state.base);
    bundle.link(
        "self",
        query::link(&state.base, "AuditEvent", &search.used.pairs),
    );
    let unknown_person = *viewer == Viewer::Person(None);
    if search.count > 0 && !unknown_person {
        search.query.after = search.cursor.take();
        // One more than the page, to know whether there is a next page.
        search.query.limit = u32::try_from(search.count + 1).unwrap_or(u32::MAX);
        // Every record this instance has answered for is searchable from here on.
        state.audit.settle().await;
        let mut rows = state
            .door
            .federation()
            .store()
            .audit_search(&search.query)
            .await?;
        if rows.len() > search.count {
            rows.truncate(search.count);
            if let Some(last) = rows.last() {
                let mut next = search.used.pairs.clone();
                next.push((
                    CURSOR.to_owned(),
                    encode_cursor(&AuditPosition {
                        recorded_us: last.columns.recorded_us,
                        chain: last.record.chain.clone(),
                        seq: last.record.seq,
                    }),
                ));
                bundle.link("next", query::link(&state.base, "AuditEvent", &next));
            }
        }
        for row in &rows {
            let resource =
                event::render(&row.record, viewer.view()).map_err(|e| ApiError::internal(&e))?;
            bundle.entry(resource, SearchMode::Match);
        }
    }
    if let Some(notice) = search.used.ignored_notice() {
        bundle.entry(notice, SearchMode::Outcome);
    }
    Ok(Reply::new(facts(person), bundle_response(&bundle, search.pretty)).into_response())
}

/// `GET /fhir/AuditEvent/{id}`: one record, if the caller may see it (404 otherwise, as for
/// one that does not exist).
pub(super) async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let viewer = viewer(&state, &principal, Interaction::Read).await?;
    Ok(read_as(&state, &viewer, &id, raw.as_deref())
        .await
        .unwrap_or_else(|e| refused(&viewer, e)))
}

async fn read_as(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let pretty = super::api::read_options(raw)?;
    if !crate::fhir::reference::is_valid_id(id) {
        return Err(ApiError::bad_param("id", "is not a valid FHIR id"));
    }
    let not_known = || ApiError::not_found(format!("AuditEvent/{id} is not known"));
    let Some((chain, seq)) = event::parse_id(id) else {
        return Err(not_known());
    };
    state.audit.settle().await;
    let row = state
        .door
        .federation()
        .store()
        .audit_record(chain, seq)
        .await?
        .ok_or_else(not_known)?;
    let about = row
        .columns
        .person
        .as_deref()
        .and_then(|p| Uuid::parse_str(p).ok());
    let may_read = match viewer {
        Viewer::Person(own) => own.is_some() && *own == about,
        Viewer::Staff { role, org } => {
            // The search's rule, on the record itself. A body that is not a record is read
            // by a region role alone (and rendering it fails as before).
            let body: crate::audit::Body =
                serde_json::from_str(&row.record.body).unwrap_or_default();
            state
                .audit_readers
                .may_read(role.as_deref(), org.as_deref(), &body)
        }
    };
    if !may_read {
        return Err(not_known());
    }
    let resource = event::render(&row.record, viewer.view()).map_err(|e| ApiError::internal(&e))?;
    Ok(Reply::new(
        facts(about),
        fhir_response(StatusCode::OK, &resource, pretty),
    )
    .into_response())
}

/// The audit facts of an AuditEvent request: whose audit trail it was (nothing is disclosed
/// under an agreement).
fn facts(person: Option<Uuid>) -> crate::disclose::Facts {
    crate::disclose::Facts {
        person,
        ..crate::disclose::Facts::default()
    }
}

#[cfg(test)]
mod tests;
