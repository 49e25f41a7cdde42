//! The FHIR endpoints for people's records: each parses the request, asks the door
//! ([`crate::disclose`]) and renders its answer, with the answer's audit facts.

use std::collections::HashSet;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, bundle_response, fhir_response};
use super::query::{self, CURSOR, SortSpec, TypeSearch, Used};
use super::record::Reply;
use crate::auth::Principal;
use crate::auth::scopes::Interaction;
use crate::disclose::{Answer, Ask, Notices};
use crate::federation::{Problem, SourceReport};
use crate::fhir::bundle::{SearchMode, Searchset};
use crate::fhir::reference::{is_resource_type_name, is_valid_id};
use crate::fhir::resource::SharedResource;
use crate::fhir::search::{self, KeyPart, KeyRef, TYPES, TypeDef, compare_keys, encode_cursor};
use crate::fhir::{
    CONCORD_CANONICAL, Issue, NHS_NUMBER_SYSTEM, NhsNumber, Severity, operation_outcome,
};
use crate::sources::SourceError;

type ApiResult = Result<Reply, ApiError>;

/// `GET /fhir/metadata`.
pub async fn metadata(State(state): State<AppState>) -> Response {
    fhir_response(
        StatusCode::OK,
        &super::capability::statement(
            &state.base,
            state.door.federation().profiles(),
            &crate::disclose::WRITABLE
                .iter()
                .copied()
                .filter(|t| {
                    state
                        .door
                        .federation()
                        .sources()
                        .iter()
                        .any(|s| s.accepts_writes(t))
                })
                .collect::<Vec<_>>(),
        ),
        false,
    )
}

/// `GET /fhir/{type}`.
pub async fn search_type(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(resource_type): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let pairs = query::pairs(raw.as_deref())?;
    let strict = query::strict(&headers);
    if resource_type == "Patient" {
        require(&principal, "Patient", Interaction::Search)?;
        return patient_search(&state, &principal, pairs, strict).await;
    }
    let def = served_type(&resource_type)?;
    require(&principal, def.name, Interaction::Search)?;
    let search = query::type_search(
        def,
        pairs,
        strict,
        &state.base,
        (state.config.default_page_size, state.config.max_page_size),
    )?;
    let Some(patient) = search.patient.as_deref() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "required",
            format!(
                "a {} search must name the person: `patient={{id}}`{}",
                def.name,
                if def.patient_element == "subject" {
                    " or `subject=Patient/{id}`"
                } else {
                    ""
                }
            ),
        ));
    };
    let ask = Ask::Search {
        id: patient,
        def,
        filters: &search.filters,
    };
    let answer = state.door.answer(&principal, ask).await?;
    searchset(&state, &principal, def.name, &search, answer, || {
        ApiError::not_found(format!("Patient/{patient} is not known"))
    })
}

/// The searchset of what the door disclosed about one person, on `path`. A patient token
/// asking about anyone else gets `not_theirs` (404: they learn nothing, not even whether the
/// person exists); a first page with nothing disclosed is the one answer that gives nothing
/// away (providers that did not answer are still named); otherwise the page.
fn searchset(
    state: &AppState,
    principal: &Principal,
    path: &str,
    search: &TypeSearch,
    mut answer: Answer,
    not_theirs: impl FnOnce() -> ApiError,
) -> ApiResult {
    if answer.person.is_none() {
        if principal.patient.is_some() {
            return Err(not_theirs());
        }
        let response = nothing_to_show(state, path, &search.used, search.pretty, &[]);
        return Ok(Reply::new(answer.into_facts(&[]), response));
    }
    if answer.is_empty() && search.cursor.is_none() {
        let response = nothing_to_show(state, path, &search.used, search.pretty, &answer.reports);
        return Ok(Reply::new(answer.into_facts(&[]), response));
    }
    let (response, sent) = paged(state, path, search, &mut answer);
    Ok(Reply::new(answer.into_facts(&sent), response))
}

/// 403 unless the token's scopes allow `interaction` on `resource_type`.
pub(super) fn require(
    principal: &Principal,
    resource_type: &str,
    interaction: Interaction,
) -> Result<(), ApiError> {
    if principal.may(resource_type, interaction) {
        return Ok(());
    }
    let verb = match interaction {
        Interaction::Read => "reading",
        Interaction::Search => "searching",
        Interaction::Create => "creating",
        Interaction::Update => "updating",
    };
    Err(ApiError::insufficient_scope(&format!(
        "{verb} {resource_type}"
    )))
}

fn served_type(name: &str) -> Result<&'static TypeDef, ApiError> {
    if !is_resource_type_name(name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the path does not name a FHIR resource type",
        ));
    }
    search::type_def(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            format!("resource type `{name}` is not served by this gateway; see /fhir/metadata"),
        )
    })
}

/// What every answer that discloses nothing says, whatever the reason: the person is not
/// known, the agreements permit the caller nothing of theirs, or their providers did not
/// answer. One text for all, so that a caller who may see nothing of a person cannot tell
/// whether the person is known anywhere.
pub const NOTHING_TO_SHOW: &str = "No record that you may see was found. The person may not be known, the data-sharing agreements in force may not permit you to see their records, or a provider may not have answered: this view may be incomplete.";

/// The answer to a search that disclosed nothing: the same whether or not the person is
/// known, and whatever the agreements withheld (`used` comes from the request alone). Sources
/// that did not answer are still named: they are about the providers, not the person, and
/// resolving an NHS number asks the same sources whether or not anyone holds it.
fn nothing_to_show(
    state: &AppState,
    path: &str,
    used: &Used,
    pretty: bool,
    reports: &[SourceReport],
) -> Response {
    let mut bundle = Searchset::new(&state.base);
    bundle
        .total(0)
        .link("self", query::link(&state.base, path, &used.pairs));
    bundle.entry(
        operation_outcome(&[Issue::new(
            Severity::Information,
            "informational",
            NOTHING_TO_SHOW,
        )]),
        SearchMode::Outcome,
    );
    add_outcomes(&mut bundle, reports, used, &Notices::default());
    bundle_response(&bundle, pretty)
}

/// The 404 a patient token gets for anyone but their own person, known or not.
fn not_known(what: &str) -> ApiError {
    ApiError::not_found(format!("{what}: {NOTHING_TO_SHOW}"))
}

/// `GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}`.
async fn patient_search(
    state: &AppState,
    principal: &Principal,
    pairs: Vec<(String, String)>,
    strict: bool,
) -> ApiResult {
    let mut used = Used::default();
    let mut nhs: Option<NhsNumber> = None;
    let mut pretty = false;
    for (name, value) in pairs {
        match name.as_str() {
            "identifier" => {
                let number = match value.split_once('|') {
                    Some((NHS_NUMBER_SYSTEM, n)) => n,
                    Some(_) => {
                        return Err(ApiError::bad_param(
                            "identifier",
                            format!(
                                "only NHS numbers can be searched: `{NHS_NUMBER_SYSTEM}|{{nhs number}}`"
                            ),
                        ));
                    }
                    None => value.as_str(),
                };
                let parsed =
                    NhsNumber::parse(number).map_err(|e| ApiError::bad_param("identifier", e))?;
                if nhs.as_ref().is_some_and(|n| *n != parsed) {
                    return Err(ApiError::bad_param(
                        "identifier",
                        "names two different NHS numbers",
                    ));
                }
                nhs = Some(parsed);
            }
            "_count" => {
                query::page_size(&value, state.config.max_page_size)?;
            }
            "_format" => query::check_format(&value)?,
            "_pretty" => pretty = value == "true",
            other => {
                used.unknown(other, strict)?;
                continue;
            }
        }
        used.pairs.push((name, value));
    }
    let Some(nhs) = nhs else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "required",
            format!("a Patient search needs `identifier={NHS_NUMBER_SYSTEM}|{{nhs number}}`"),
        ));
    };
    let answer = state
        .door
        .answer(principal, Ask::Person { nhs: &nhs })
        .await?;
    let (Some(person), Some(patient)) = (&answer.person, &answer.patient) else {
        let response = nothing_to_show(state, "Patient", &used, pretty, answer.resolving_reports());
        return Ok(Reply::new(answer.into_facts(&[]), response));
    };
    let mut bundle = Searchset::new(&state.base);
    bundle.link("self", query::link(&state.base, "Patient", &used.pairs));
    bundle.total(1).shared(patient.clone(), SearchMode::Match);
    let sent = [format!("Patient/{}", person.id).into()];
    add_outcomes(&mut bundle, &answer.reports, &used, &answer.notices);
    Ok(Reply::new(
        answer.into_facts(&sent),
        bundle_response(&bundle, pretty),
    ))
}

/// `GET /fhir/{type}/{id}`.
pub async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let pretty = read_options(raw.as_deref())?;
    if resource_type != "Patient" {
        served_type(&resource_type)?;
    }
    require(&principal, &resource_type, Interaction::Read)?;
    if !is_valid_id(&id) {
        return Err(ApiError::bad_param("id", "is not a valid FHIR id"));
    }
    let not_known = || ApiError::not_found(format!("{resource_type}/{id} is not known"));
    if resource_type == "Patient" && Uuid::parse_str(&id).is_ok() {
        let answer = state
            .door
            .answer(&principal, Ask::Patient { id: &id })
            .await?;
        let Some(person) = &answer.person else {
            return Err(not_known());
        };
        let Some(patient) = &answer.patient else {
            let response = unanswered(answer.reports.iter(), &format!("Patient/{id}"));
            return Ok(Reply::new(answer.into_facts(&[]), response.into_response()));
        };
        let response = fhir_response(StatusCode::OK, patient.value(), pretty);
        let sent = [format!("Patient/{}", person.id).into()];
        return Ok(Reply::new(answer.into_facts(&sent), response));
    }
    // Withheld and unknown look the same (404).
    let resource_type = search::type_def(&resource_type).map_or("Patient", |d| d.name);
    let ask = Ask::Read {
        resource_type,
        id: &id,
    };
    let answer = state.door.answer(&principal, ask).await?;
    if answer.person.is_none() {
        return Err(not_known());
    }
    let Some(resource) = answer.resources.last() else {
        return Ok(Reply::new(
            answer.into_facts(&[]),
            not_known().into_response(),
        ));
    };
    let mut response = fhir_response(StatusCode::OK, resource.value(), pretty);
    // The version to send back in `If-Match` when updating it.
    if let Some(tag) = resource
        .value()
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .and_then(|v| axum::http::HeaderValue::from_str(&format!("W/\"{v}\"")).ok())
    {
        response.headers_mut().insert(axum::http::header::ETAG, tag);
    }
    let sent = [resource.shared_reference().clone()];
    Ok(Reply::new(answer.into_facts(&sent), response))
}

/// Query parameters a read accepts: `_format` and `_pretty`.
pub(super) fn read_options(raw: Option<&str>) -> Result<bool, ApiError> {
    let mut pretty = false;
    for (name, value) in query::pairs(raw)? {
        match name.as_str() {
            "_format" => query::check_format(&value)?,
            "_pretty" => pretty = value == "true",
            _ => {}
        }
    }
    Ok(pretty)
}

/// 503 when every source that knows the person failed, 404 when none knows them any more.
fn unanswered<'a>(reports: impl Iterator<Item = &'a SourceReport>, what: &str) -> ApiError {
    let failed: Vec<String> = reports
        .filter(|r| matches!(r.problem, Problem::Failed(_) | Problem::DeadlineExceeded))
        .map(|r| format!("{} ({})", r.source.name, r.source.id))
        .collect();
    if failed.is_empty() {
        ApiError::not_found(format!("{what} is not known"))
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            format!(
                "the sources holding this record did not answer: {}",
                failed.join(", ")
            ),
        )
    }
}

/// `GET /fhir/Patient/{id}/$everything`: the merged Patient, then everything about the person
/// from every source (optionally limited by `_type`), grouped by type, newest first.
pub async fn everything(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let strict = query::strict(&headers);
    let mut used = Used::default();
    let mut types: Vec<&'static str> = TYPES.iter().map(|t| t.name).collect();
    let mut count = state.config.max_page_size;
    let mut cursor = None;
    let mut pretty = false;
    for (name, value) in query::pairs(raw.as_deref())? {
        match name.as_str() {
            "_type" => {
                let mut wanted = Vec::new();
                for t in value.split(',').map(str::trim) {
                    match search::type_def(t) {
                        Some(def) => wanted.push(def.name),
                        None if t == "Patient" => {}
                        None => {
                            return Err(ApiError::bad_param(
                                "_type",
                                format!(
                                    "`{}` is not a type this gateway serves",
                                    t.chars().take(64).collect::<String>()
                                ),
                            ));
                        }
                    }
                }
                types.retain(|t| wanted.contains(t));
            }
            "_count" => count = query::page_size(&value, state.config.max_page_size)?,
            CURSOR => {
                cursor = Some(query::cursor(&value)?);
                continue;
            }
            "_format" => query::check_format(&value)?,
            "_pretty" => pretty = value == "true",
            other => {
                used.unknown(other, strict)?;
                continue;
            }
        }
        used.pairs.push((name, value));
    }
    // Only the types the token may read are asked for, let alone returned.
    types.retain(|t| principal.may(t, Interaction::Read));
    if principal.may("Patient", Interaction::Read) {
        types.push("Patient");
    }
    if types.is_empty() {
        return Err(ApiError::insufficient_scope("reading any resource type"));
    }
    let answer = state
        .door
        .answer(
            &principal,
            Ask::Everything {
                id: &id,
                types: &types,
            },
        )
        .await?;
    let search = TypeSearch {
        patient: Some(id.clone()),
        filters: Vec::new(),
        count,
        sort: SortSpec::everything(),
        cursor,
        pretty,
        used,
    };
    let path = format!("Patient/{id}/$everything");
    searchset(&state, &principal, &path, &search, answer, || {
        not_known(&format!("Patient/{id}"))
    })
}

/// Sorts, pages and answers a searchset of what the door disclosed (its resources are taken
/// out of `answer`). The merged Patient (of `$everything`) leads the first page and is
/// counted in the total. Public (hidden) only for the step benchmark (`benches/steps.rs`).
#[doc(hidden)]
pub fn paged(
    state: &AppState,
    path: &str,
    search: &TypeSearch,
    answer: &mut Answer,
) -> (Response, Vec<std::sync::Arc<str>>) {
    let first = answer.patient.take();
    let descending = search.sort.descending();
    let resources = std::mem::take(&mut answer.resources);
    let mut keyed: Vec<(Vec<KeyRef<'_>>, &SharedResource)> =
        resources.iter().map(|r| (search.sort.key(r), r)).collect();
    keyed.sort_by(|a, b| compare_keys(&a.0, &b.0, &descending));
    let total = keyed.len() + usize::from(first.is_some());
    let start = match &search.cursor {
        Some(cursor) => keyed.partition_point(|(k, _)| {
            compare_keys(k, cursor, &descending) != std::cmp::Ordering::Greater
        }),
        None => 0,
    };
    let remaining = keyed.len() - start;
    let take = search.count.min(remaining);
    let mut bundle = Searchset::new(&state.base);
    bundle
        .total(total)
        .link("self", query::link(&state.base, path, &search.used.pairs));
    if take < remaining && take > 0 {
        let mut next = search.used.pairs.clone();
        let last: Vec<KeyPart> = keyed[start + take - 1]
            .0
            .iter()
            .map(|k| k.to_part())
            .collect();
        next.push((CURSOR.to_owned(), encode_cursor(&last)));
        bundle.link("next", query::link(&state.base, path, &next));
    }
    let mut sent = Vec::with_capacity(take + 1);
    if let Some(p) = first.filter(|_| search.cursor.is_none() && search.count > 0) {
        if p.has_type_and_id() {
            sent.push(p.shared_reference().clone());
        }
        bundle.shared(p, SearchMode::Match);
    }
    let mut nonconformant = Vec::new();
    for (_, resource) in keyed.into_iter().skip(start).take(take) {
        if !resource.problems().is_empty() {
            nonconformant.push((resource.reference().to_owned(), resource.clone()));
        }
        sent.push(resource.shared_reference().clone());
        bundle.shared(resource.clone(), SearchMode::Match);
    }
    add_outcomes(&mut bundle, &answer.reports, &search.used, &answer.notices);
    if let Some(outcome) = conformance_outcome(&nonconformant) {
        bundle.entry(outcome, SearchMode::Outcome);
    }
    (bundle_response(&bundle, search.pretty), sent)
}

/// Most conformance problems named in one Bundle's OperationOutcome.
const MAX_CONFORMANCE_ISSUES: usize = 100;

/// One OperationOutcome naming, for each resource on the page that does not conform to its
/// profile (its source's `conformance` is `flag`), each problem: the element and the rule.
fn conformance_outcome(flagged: &[(String, SharedResource)]) -> Option<Value> {
    if flagged.is_empty() {
        return None;
    }
    let all: Vec<(&str, &crate::fhir::conformance::Departure)> = flagged
        .iter()
        .flat_map(|(reference, r)| r.problems().iter().map(move |p| (reference.as_str(), p)))
        .collect();
    let mut issues: Vec<Value> = all
        .iter()
        .take(MAX_CONFORMANCE_ISSUES)
        .map(|(reference, problem)| {
            json!({
                "severity": "warning",
                "code": "invalid",
                "diagnostics": format!("{reference} does not conform to its profile: {problem}"),
                "expression": [problem.path],
            })
        })
        .collect();
    if all.len() > MAX_CONFORMANCE_ISSUES {
        issues.push(json!({
            "severity": "warning",
            "code": "invalid",
            "diagnostics": format!("and {} more conformance problem(s) on this page", all.len() - MAX_CONFORMANCE_ISSUES),
        }));
    }
    Some(json!({"resourceType": "OperationOutcome", "issue": issues}))
}

/// One OperationOutcome entry per source that did not simply answer, naming the source (never
/// its error text); one saying that information was withheld under the agreements (never how
/// much, nor of what type, nor from whom); one for emergency access; one for parameters that
/// were ignored.
fn add_outcomes(bundle: &mut Searchset, reports: &[SourceReport], used: &Used, notices: &Notices) {
    if notices.withheld {
        bundle.entry(
            operation_outcome(&[Issue::new(
                Severity::Information,
                "suppressed",
                "Some information about this person is not shown: the data-sharing agreements in force do not permit its disclosure to you. This view may be incomplete.",
            )]),
            SearchMode::Outcome,
        );
    }
    if notices.emergency {
        bundle.entry(
            operation_outcome(&[Issue::new(
                Severity::Warning,
                "informational",
                "Some of this information was disclosed under emergency access (break-glass, purpose of use ETREAT); those resources carry ETREAT in meta.security.",
            )]),
            SearchMode::Outcome,
        );
    }
    for outcome in notices.locator.iter().flat_map(|l| l.outcomes()) {
        bundle.entry(outcome, SearchMode::Outcome);
    }
    let mut seen = HashSet::new();
    for report in reports {
        let key = format!(
            "{}:{:?}",
            report.source.id,
            std::mem::discriminant(&report.problem)
        );
        if !seen.insert(key) {
            continue;
        }
        let who = format!("{} ({})", report.source.name, report.source.id);
        let (code, text) = match &report.problem {
            Problem::DeadlineExceeded | Problem::Failed(SourceError::Timeout) => (
                "timeout",
                format!("{who} did not answer in time; its records are missing from this result"),
            ),
            Problem::Failed(SourceError::Saturated) => (
                "throttled",
                format!(
                    "{who} is busy (the gateway's limit of requests to it was reached); its records are missing from this result"
                ),
            ),
            Problem::Failed(SourceError::Unavailable) => (
                "transient",
                format!(
                    "{who} is unavailable after repeated failures; its records are missing from this result"
                ),
            ),
            Problem::Failed(_) => (
                "incomplete",
                format!("{who} could not be read; its records are missing from this result"),
            ),
            Problem::Truncated => (
                "too-costly",
                format!(
                    "{who} holds more records than the gateway fetches in one request; some may be missing"
                ),
            ),
            Problem::Dropped(n) => (
                "processing",
                format!(
                    "{who} returned {n} record(s) that are not about this person, are not valid FHIR, or do not conform to their profiles; they were left out"
                ),
            ),
        };
        let mut outcome = operation_outcome(&[Issue::new(Severity::Warning, code, text)]);
        if let Some(issue) = outcome
            .pointer_mut("/issue/0")
            .and_then(Value::as_object_mut)
        {
            issue.insert(
                "details".into(),
                json!({"coding": [{"system": format!("{CONCORD_CANONICAL}/CodeSystem/source"), "code": report.source.id, "display": report.source.name}]}),
            );
        }
        bundle.entry(outcome, SearchMode::Outcome);
    }
    if let Some(notice) = used.ignored_notice() {
        bundle.entry(notice, SearchMode::Outcome);
    }
}

/// The code system of the record locator's notices (in `details.coding`).
pub use crate::federation::LOCATOR_CODE_SYSTEM;
