//! Writing the audit record of every FHIR request before its answer leaves.
//!
//! Handlers answer with a [`Reply`] that carries the door's [`Facts`] (the person, how each
//! source answered, what was disclosed under which agreement and rule, how much was
//! withheld, the policy set that decided); [`authenticate`](super) leaves the principal.
//! This layer, outside both, writes one record with the request's own details and returns
//! the response only once the record is committed. When it cannot be written, nothing is
//! disclosed: the answer becomes 503. A request refused before any handler (no token, a
//! wrong method) is recorded as about the person its URL names (`/fhir/Patient/{id}…`, or
//! `patient=`/`subject=`), and under the policy set in force when it came in.

use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, REQUEST_ID, tls};

mod target;
use crate::audit::Body;
use crate::auth::Principal;
use crate::disclose::Facts;

/// An answer with the facts its audit record needs. Handlers that answer about a person's
/// record return one; the facts of a disclosure come only from the door's answer
/// ([`crate::disclose::Answer::facts`]).
pub struct Reply(Response);

impl Reply {
    /// `response`, carrying `facts` to the audit layer.
    pub(crate) fn new(facts: Facts, mut response: Response) -> Self {
        response.extensions_mut().insert(facts);
        Reply(response)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        self.0
    }
}

/// What the record takes from the request before the handler sees it.
#[derive(Clone)]
struct Incoming {
    method: String,
    route: String,
    /// The URI as recordable (credentials and free text replaced by keyed digests).
    target: String,
    /// The person the URL names, for a request refused before any handler.
    asked_about: Option<uuid::Uuid>,
    request_id: String,
    client_address: Option<String>,
    /// The policy set in force when the request came in, for a request that made no
    /// decision (one that did names the set that decided, from its facts).
    policy_hash: String,
}

impl Incoming {
    fn read(state: &AppState, request: &Request) -> Self {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(String::new, |m| m.as_str().to_owned());
        // The URI as the caller sent it (inside `/fhir` the router sees it without the prefix).
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| request.uri(), |o| &o.0);
        Incoming {
            method: request.method().to_string(),
            route,
            target: target::recordable(uri.path(), uri.query(), &|value| {
                state.audit.keyed_digest(value)
            }),
            asked_about: target::asked_person(uri.path(), uri.query()),
            request_id: request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            client_address: request
                .extensions()
                .get::<ConnectInfo<tls::Peer>>()
                .map(|peer| peer.0.addr.to_string()),
            policy_hash: state.door.policies().current().hash.clone(),
        }
    }

    /// The record of the request, answered `status`, by `principal` (none: unauthenticated),
    /// having done `facts`.
    fn body(self, principal: Option<&Principal>, facts: Facts, status: u16) -> Body {
        let Incoming {
            method,
            route,
            target,
            asked_about,
            request_id,
            client_address,
            policy_hash,
        } = self;
        let break_glass = principal.and_then(|p| p.break_glass.clone());
        let review = match (&break_glass, facts.review) {
            (_, Some(reason)) => Some(reason.to_owned()),
            (Some(_), None) => Some(crate::audit::REVIEW_BREAK_GLASS.to_owned()),
            (None, None) => None,
        };
        Body {
            recorded_us: jiff::Timestamp::now().as_microsecond(),
            request_id,
            client_address,
            user: principal.map(|p| p.user.clone()),
            user_name: principal.and_then(|p| p.name.clone()),
            org: principal.and_then(|p| p.org.clone()),
            role: principal.and_then(|p| p.role.clone()),
            caller: match principal.map(|p| &p.patient) {
                None => "unauthenticated",
                Some(None) => "staff",
                Some(Some(p)) if p.acting_for_relationship.is_some() => "carer",
                Some(Some(_)) => "patient",
            }
            .to_owned(),
            relationship: principal
                .and_then(|p| p.patient.as_ref())
                .and_then(|p| p.acting_for_relationship.clone()),
            client_certificate: principal
                .and_then(|p| p.client_certificate.as_ref())
                .map(|c| c.subject.clone()),
            method,
            route,
            target,
            // Emergency access is purpose of use ETREAT whatever the token says, so that the
            // break-glass review queue (`AuditEvent?purpose=ETREAT`) finds every use of it.
            purpose: principal.map(|p| {
                if p.break_glass.is_some() {
                    crate::policy::engine::EMERGENCY.to_owned()
                } else {
                    p.purpose_of_use.clone()
                }
            }),
            break_glass_reason: break_glass,
            // Whose record: as resolved, or else (a refused request) the person the URL names.
            person: facts
                .person
                .map(|p| p.to_string())
                .or(asked_about.map(|p| p.to_string())),
            sources: facts.sources,
            disclosed: facts.disclosed,
            withheld: facts.withheld,
            policy_hash: facts.policy_hash.unwrap_or(policy_hash),
            outcome: outcome_of(status).to_owned(),
            status,
            review,
            rate_limited: None,
            issuer: principal.and_then(|p| p.issuer.clone()),
            reviewed: None,
            write: facts.write,
            lookup: principal
                .filter(|p| p.full_lookup)
                .map(|_| LOOKUP_FULL.to_owned()),
        }
    }
}

/// What a record's `lookup` says of a request that asked for a full look-up.
pub(crate) const LOOKUP_FULL: &str = "full";

/// The status and outcome word of a write's intent record (committed before the write is
/// forwarded; the request's own record, with the outcome, follows before the answer).
pub(crate) const INTENT_STATUS: u16 = 102;

/// Lets a handler commit a record before its answer: a write's intent, durably, before the
/// write leaves the gateway. Put in every `/fhir` request's extensions by [`record`].
#[derive(Clone)]
pub(crate) struct Recorder {
    state: AppState,
    incoming: std::sync::Arc<Incoming>,
}

impl Recorder {
    /// Commits the intent of a write by `principal` (`facts` from the door). When it cannot
    /// be written, the write is not made: 503.
    pub(crate) async fn intent(&self, principal: &Principal, facts: Facts) -> Result<(), ApiError> {
        let mut body = Incoming::clone(&self.incoming).body(Some(principal), facts, INTENT_STATUS);
        body.outcome = "pending".to_owned();
        match self.state.audit.append(&body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.state.audit_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "a write's intent could not be recorded; nothing written");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "the audit log cannot be written, and nothing is written without a record; try again shortly",
                ))
            }
        }
    }
}

/// The record the audit layer makes of `request`, answered `status` for `principal`, having
/// done `facts` (before it is encoded and appended). Public (hidden) only for the step
/// benchmark (`benches/steps.rs`).
#[doc(hidden)]
pub fn record_body(
    state: &AppState,
    request: &Request,
    principal: Option<&Principal>,
    facts: Facts,
    status: u16,
) -> Body {
    Incoming::read(state, request).body(principal, facts, status)
}

/// The layer: one committed record per request, or 503.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let incoming = std::sync::Arc::new(Incoming::read(&state, &request));
    let body_deadline = request.extensions().get::<tls::BodyExpired>().cloned();
    let mut request = request;
    request.extensions_mut().insert(Recorder {
        state: state.clone(),
        incoming: std::sync::Arc::clone(&incoming),
    });
    let mut response = next.run(request).await;
    // The request (and the recorder in it) is gone with the handler: the record takes the
    // request's details without copying them, unless a handler kept a recorder.
    let incoming = std::sync::Arc::try_unwrap(incoming).unwrap_or_else(|kept| (*kept).clone());
    if body_deadline.is_some_and(|d| d.expired()) {
        // The body stopped arriving: the caller is answered 408 whatever the handler made
        // of the cut-short body, and the record says so.
        let principal = response.extensions_mut().remove::<Principal>();
        let facts = response.extensions_mut().remove::<Facts>();
        response = tls::body_timeout_answer();
        if let Some(principal) = principal {
            response.extensions_mut().insert(principal);
        }
        if let Some(facts) = facts {
            response.extensions_mut().insert(facts);
        }
    }
    if response.extensions().get::<super::RateLimited>().is_some() {
        // Counted by the limiter; one record per client per window says how many.
        return response;
    }
    let principal = response.extensions_mut().remove::<Principal>();
    let facts = response
        .extensions_mut()
        .remove::<Facts>()
        .unwrap_or_default();
    let body = incoming.body(principal.as_ref(), facts, response.status().as_u16());
    match state.audit.append(&body).await {
        Ok(_) => {
            state.audit_ok.store(true, Ordering::Relaxed);
            response
        }
        Err(e) => {
            state.audit_ok.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "the audit record could not be written; nothing disclosed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "the audit log cannot be written, and nothing is disclosed without a record; try again shortly",
            )
            .into_response()
        }
    }
}

fn outcome_of(status: u16) -> &'static str {
    match status {
        200..=399 => "success",
        400..=499 => "refused",
        _ => "error",
    }
}

/// Records what the rate limit turned away in the window that just ended: one record per
/// client, with the count.
pub(crate) async fn record_refusals(state: &AppState) {
    let policy_hash = state.door.policies().current().hash.clone();
    for refusals in state.limiter.roll() {
        let body = Body {
            recorded_us: jiff::Timestamp::now().as_microsecond(),
            request_id: uuid::Uuid::new_v4().to_string(),
            client_address: refusals.client.map(|ip| ip.to_string()),
            caller: "unauthenticated".to_owned(),
            policy_hash: policy_hash.clone(),
            outcome: outcome_of(429).to_owned(),
            status: 429,
            rate_limited: Some(refusals.count),
            ..Body::default()
        };
        if let Err(e) = state.audit.append(&body).await {
            state.audit_ok.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "the count of rate-limited requests could not be recorded");
        }
    }
}
