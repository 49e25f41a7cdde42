//! Readiness: `/readyz` for load balancers (ready or not, nothing else) and
//! `/readyz/detail` for operators (the store, sources, audit log, policy set, the fleet and
//! the record locator's freshness per source).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// Ready when the store answers and the audit log can keep a record. The open endpoint says
/// only that (a load balancer needs no more, and nobody else should learn the sources, their
/// organisations or the file paths of a failed reload); the detail is
/// [`readiness_detail`]'s.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, _) = readiness(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if ready {
        r#"{"status":"ready"}"#
    } else {
        r#"{"status":"unready"}"#
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /readyz/detail`: the operator's readiness view, for a staff token with the
/// [`crate::auth::scopes::OPERATOR`] scope. Sources are listed with their breaker state: a
/// source that is down makes answers partial, not the gateway unready.
pub(super) async fn readiness_detail(State(state): State<AppState>, request: Request) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{1}"));
    match state.verifier.verify_header(header) {
        Err(e) => return ApiError::unauthorized(&e).into_response(),
        Ok(p) if p.patient.is_some() || !p.scopes.operator() => {
            return ApiError::insufficient_scope(&format!(
                "the readiness detail (scope `{}`)",
                crate::auth::scopes::OPERATOR
            ))
            .into_response();
        }
        Ok(_) => {}
    }
    let (ready, mut body) = readiness(&state).await;
    // Only here, not on the open endpoint a load balancer polls: it reads the store.
    body["fleet"] = super::fleet::view(&state).await;
    let federation = state.door.federation();
    body["locator"] = match federation.locator() {
        Some(locator) => locator.view(federation.sources()).await,
        None => json!({"enabled": false}),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether the gateway is ready, and the detail.
async fn readiness(state: &AppState) -> (bool, serde_json::Value) {
    let store_ok = match state.door.federation().store().ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store does not answer");
            false
        }
    };
    let sources: Vec<_> = state
        .door
        .federation()
        .sources()
        .iter()
        .map(|s| json!({"id": s.info().id, "name": s.info().name, "ods": s.info().ods, "breaker": s.breaker_state().name()}))
        .collect();
    let mut audit_ok = state.audit_ok.load(std::sync::atomic::Ordering::Relaxed);
    if !audit_ok
        && state
            .audit
            .can_keep(
                state.door.federation().store(),
                std::time::Duration::from_secs(2),
            )
            .await
    {
        // The last append failed, but a record could be kept now: ready again without
        // waiting for a request to prove it (a load balancer sends none to an unready
        // instance).
        state
            .audit_ok
            .store(true, std::sync::atomic::Ordering::Relaxed);
        audit_ok = true;
    }
    let health = state.audit.health();
    let ready = store_ok && audit_ok;
    let set = state.door.policies().current();
    let reload = state.door.policies().status();
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "store": {"backend": state.door.federation().store().backend(), "ok": store_ok},
        "audit": {
            "chain": state.audit.chain(),
            "ok": audit_ok,
            "spooled": health.spooled,
            "orphaned_spools": health.orphaned_spools,
            "signed_head": health.signed_head,
            "problem": health.problem,
        },
        "sources": sources,
        "policy": {
            "hash": set.hash,
            "agreements": set.agreements.len(),
            "in_force": set.agreements.iter().filter(|a| a.in_force(crate::policy::live::today())).count(),
            "loaded_at": reload.loaded_at,
            "warnings": set.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "reload_error": reload.error,
        },
    });
    (ready, body)
}
