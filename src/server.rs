//! The HTTP front: the axum router, the middleware every request passes, and the
//! operational endpoints (`/healthz`, `/readyz`, `/metrics`); the IG console's routes
//! ([`crate::console`]) are merged in under `/console`.

pub mod api;
mod audit_event;
pub mod capability;
mod consent;
pub mod error;
mod fleet;
pub mod limit;
pub mod query;
mod ready;
mod record;
pub mod tls;
mod write;

#[doc(hidden)]
pub use record::record_body;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::ServerConfig;
use crate::disclose::Door;
use crate::federation::Federation;
use crate::telemetry::{HttpLabels, Metrics, RouteLabels};
use error::{ApiError, is_fhir};

/// The request id header, echoed or generated.
pub const REQUEST_ID: &str = "x-request-id";

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The state behind [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// The one door to people's records: sources, store, agreements and sharing choices.
    pub door: Door,
    /// Verifies callers' bearer tokens.
    pub verifier: crate::auth::Verifier,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `[server]` settings.
    pub config: ServerConfig,
    /// The FHIR base URL the gateway advertises.
    pub base: String,
    /// This process's audit chain.
    pub audit: crate::audit::AuditLog,
    /// False while the last audit append failed (`/readyz` is then unready).
    pub(crate) audit_ok: std::sync::atomic::AtomicBool,
    /// The rate limit for callers without a valid token.
    pub(crate) limiter: limit::Limiter,
    /// The IG console under `/console`, when the config has `[console]`.
    pub console: Option<crate::console::Console>,
    /// Who reads which audit records through the AuditEvent API (the console's rule too).
    pub audit_readers: crate::audit::Readers,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Bundles the parts; `audit_readers` decides who reads which audit records through the
    /// AuditEvent API.
    pub fn new(
        door: Door,
        verifier: crate::auth::Verifier,
        metrics: Arc<Metrics>,
        config: ServerConfig,
        audit: crate::audit::AuditLog,
        console: Option<crate::console::Console>,
        audit_readers: crate::audit::Readers,
    ) -> Self {
        let base = config.base_url();
        let limiter = limit::Limiter::new(config.unauthenticated_per_minute);
        Self(Arc::new(Inner {
            door,
            verifier,
            metrics,
            config,
            base,
            audit,
            audit_ok: std::sync::atomic::AtomicBool::new(true),
            limiter,
            console,
            audit_readers,
        }))
    }

    /// Starts the record locator's background sync, when `[locator]` enables it: each
    /// source's rounds, leased in the store so that a fleet syncs each source once. Stops
    /// within a second of the state being dropped. `concord serve` calls it.
    pub fn spawn_locator(&self) {
        let Some(locator) = self.door.federation().locator().cloned() else {
            return;
        };
        let sources = self.door.federation().sources().to_vec();
        let state = Arc::downgrade(&self.0);
        let instance = self.audit.chain().to_owned();
        tokio::spawn(locator.run(sources, instance, move || state.strong_count() > 0));
    }

    /// Ends the rate limit's window every `window`: each client turned away in it gets one
    /// audit record with the count. Stops when the state is dropped.
    pub fn spawn_rate_limit_windows(&self, window: std::time::Duration) {
        let state = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(window);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                record::record_refusals(&AppState(state)).await;
            }
        });
    }
}

/// The whole service as a router, ready to serve.
pub fn app(state: AppState) -> Router {
    router(state, Assumed::default())
}

/// A principal every FHIR request runs as, without a token: the way round authentication
/// that benchmarks use to measure what verifying tokens costs. It holds one only with the
/// cargo feature `fixed-principal`, which the shipped binary never enables; without it, it
/// is empty and no request can skip the token check.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assumed(
    #[cfg(feature = "fixed-principal")] pub(crate) Option<Arc<crate::auth::Principal>>,
);

impl Assumed {
    #[cfg(feature = "fixed-principal")]
    fn principal(&self) -> Option<crate::auth::Principal> {
        self.0.as_deref().cloned()
    }

    #[cfg(not(feature = "fixed-principal"))]
    fn principal(&self) -> Option<crate::auth::Principal> {
        None
    }
}

/// The router; with a principal `assumed` (feature `fixed-principal` only), every FHIR
/// request runs as that principal without a token.
///
/// Every request under `/fhir`, whatever becomes of it (answered, refused by a check, a route
/// that does not exist, a method that is not allowed), passes the audit layer, which records
/// it before its answer leaves; inside it, [`guard`] checks the request's size and media type
/// and verifies the bearer token (but for `/fhir/metadata`, which is public).
pub(crate) fn router(state: AppState, assumed: Assumed) -> Router {
    let fhir = Router::new()
        .route("/metadata", get(api::metadata))
        .route("/Patient/{id}/$everything", get(api::everything))
        .route("/Consent", get(consent::search).post(consent::create))
        .route("/AuditEvent", get(audit_event::search))
        .route("/AuditEvent/{id}", get(audit_event::read))
        .route("/{type}", get(api::search_type).post(write::create))
        .route("/{type}/{id}", get(api::read).put(write::update))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(
            (state.clone(), assumed),
            guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record::record,
        ));
    let mut ops = Router::new().route("/metrics", get(metrics));
    if state.config.metrics_require_token {
        ops = ops.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    }
    // What falls outside the nest but is still under `/fhir` (`/fhir/`, say) goes through
    // the same layers, so that it is recorded too.
    let stray = fhir.clone().with_state(state.clone());
    if let Some(console) = state.console.clone() {
        ops = ops.merge(crate::console::router(console));
    }
    Router::new()
        .nest("/fhir", fhir)
        .merge(ops)
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready::readyz))
        .route("/readyz/detail", get(ready::readiness_detail))
        .fallback(move |request: Request| {
            let stray = stray.clone();
            async move {
                if request.uri().path().starts_with("/fhir") {
                    use tower::ServiceExt;
                    return match stray.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                }
                fallback(request.method().clone()).await.into_response()
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "the gateway failed to process the request",
                )
                .into_response()
            },
        ))
        .with_state(state)
}

async fn fallback(method: Method) -> ApiError {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "only GET is supported here (and POST to /fhir/Consent, POST and PUT of CarePlan, Goal and Flag)",
        );
    }
    ApiError::not_found("no such endpoint; see /fhir/metadata")
}

/// Marks an answer that the rate limit for callers without a valid token turned away: the
/// limiter counts it, and the audit layer records the count per client per minute instead
/// of a record per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimited;

/// Every `/fhir` request, inside the audit layer: the size and media-type checks, then the
/// bearer token (verified, and handed to the handler and to the audit record as the
/// [`crate::auth::Principal`]); `/fhir/metadata` needs none. Requests without a valid token
/// count against the caller's address's allowance ([`limit`]).
async fn guard(
    State((state, assumed)): State<(AppState, Assumed)>,
    mut request: Request,
    next: Next,
) -> Response {
    let public = request.uri().path() == "/metadata";
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<tls::Peer>>()
        .map(|peer| &peer.0);
    let client = peer.map(|p| p.addr.ip());
    let client_certificate = peer.and_then(|p| p.client_certificate.clone());
    let verified = match assumed.principal() {
        Some(principal) => Ok(principal),
        None => {
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or("\u{1}"));
            state.verifier.verify_header(header)
        }
    };
    let mut principal = match verified {
        Ok(principal) => principal,
        Err(e) => {
            if state.limiter.check(client) == limit::Verdict::Refuse {
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    "too many requests without a valid token from this address; try again later",
                )
                .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(state.config.rate_limit_window_secs),
                );
                response.extensions_mut().insert(RateLimited);
                return response;
            }
            if public {
                return match precheck(&state.config, &request, true) {
                    Err(e) => e.into_response(),
                    Ok(()) => next.run(request).await,
                };
            }
            tracing::info!(reason = %e, "request refused: bad or missing bearer token");
            return ApiError::unauthorized(&e).into_response();
        }
    };
    principal.client_certificate = client_certificate;
    let checked = precheck(&state.config, &request, true).and_then(|()| {
        Ok((
            break_glass_reason(request.headers(), &principal)?,
            full_lookup(request.headers(), &principal)?,
        ))
    });
    let mut response = match checked {
        Ok((reason, full)) => {
            principal.break_glass = reason;
            principal.full_lookup = full;
            request.extensions_mut().insert(principal.clone());
            next.run(request).await
        }
        Err(e) => e.into_response(),
    };
    // For the audit record.
    response.extensions_mut().insert(principal);
    response
}

/// A verified bearer token, for `/metrics` when the config asks for one.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{1}"));
    match state.verifier.verify_header(header) {
        Ok(_) => next.run(request).await,
        Err(e) => ApiError::unauthorized(&e).into_response(),
    }
}

/// The header that asks for emergency access, with the reason.
pub const BREAK_GLASS_REASON: &str = "x-break-glass-reason";

/// Longest break-glass reason kept, in characters.
pub const MAX_BREAK_GLASS_REASON: usize = 1000;

/// The reason of a break-glass request: text, 1 to 1,000 characters, no control characters.
/// A token whose purpose of use is already ETREAT needs one too: emergency access is never
/// given without a reason.
fn break_glass_reason(
    headers: &axum::http::HeaderMap,
    principal: &crate::auth::Principal,
) -> Result<Option<String>, ApiError> {
    let bad = |message: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "required",
            format!("X-Break-Glass-Reason {message}"),
        )
    };
    let Some(value) = headers.get(BREAK_GLASS_REASON) else {
        if principal.purpose_of_use == crate::policy::engine::EMERGENCY {
            return Err(bad(
                "is required: emergency access (purpose of use ETREAT) needs a reason",
            ));
        }
        return Ok(None);
    };
    if principal.patient.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "emergency access is for staff",
        ));
    }
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| bad("must be UTF-8 text"))?
        .trim();
    if text.is_empty() {
        return Err(bad("must give the reason for emergency access"));
    }
    if text.chars().count() > MAX_BREAK_GLASS_REASON {
        return Err(bad("is longer than 1,000 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(Some(text.to_owned()))
}

/// The header that asks for a full look-up: `full` (the only value), every source asked
/// whatever the record locator's index says.
pub const LOOKUP: &str = "x-concord-lookup";

/// Whether the request asks for a full look-up (`X-Concord-Lookup: full`). Staff only: a
/// fan-out to every source is theirs to ask for when a record looks incomplete; any other
/// value is refused rather than ignored.
fn full_lookup(
    headers: &axum::http::HeaderMap,
    principal: &crate::auth::Principal,
) -> Result<bool, ApiError> {
    let Some(value) = headers.get(LOOKUP) else {
        return Ok(false);
    };
    if value.as_bytes() != b"full" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "X-Concord-Lookup must be `full` (every source asked) when sent",
        ));
    }
    if principal.patient.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a full look-up is for staff",
        ));
    }
    Ok(true)
}

/// A usable caller-supplied request id: 1 to 128 visible ASCII characters.
fn usable_request_id(value: &HeaderValue) -> Option<HeaderValue> {
    let s = value.to_str().ok()?;
    ((1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())).then(|| value.clone())
}

/// Every request: a request id (echoed or generated), URL and body size limits, JSON-only
/// content negotiation, metrics and one log line (route template, never the path or query,
/// which can hold NHS numbers).
async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(usable_request_id)
        .unwrap_or_else(|| {
            let mut id = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id))
                .unwrap_or(HeaderValue::from_static("invalid"))
        });
    request.headers_mut().insert(REQUEST_ID, request_id.clone());
    let method = request.method().clone();
    // The route template, shared (`MatchedPath` holds it counted), not copied.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);

    // Under `/fhir` the checks run inside the audit layer ([`guard`]), so that what they
    // refuse is recorded too.
    let checked = if request.uri().path().starts_with("/fhir") {
        Ok(())
    } else {
        precheck(&state.config, &request, false)
    };
    let mut response = match checked {
        Err(e) => e.into_response(),
        Ok(()) => next.run(request).await,
    };
    if (response.status().is_client_error() || response.status().is_server_error())
        && !is_fhir(&response)
        && route.starts_with("/fhir")
    {
        let status = response.status();
        response = ApiError::new(
            status,
            "processing",
            status.canonical_reason().unwrap_or("error"),
        )
        .into_response();
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(
        request_id = request_id.to_str().unwrap_or_default(),
        http.method = %method,
        http.route = %route,
        http.status = status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response.headers_mut().insert(REQUEST_ID, request_id);
    let mut labels = HttpLabels {
        route: route.to_owned(),
        method: method_label(&method).to_owned(),
        status,
    };
    state.metrics.http_requests.get_or_create(&labels).inc();
    let labels = RouteLabels {
        route: std::mem::take(&mut labels.route),
    };
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    response
}

/// A fixed set of method labels: made-up methods must not mint new metric series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The URL and body size limits; for FHIR requests (`fhir`), JSON-only content negotiation.
fn precheck(config: &ServerConfig, request: &Request<Body>, fhir: bool) -> Result<(), ApiError> {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > config.max_url_bytes {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "too-long",
            format!(
                "the request URL is longer than {} bytes",
                config.max_url_bytes
            ),
        ));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            format!(
                "the request body is larger than {} bytes",
                config.max_body_bytes
            ),
        ));
    }
    if fhir
        && let Some(accept) = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
        && !accepts_json(accept)
    {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "only application/fhir+json is served",
        ));
    }
    Ok(())
}

/// True when an Accept header admits FHIR JSON.
fn accepts_json(accept: &str) -> bool {
    accept
        .split(',')
        .map(|r| {
            r.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .any(|r| {
            matches!(
                r.as_str(),
                "" | "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/fhir+json"
                    | "application/json+fhir"
            )
        })
}

async fn healthz() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(locator) = state.door.federation().locator() {
        locator.publish_ages();
    }
    for source in state.door.federation().sources() {
        state
            .metrics
            .breaker_state
            .get_or_create(&crate::telemetry::SourceLabels {
                source: source.info().id.clone(),
            })
            .set(source.breaker_state().gauge());
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A source could not be set up.
    #[error(transparent)]
    Source(#[from] crate::sources::SetupError),
    /// The token keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    /// The config has no `[auth]`.
    #[error("the config has no [auth] section")]
    NoAuth,
    /// The config has no `[audit]`, or its key cannot be used.
    #[error("[audit]: {0}")]
    Audit(String),
    /// The TLS certificates or keys could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The policy set is not valid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyErrors),
    /// The profiles directory cannot be loaded.
    #[error("[profiles]: {0}")]
    Profiles(String),
    /// The IG console cannot be set up.
    #[error(transparent)]
    Console(#[from] crate::console::SetupError),
}

/// The audit log's spool, head signer and witness, from `[audit]`.
fn audit_options(
    config: &crate::config::AuditConfig,
    metrics: &Metrics,
) -> Result<crate::audit::Options, StartError> {
    let signer = match &config.head_signing_key_file {
        Some(path) => Some(
            crate::audit::heads::HeadSigner::load(path)
                .map_err(|e| StartError::Audit(e.to_string()))?,
        ),
        None => {
            tracing::warn!(
                "[audit] head_signing_key_file is not set: chain heads are not signed, so records cut off the end of the log cannot be detected"
            );
            None
        }
    };
    let client = match &config.witness_url {
        Some(_) => Some(
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| StartError::Audit(format!("witness_url client: {e}")))?,
        ),
        None => None,
    };
    Ok(crate::audit::Options {
        spool_dir: Some(config.spool_dir.clone()),
        signer,
        head_interval: std::time::Duration::from_secs(config.head_interval_secs),
        witness: crate::audit::heads::Witness {
            file: config.witness_file.clone(),
            url: config.witness_url.clone(),
            client,
        },
        retry: std::time::Duration::from_secs(1),
        max_batch: crate::audit::MAX_BATCH,
        store_wait: std::time::Duration::from_millis(config.store_wait_ms),
        meters: Some(crate::audit::CommitMeters {
            seconds: metrics.audit_commit_seconds.clone(),
            records: metrics.audit_commit_records.clone(),
        }),
    })
}

/// Connects the store (migrating it when configured to), builds the sources and returns the
/// state the router needs.
pub async fn build_state(config: &crate::config::Config) -> Result<AppState, StartError> {
    let policies = Arc::new(crate::policy::LivePolicies::load(&config.policy.dir)?);
    let store = crate::store::Store::connect_with_cache(
        &config.store.url,
        config.store.max_connections,
        config.store.sqlite_cache_mib,
    )
    .await?;
    if config.store.migrate_on_start {
        store.migrate().await?;
    }
    let verifier =
        crate::auth::Verifier::from_config(config.auth.as_ref().ok_or(StartError::NoAuth)?)?;
    let audit_config = config.audit.as_ref().ok_or_else(|| {
        StartError::Audit("the config has no [audit] section (key_file or key_env)".into())
    })?;
    let key = crate::audit::AuditKey::load(
        audit_config.key_file.as_deref(),
        audit_config.key_env.as_deref(),
    )
    .map_err(|e| StartError::Audit(e.to_string()))?;
    let metrics = Metrics::new();
    let audit =
        crate::audit::AuditLog::start(store.clone(), key, audit_options(audit_config, &metrics)?);
    let sources = crate::sources::build(&config.sources, &metrics, &store).await?;
    let console = crate::console::Console::from_config(
        config,
        store.clone(),
        audit.clone(),
        policies.clone(),
        verifier.trusts_demo_key(),
        crate::console::Watched {
            sources: sources.clone(),
            metrics: metrics.clone(),
        },
    )?;
    if verifier.trusts_demo_key() {
        tracing::warn!(
            "THE DEMO SIGNING KEY IS TRUSTED: anyone can mint tokens this gateway accepts. Never do this outside the demo."
        );
    }
    let mut federation = Federation::new(
        sources,
        store.clone(),
        metrics.clone(),
        std::time::Duration::from_secs(config.store.link_max_age_secs),
        std::time::Duration::from_secs(config.store.link_cache_secs),
    );
    federation = federation.with_write_default(
        config
            .sources
            .iter()
            .find(|s| s.write_default == Some(true))
            .map(|s| s.id.clone()),
    );
    if config.locator.enabled {
        federation = federation.with_locator(Arc::new(crate::federation::locator::Locator::new(
            config.locator.clone(),
            &config.sources,
            store,
            metrics.clone(),
        )));
    }
    // Writes are always checked against the profiles before they leave.
    let checked = config
        .sources
        .iter()
        .any(|s| s.conformance != crate::config::Conformance::Off || s.writes.is_some());
    if checked {
        let dir = config.profiles.dir.clone();
        let profiles = tokio::task::spawn_blocking(move || crate::profiles::Profiles::load(&dir))
            .await
            .map_err(|e| StartError::Profiles(e.to_string()))?
            .map_err(|e| {
                StartError::Profiles(format!(
                    "{e} (set [profiles] dir, or conformance = \"off\" on every source)"
                ))
            })?;
        federation = federation.with_profiles(Arc::new(profiles));
    }
    let door = Door::new(
        federation,
        policies,
        std::time::Duration::from_millis(config.store.consent_cache_ms),
        config.server.request_timeout(),
    );
    let state = AppState::new(
        door,
        verifier,
        metrics,
        config.server.clone(),
        audit,
        console,
        crate::audit::Readers::new(config.audit_region_roles(), config.source_controllers()),
    );
    state.spawn_rate_limit_windows(std::time::Duration::from_secs(
        config.server.rate_limit_window_secs,
    ));
    Ok(state)
}
