//! `GET` and `POST /fhir/Consent`: a person's sharing choices.
//!
//! The person records their own choices with a patient token (`patient/Consent.c` to record,
//! `patient/Consent.s` to list); staff record them on the person's behalf (`user/Consent.c`,
//! `user/Consent.s`) when the person is known to their own organisation (the same care
//! relationship agreements ask for). Carers cannot record choices for the person. Every
//! choice is stored before the answer and binds the very next request. Only the person lifts
//! their own objection; staff record a withdrawal only on the person's documented request,
//! never for an objection naming their own organisation, and each such record goes to IG
//! review ([`may_record`]).

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, bundle_response, fhir_response};
use super::query;
use crate::auth::Principal;
use crate::auth::scopes::Interaction;
use crate::fhir::bundle::{SearchMode, Searchset};
use crate::fhir::{ODS_SYSTEM, json};
use crate::policy::consent::{self, Kind};
use crate::store::{ConsentRecord, PersonRecord, StoreError};

/// The person a Consent request is about, if this caller may manage their choices: the
/// person themself, or staff of an organisation that knows them. Anyone else gets the same
/// 404 as for a person who does not exist.
async fn person_for(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<PersonRecord, ApiError> {
    let unknown = || ApiError::not_found(format!("Patient/{id} is not known"));
    let Ok(uuid) = Uuid::parse_str(id) else {
        return Err(unknown());
    };
    let person = state
        .federation
        .store()
        .person_by_id(uuid)
        .await?
        .ok_or_else(unknown)?;
    match &principal.patient {
        Some(p) if p.acting_for_relationship.is_some() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a carer cannot record or read the person's sharing choices",
        )),
        Some(p) if p.nhs.as_str() == person.nhs_number => Ok(person),
        Some(_) => Err(unknown()),
        None => {
            let org = principal.org.as_deref().unwrap_or_default();
            let known = person.links.iter().any(|l| {
                state
                    .federation
                    .source(&l.source_id)
                    .is_some_and(|s| s.info().ods == org)
            });
            if known {
                Ok(person)
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "staff record sharing choices only for people known to their own organisation",
                ))
            }
        }
    }
}

fn require(principal: &Principal, interaction: Interaction, verb: &str) -> Result<(), ApiError> {
    if principal.may("Consent", interaction) {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope(&format!("{verb} Consent")))
    }
}

/// `POST /fhir/Consent`.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require(&principal, Interaction::Create, "recording")?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("application/fhir+json" | "application/json")
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send the Consent as application/fhir+json",
        ));
    }
    let value = json::parse_strict(&body)
        .and_then(|v| json::refuse_modifiers(&v).map(|()| v))
        .map_err(json_refused)?;
    let invalid = |e: consent::ConsentError| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.0);
    let (patient, choice) = consent::parse(&value).map_err(invalid)?;
    let person = person_for(&state, &principal, &patient).await?;
    let review = may_record(&principal, &person, &choice)?;
    if choice.kind == Kind::NotFrom
        && !state
            .federation
            .sources()
            .iter()
            .any(|s| s.info().ods == choice.org)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "no provider connected to this gateway has ODS code {}; a provider's records can only be withheld from a connected provider",
                choice.org
            ),
        ));
    }
    let now = jiff::Timestamp::now();
    let recorded = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let recorder = match (&principal.patient, &principal.org) {
        (Some(_), _) => json!({"reference": format!("Patient/{}", person.id)}),
        (None, Some(org)) => json!({"identifier": {"system": ODS_SYSTEM, "value": org}}),
        (None, None) => json!({"display": "staff"}),
    };
    let id = Uuid::new_v4();
    let resource = consent::render(
        &id.to_string(),
        &person.id.to_string(),
        &choice,
        &recorded,
        &recorder,
    );
    let record = ConsentRecord {
        id,
        person: person.id,
        kind: choice.kind.name().to_owned(),
        org: choice.org.clone(),
        active: choice.active,
        recorded_us: now.as_microsecond(),
        resource: resource.to_string(),
    };
    state.federation.store().record_consent(&record).await?;
    state.consents.evict(person.id);
    tracing::info!(
        consent.kind = choice.kind.name(),
        consent.active = choice.active,
        "sharing choice recorded"
    );
    let mut response = fhir_response(StatusCode::CREATED, &resource, false);
    if let Ok(location) = format!("{}/Consent/{id}", state.base).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    let mut facts = facts(person.id);
    facts.review = review;
    Ok(facts.attach(response))
}

/// A body that is not strict FHIR JSON: 400 naming the element.
fn json_refused(e: json::JsonError) -> ApiError {
    let element = match &e {
        json::JsonError::Duplicate(element) | json::JsonError::Modifier(element) => {
            Some(element.clone())
        }
        json::JsonError::Syntax => None,
    };
    let code = match e {
        json::JsonError::Modifier(_) => "not-supported",
        _ => "structure",
    };
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string());
    error.issues[0].expression = element;
    error
}

/// Whether this caller may record this choice, and whether it goes to IG review.
///
/// Recording an objection restricts sharing, and anyone who may manage the person's choices
/// may record one. Withdrawing an objection opens sharing again, so:
/// - the person themself (their own token) may withdraw their own objection at any time;
/// - staff may record a withdrawal only on the person's documented request
///   (`Consent.verification`: the person asked, when and how), and never for an objection
///   that names their own organisation: nobody lifts an objection aimed at themselves. Every
///   staff-recorded withdrawal is flagged for IG review, and the person sees it in their own
///   audit trail.
fn may_record(
    principal: &Principal,
    person: &PersonRecord,
    choice: &consent::Choice,
) -> Result<Option<&'static str>, ApiError> {
    if choice.active || principal.patient.is_some() {
        // An objection; or the person themself (carers were refused in `person_for`).
        return Ok(None);
    }
    if principal.org.as_deref() == Some(choice.org.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an objection that names your own organisation can only be withdrawn by the person themself",
        ));
    }
    let Some(request) = &choice.request else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "staff may record the withdrawal of an objection only on the person's documented request: give Consent.verification (verified, verifiedWith the person, verificationDate, and how they asked in the extension `{}`)",
                consent::REQUEST_METHOD_URL
            ),
        ));
    };
    if request.by != person.id.to_string() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Consent.verification.verifiedWith must be the person the Consent is about: only they can ask for their objection to be withdrawn",
        ));
    }
    Ok(Some(crate::audit::REVIEW_CONSENT_WITHDRAWN_BY_STAFF))
}

/// `GET /fhir/Consent?patient={id}`: every choice recorded for the person, newest first.
pub(super) async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    require(&principal, Interaction::Search, "searching")?;
    let mut patient = None;
    let mut pretty = false;
    for (name, value) in query::pairs(raw.as_deref())? {
        match name.as_str() {
            "patient" => patient = Some(value.trim_start_matches("Patient/").to_owned()),
            "_format" => query::check_format(&value)?,
            "_pretty" => pretty = value == "true",
            other => {
                return Err(ApiError::bad_param(
                    other,
                    "is not supported for Consent (use `patient`)",
                ));
            }
        }
    }
    let Some(patient) = patient else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "required",
            "a Consent search must name the person: `patient={id}`",
        ));
    };
    let person = person_for(&state, &principal, &patient).await?;
    let records = state.federation.store().consents(person.id).await?;
    let mut bundle = Searchset::new(&state.base);
    bundle.total(records.len()).link(
        "self",
        format!("{}/Consent?patient={}", state.base, person.id),
    );
    for record in records.iter().rev() {
        let resource: Value = serde_json::from_str(&record.resource)
            .map_err(|_| ApiError::from(StoreError::Corrupt("consents.resource")))?;
        bundle.entry(resource, SearchMode::Match);
    }
    Ok(facts(person.id).attach(bundle_response(&bundle, pretty)))
}

/// The audit facts of a Consent request: whose choices.
fn facts(person: Uuid) -> super::audit::AuditFacts {
    super::audit::AuditFacts {
        person: Some(person),
        ..super::audit::AuditFacts::default()
    }
}
