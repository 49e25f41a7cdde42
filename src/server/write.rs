//! `POST /fhir/{CarePlan,Goal,Flag}` and `PUT /fhir/{type}/{id}`: parse the request, ask the
//! door to decide the write, record its intent durably, have the door send it, and answer.
//! The audit layer ([`super::record`]) records the outcome before the answer leaves.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::require;
use super::consent::json_refused;
use super::error::{ApiError, fhir_response};
use super::record::{Recorder, Reply};
use crate::auth::Principal;
use crate::auth::scopes::Interaction;
use crate::disclose::{Change, Facts, WRITABLE};
use crate::fhir::condition::Condition;
use crate::fhir::json;
use crate::fhir::reference::is_valid_id;

/// `POST /fhir/{type}`.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(recorder): Extension<Recorder>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(
        &state,
        &principal,
        &recorder,
        (&resource_type, None),
        &headers,
        &body,
    )
    .await
}

/// `PUT /fhir/{type}/{id}`.
pub(super) async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(recorder): Extension<Recorder>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(
        &state,
        &principal,
        &recorder,
        (&resource_type, Some(&id)),
        &headers,
        &body,
    )
    .await
}

/// A refused write: its error, carrying the facts of how far it got to the audit layer.
fn refused(facts: Facts, error: ApiError) -> Response {
    Reply::new(facts, error.into_response()).into_response()
}

async fn write(
    state: &AppState,
    principal: &Principal,
    recorder: &Recorder,
    target: (&str, Option<&str>),
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let (resource_type, id) = target;
    let action = if id.is_some() { "U" } else { "C" };
    let bare = |error: ApiError| {
        let facts = Facts {
            write: Some(crate::audit::Written {
                stage: crate::audit::WRITE_OUTCOME.to_owned(),
                action: action.to_owned(),
                source: None,
                resource: None,
                version: None,
                sha256: None,
                agreement: None,
                rule: None,
                read_version: None,
            }),
            ..Facts::default()
        };
        refused(facts, error)
    };
    let Some(resource_type) = WRITABLE.iter().copied().find(|t| *t == resource_type) else {
        return bare(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!(
                "`{resource_type}` cannot be written through this gateway (only CarePlan, Goal and Flag)"
            ),
        ));
    };
    let interaction = if id.is_some() {
        Interaction::Update
    } else {
        Interaction::Create
    };
    if let Err(e) = require(principal, resource_type, interaction) {
        return bare(e);
    }
    if let Some(id) = id
        && !is_valid_id(id)
    {
        return bare(ApiError::bad_param("id", "is not a valid FHIR id"));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("application/fhir+json" | "application/json")
    ) {
        return bare(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("send the {resource_type} as application/fhir+json"),
        ));
    }
    let value = match json::parse_strict(body).and_then(|v| json::refuse_modifiers(&v).map(|()| v))
    {
        Ok(v) => v,
        Err(e) => return bare(json_refused(e)),
    };
    let if_match = match headers.get(header::IF_MATCH).map(if_match_version) {
        None => None,
        Some(Some(v)) => Some(v),
        Some(None) => {
            return bare(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "If-Match must be one version as the ETag gave it: W/\"3\"",
            ));
        }
    };
    let condition = match if_none_exist(headers, resource_type, id.is_some()) {
        Ok(c) => c,
        Err(e) => return bare(e),
    };
    let change = match id {
        None => Change::Create {
            if_none_exist: condition.as_ref(),
        },
        Some(id) => Change::Update {
            id,
            if_match: if_match.as_deref(),
        },
    };
    let prepared = match state
        .door
        .prepare_write(principal, resource_type, change, value)
        .await
    {
        Ok(p) => p,
        Err(refusal) => return refused(refusal.facts, refusal.error.into()),
    };
    // INVARIANT: nothing is sent to a source before its intent is committed.
    if let Err(e) = recorder.intent(principal, prepared.intent()).await {
        let mut facts = prepared.intent();
        if let Some(w) = facts.write.as_mut() {
            w.stage = crate::audit::WRITE_OUTCOME.to_owned();
        }
        return refused(facts, e);
    }
    let done = match state.door.commit_write(prepared).await {
        Ok(done) => done,
        Err(refusal) => return refused(refusal.facts, refusal.error.into()),
    };
    let mut response = if done.existed {
        // FHIR: one match, the create is ignored, 200. The match is named, not disclosed:
        // reading it is a read, decided as one.
        let said = crate::fhir::operation_outcome(&[crate::fhir::Issue::new(
            crate::fhir::Severity::Information,
            "duplicate",
            format!(
                "{resource_type}/{} matches If-None-Exist; nothing was written",
                done.id
            ),
        )]);
        fhir_response(StatusCode::OK, &said, false)
    } else {
        let status = if id.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        fhir_response(status, &done.resource, false)
    };
    let version = done.version.as_deref().unwrap_or("1");
    let location = format!(
        "{}/{resource_type}/{}/_history/{version}",
        state.base, done.id
    );
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(tag) = done
        .version
        .as_deref()
        .and_then(|v| HeaderValue::from_str(&format!("W/\"{v}\"")).ok())
    {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Reply::new(done.facts, response).into_response()
}

/// The `If-None-Exist` of a create, parsed and bounded (`fhir::condition`); more than one, or
/// one on an update, is refused.
fn if_none_exist(
    headers: &HeaderMap,
    resource_type: &str,
    update: bool,
) -> Result<Option<Condition>, ApiError> {
    let mut values = headers.get_all("if-none-exist").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
    if update {
        return Err(invalid(
            "If-None-Exist applies only to a create (POST)".into(),
        ));
    }
    if values.next().is_some() {
        return Err(invalid("send one If-None-Exist".into()));
    }
    let def = crate::fhir::search::type_def(resource_type)
        .ok_or_else(|| invalid(format!("`{resource_type}` takes no If-None-Exist")))?;
    let text = value
        .to_str()
        .map_err(|_| invalid("If-None-Exist must be a query string".into()))?;
    Condition::parse(def, text.trim())
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// The version an `If-Match` header names: `W/"3"` or `"3"` (what `ETag` served); `None` when
/// it is anything else (a list, `*`, not text).
fn if_match_version(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    let version = quoted.strip_prefix('"')?.strip_suffix('"')?;
    (!version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_names_one_version() {
        let v = |s: &'static str| if_match_version(&HeaderValue::from_static(s));
        assert_eq!(v("W/\"3\"").as_deref(), Some("3"));
        assert_eq!(v("\"12\"").as_deref(), Some("12"));
        for bad in ["*", "3", "W/\"\"", "\"1\", \"2\"", "W/\"a b\""] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }
}
