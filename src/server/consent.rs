//! `GET` and `POST /fhir/Consent`: a person's sharing choices, recorded and listed through
//! the door ([`crate::disclose`] says who may record what).

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, bundle_response, fhir_response};
use super::query;
use super::record::Reply;
use crate::auth::Principal;
use crate::auth::scopes::Interaction;
use crate::disclose::Facts;
use crate::fhir::bundle::{SearchMode, Searchset};
use crate::fhir::json;
use crate::store::StoreError;

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
) -> Result<Reply, ApiError> {
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
    let recorded = state.door.record_consent(&principal, &value).await?;
    let mut response = fhir_response(StatusCode::CREATED, &recorded.resource, false);
    if let Ok(location) = format!("{}/Consent/{}", state.base, recorded.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    let mut facts = Facts::about(recorded.person);
    facts.review = recorded.review;
    Ok(Reply::new(facts, response))
}

/// A body that is not strict FHIR JSON: 400 naming the element.
pub(super) fn json_refused(e: json::JsonError) -> ApiError {
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

/// `GET /fhir/Consent?patient={id}`: every choice recorded for the person, newest first.
pub(super) async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
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
    let (person, records) = state.door.consents(&principal, &patient).await?;
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
    Ok(Reply::new(
        Facts::about(person.id),
        bundle_response(&bundle, pretty),
    ))
}
