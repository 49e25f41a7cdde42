//! The one place errors become HTTP answers: an OperationOutcome with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::disclose::AskError;
use crate::federation::FederationError;
use crate::fhir::{FHIR_JSON, Issue, Severity, operation_outcome};

/// An error answer. Client errors carry a message for the caller; server errors are logged
/// where they are made and answer with a generic message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The OperationOutcome's issues.
    pub issues: Vec<Issue>,
    /// A `WWW-Authenticate` challenge (401 and 403 for bearer tokens).
    pub challenge: Option<String>,
}

impl ApiError {
    /// An error with one issue.
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self {
            status,
            issues: vec![Issue::new(Severity::Error, code, diagnostics)],
            challenge: None,
        }
    }

    /// 400: a parameter the caller got wrong.
    pub fn bad_param(param: &str, message: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("parameter `{param}`: {message}"),
        );
        e.issues[0].expression = Some(param.to_owned());
        e
    }

    /// 401 for a missing or bad token, with an RFC 6750 challenge. The description says
    /// what is wrong and never repeats the token.
    pub fn unauthorized(error: &crate::auth::AuthError) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "login", error.to_string());
        e.challenge = Some(format!(
            "Bearer realm=\"concord\", error=\"invalid_token\", error_description=\"{}\"",
            error.to_string().replace(['"', '\\'], "'")
        ));
        e
    }

    /// 403 for a valid token whose scopes do not cover the request.
    pub fn insufficient_scope(what: &str) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token's scopes do not allow {what}"),
        );
        e.challenge = Some("Bearer realm=\"concord\", error=\"insufficient_scope\"".into());
        e
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", what)
    }

    /// 500, with the detail logged and not shown.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "the gateway failed to process the request",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// 503: the store failed (logged here, once; the caller learns only that it is
    /// unavailable).
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "the gateway's store is unavailable; try again shortly",
        )
    }
}

impl From<FederationError> for ApiError {
    fn from(e: FederationError) -> Self {
        match e {
            FederationError::Store(e) => e.into(),
            FederationError::SourceFailed {
                source_id,
                source_name,
                error,
            } => {
                tracing::warn!(source.id = %source_id, error = %error, "read failed at source");
                let (status, code) = match error {
                    crate::sources::SourceError::Timeout => {
                        (StatusCode::GATEWAY_TIMEOUT, "timeout")
                    }
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
                };
                Self::new(
                    status,
                    code,
                    format!("{source_name} ({source_id}) could not answer; try again shortly"),
                )
            }
        }
    }
}

impl From<AskError> for ApiError {
    fn from(e: AskError) -> Self {
        match e {
            AskError::NoEmergencyAccess | AskError::NoAgreement | AskError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            AskError::NotThePatient | AskError::NotKnown(_) => Self::not_found(e.to_string()),
            AskError::Invalid(message) => Self::new(StatusCode::BAD_REQUEST, "invalid", message),
            AskError::FullLookupsSpent(e) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "throttled", e.to_string())
            }
            AskError::Federation(e) => e.into(),
        }
    }
}

impl From<crate::disclose::WriteError> for ApiError {
    fn from(e: crate::disclose::WriteError) -> Self {
        use crate::disclose::WriteError as W;
        match e {
            W::Invalid(message) => Self::new(StatusCode::BAD_REQUEST, "invalid", message),
            W::PreconditionRequired => {
                Self::new(StatusCode::PRECONDITION_REQUIRED, "required", e.to_string())
            }
            W::Conflict => Self::new(StatusCode::PRECONDITION_FAILED, "conflict", e.to_string()),
            W::Unprocessable { summary, problems } => {
                let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", summary);
                error.issues.extend(
                    problems
                        .into_iter()
                        .map(|p| Issue::new(Severity::Error, "invalid", p)),
                );
                error
            }
            W::NotAllowed(message) => {
                Self::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", message)
            }
            W::NotConditional { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "not-supported", e.to_string())
            }
            W::Ambiguous(_) => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "multiple-matches",
                e.to_string(),
            ),
            W::Forbidden(message) => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            W::NotKnown(_) => Self::not_found(e.to_string()),
            W::Refused {
                ref source_id,
                ref diagnostics,
                status,
                ..
            } => {
                // Logged without what the source said (it may quote the resource).
                tracing::info!(source.id = %source_id, upstream.status = status, "write refused by source");
                let diagnostics = diagnostics.clone();
                let mut error = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    e.to_string(),
                );
                if let Some(said) = diagnostics {
                    error
                        .issues
                        .push(Issue::new(Severity::Error, "business-rule", said));
                }
                error
            }
            W::NoProfiles => Self::internal(&e),
            W::Federation(f) => f.into(),
        }
    }
}

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: &Value, pretty: bool) -> Response {
    let bytes = if pretty {
        serde_json::to_vec_pretty(body)
    } else {
        serde_json::to_vec(body)
    };
    match bytes {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise response");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A Bundle response, written once as compact JSON (re-indented when `_pretty=true`).
pub fn bundle_response(bundle: &crate::fhir::bundle::Searchset, pretty: bool) -> Response {
    let bytes = bundle.to_json();
    if pretty && let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        return fhir_response(StatusCode::OK, &value, true);
    }
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = fhir_response(self.status, &operation_outcome(&self.issues), false);
        if let Some(challenge) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// True when a response already speaks FHIR (so error pages from the framework can be
/// replaced by OperationOutcomes without touching ours).
pub fn is_fhir(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(FHIR_JSON))
}
