//! The IG console: server-rendered pages for information-governance leads, behind an
//! OpenID Connect sign-in and sessions kept in the store.
//!
//! | file | what it holds |
//! | --- | --- |
//! | this one | [`Console`], its routes, the headers every page carries, the home page and sign-out |
//! | `signin` | the sign-in page, the authorization-code flow's two legs, the role choice, the demo sign-in |
//! | `oidc` | the relying party: discovery, PKCE, the code exchange, the ID token's checks |
//! | `session` | cookies, sessions in the store, idle and absolute timeouts, CSRF tokens |
//! | `pages` | the HTML of each page; `html` escapes whatever is not markup written here |
//! | `form_errors` | mistakes in a form, the NHS.UK way: the error summary, and each field's message |
//! | `audit` | the audit search, one record in full and the CSV export, within the user's scope |
//! | `audit_pages` | the HTML of the audit search and of one record |
//! | `person`, `person_pages` | "who has looked at this record": one person's accesses, and the print-friendly report |
//! | `agreements`, `agreements_pages` | the agreements in force, what needs attention, who may see what |
//! | `health`, `health_pages` | the health of the record: sources, signed chain heads, and `audit verify` |
//! | `verify` | `audit verify` run in the background, one at a time, with its progress |
//! | `charts`, `charts_pages`, `svg` | the pictures: counts from the store drawn as inline SVG, with their tables |
//! | `review` | the break-glass review: the queue, the review form, the reviews made |
//! | `review_pages` | the HTML of the break-glass review |
//!
//! Every page is `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and under a
//! Content-Security-Policy that allows no script and no inline style. Every form carries a
//! token tied to the session (or, before sign-in, to a cookie) that a POST must repeat.
//! Sign-ins and sign-outs are audit records in the gateway's chain, and so is every view and
//! export of the audit log and of a person's access report. The agreements pages name no
//! person and are not recorded.

mod agreements;
mod agreements_pages;
mod audit;
mod audit_pages;
mod charts;
mod charts_pages;
mod form_errors;
mod health;
mod health_pages;
mod html;
mod oidc;
mod pages;
mod person;
mod person_pages;
mod review;
mod review_pages;
mod session;
mod signin;
mod svg;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;

use crate::audit::{AuditLog, Body};
use crate::config::{ClaimNames, Config, ConsoleConfig};
use crate::policy::LivePolicies;
use crate::sources::Source;
use crate::store::{ConsoleSession, Store, StoreError};
use crate::telemetry::Metrics;
use session::Current;

/// The Content-Security-Policy of every console answer: nothing but this origin's
/// stylesheets and images, no script at all, no framing, forms only back here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The issuer recorded for the demo sign-in.
pub const DEMO_ISSUER: &str = "demo";

const STYLESHEET: &str = include_str!("console/console.css");

/// Why a console request could not be served. The text is safe to show the user: it never
/// repeats a token, a code or personal data.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The identity provider could not be reached or its answer could not be used.
    #[error("the identity provider could not be used ({0})")]
    Provider(String),
    /// The identity provider refused to exchange the code.
    #[error("the identity provider refused the sign-in code (`{0}`)")]
    CodeRefused(String),
    /// The identity provider sent the browser back with an error.
    #[error("the identity provider did not sign you in (`{0}`)")]
    Denied(String),
    /// The ID token failed a check.
    #[error("the identity provider's ID token was refused: {0}")]
    IdToken(crate::auth::AuthError),
    /// The ID token's nonce is not the one this sign-in sent.
    #[error("the ID token was not issued for this sign-in (wrong nonce)")]
    Nonce,
    /// The callback names no sign-in under way: unknown, already used or expired.
    #[error("this sign-in is unknown, was already used or has expired; please sign in again")]
    UnknownLogin,
    /// The callback came to another browser than the one that started the sign-in.
    #[error("this sign-in was started in another browser; please sign in again")]
    OtherBrowser,
    /// The callback lacks `code` or `state`.
    #[error("the identity provider's answer is missing `{0}`")]
    Missing(&'static str),
    /// The user holds no role that may use the console.
    #[error("your role does not give you access to the IG console")]
    RoleNotAllowed,
    /// A form without the right token.
    #[error("this form has expired or did not come from this console; please try again")]
    Csrf,
    /// Too many sign-ins are under way.
    #[error("too many sign-ins are under way; please try again in a few minutes")]
    Busy,
    /// The system could not supply random bytes.
    #[error("the system could not supply random bytes")]
    Randomness,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not keep the record.
    #[error("the audit log cannot be written: {0}")]
    Audit(String),
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Provider(_) | ConsoleError::CodeRefused(_) => StatusCode::BAD_GATEWAY,
            ConsoleError::RoleNotAllowed | ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::Busy
            | ConsoleError::Randomness
            | ConsoleError::Store(_)
            | ConsoleError::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The console: its settings, the store its sessions live in, the audit log and, when an
/// issuer is configured, the identity provider.
#[derive(Clone, Debug)]
pub struct Console(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: ConsoleConfig,
    claims: ClaimNames,
    store: Store,
    audit: AuditLog,
    policies: Arc<LivePolicies>,
    /// Who reads which audit records (the region roles, and each source's organisation).
    readers: crate::audit::Readers,
    provider: Option<oidc::Provider>,
    demo: bool,
    secure: bool,
    /// The console's path as browsers see it, e.g. `/console` (no trailing `/`).
    path: String,
    /// What the health page shows of the sources.
    watched: Watched,
    /// `audit verify` in the background.
    verify: verify::Verifier,
}

/// What the health page reads besides the store: the gateway's sources (their circuit
/// breakers) and the process's metrics (what each source did since start).
#[derive(Debug, Clone)]
pub struct Watched {
    /// The sources, in config order.
    pub sources: Vec<Arc<dyn Source>>,
    /// The metrics the sources and the federation write.
    pub metrics: Arc<Metrics>,
}

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Neither an issuer nor the demo key.
    #[error(
        "[console] has no issuer, and the demo sign-in exists only while the demo key is trusted"
    )]
    NoSignIn,
    /// The identity provider's client could not be built.
    #[error("[console]: {0}")]
    Provider(String),
}

impl Console {
    /// The console of a config, or `None` when it has no `[console]`. `demo_key_trusted`
    /// turns on the demo sign-in; `watched` is what its health page shows of the sources.
    pub fn from_config(
        config: &Config,
        store: Store,
        audit: AuditLog,
        policies: Arc<LivePolicies>,
        demo_key_trusted: bool,
        watched: Watched,
    ) -> Result<Option<Console>, SetupError> {
        let Some(console) = &config.console else {
            return Ok(None);
        };
        let base = config.server.base_url();
        let root = base.strip_suffix("/fhir").unwrap_or(&base);
        let url = reqwest::Url::parse(root).map_err(|e| SetupError::Provider(e.to_string()))?;
        let path = format!("{}/console", url.path().trim_end_matches('/'));
        let provider = match (&console.issuer, &console.client_id) {
            (Some(issuer), Some(client_id)) => Some(
                oidc::Provider::new(oidc::Client {
                    issuer: issuer.trim_end_matches('/').to_owned(),
                    client_id: client_id.clone(),
                    secret: console.secret(),
                    scopes: console.scopes.join(" "),
                    redirect_url: format!("{root}/console/callback"),
                    leeway: config.auth.as_ref().map_or(30, |a| a.leeway_secs),
                })
                .map_err(|e| SetupError::Provider(e.to_string()))?,
            ),
            _ if demo_key_trusted => None,
            _ => return Err(SetupError::NoSignIn),
        };
        Ok(Some(Console(Arc::new(Inner {
            config: console.clone(),
            claims: config
                .auth
                .as_ref()
                .map(|a| a.claims.clone())
                .unwrap_or_default(),
            store,
            audit,
            policies,
            readers: crate::audit::Readers::new(
                config.audit_region_roles(),
                config.source_controllers(),
            ),
            provider,
            demo: demo_key_trusted,
            secure: config.server.tls.is_some() || root.starts_with("https://"),
            path,
            watched,
            verify: verify::Verifier::new(&config.store.url, config.audit.clone()),
        }))))
    }

    /// A page answer with its status.
    fn page(&self, status: StatusCode, html: String) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response()
    }

    /// The answer to a failed request: a page saying what went wrong, logged once.
    fn refusal(&self, e: &ConsoleError) -> Response {
        let status = e.status();
        if status.is_server_error() {
            tracing::error!(error = %e, "console request failed");
        } else {
            tracing::info!(reason = %e, "console request refused");
        }
        let heading = match status {
            StatusCode::FORBIDDEN => "You cannot use the IG console",
            s if s.is_server_error() => "Sorry, there is a problem",
            _ => "You are not signed in",
        };
        self.page(
            status,
            pages::refusal(&self.0.path, heading, &e.to_string()),
        )
    }

    fn redirect(&self, to: &str) -> Response {
        Redirect::to(&format!("{}{to}", self.0.path)).into_response()
    }

    /// Records a sign-in, a refused sign-in or a sign-out in the audit chain.
    async fn record(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        who: Option<&ConsoleSession>,
        status: StatusCode,
    ) -> Result<(), ConsoleError> {
        let who = who.map(|w| signin::Actor {
            user: w.subject.clone(),
            name: w.name.clone(),
            org: w.org.clone(),
            role: w.role.clone(),
        });
        self.record_actor(headers, method, route, who.as_ref(), status)
            .await
    }

    /// Records a console event of `who` (none: nobody the console could name).
    async fn record_actor(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        who: Option<&signin::Actor>,
        status: StatusCode,
    ) -> Result<(), ConsoleError> {
        self.append(&self.event(headers, method, route, who, status))
            .await
    }

    /// The audit record of a console event of `who`, before anything particular to it (the
    /// person a view names) is added.
    fn event(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        who: Option<&signin::Actor>,
        status: StatusCode,
    ) -> Body {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Body {
            recorded_us: jiff::Timestamp::now().as_microsecond(),
            request_id: request_id.to_owned(),
            user: who.map(|w| w.user.clone()),
            user_name: who.and_then(|w| w.name.clone()),
            org: who.and_then(|w| w.org.clone()),
            role: who.and_then(|w| w.role.clone()),
            caller: if who.is_some() {
                "staff"
            } else {
                "unauthenticated"
            }
            .to_owned(),
            method: method.to_owned(),
            route: route.to_owned(),
            target: route.to_owned(),
            policy_hash: self.0.policies.current().hash.clone(),
            outcome: match status.as_u16() {
                200..=399 => "success",
                400..=499 => "refused",
                _ => "error",
            }
            .to_owned(),
            status: status.as_u16(),
            ..Body::default()
        }
    }

    /// Appends a record to the audit chain.
    async fn append(&self, body: &Body) -> Result<(), ConsoleError> {
        self.0
            .audit
            .append(body)
            .await
            .map(|_| ())
            .map_err(|e| ConsoleError::Audit(e.to_string()))
    }

    /// The active session of a request, or the answer that sends the browser to sign in or
    /// choose a role.
    async fn active(&self, headers: &HeaderMap) -> Result<ConsoleSession, Response> {
        match self.current(headers).await {
            Ok(Current::Active(session)) => Ok(session),
            Ok(Current::Choosing(_)) => Err(self.redirect("/role")),
            Ok(Current::None) => Err(self.redirect("/sign-in")),
            Err(e) => Err(self.refusal(&e)),
        }
    }
}

/// The console's routes under `/console`, for the gateway's router to merge.
pub fn router<S: Clone + Send + Sync + 'static>(console: Console) -> Router<S> {
    let mut routes = Router::new()
        .route(
            "/console",
            get(|State(c): State<Console>| async move { c.redirect("/") }),
        )
        .route("/console/", get(home))
        .route("/console/sign-in", get(signin::page))
        .route(
            "/console/role",
            get(signin::role_page).post(signin::choose_role),
        )
        .route("/console/sign-out", post(sign_out))
        .route("/console/audit", get(audit::search))
        .route("/console/audit.csv", get(audit::csv))
        .route("/console/audit/{id}", get(audit::record))
        .route("/console/person", get(person::page))
        .route("/console/person/{nhs}/report", get(person::print))
        .route("/console/agreements", get(agreements::list))
        .route("/console/agreements/{id}", get(agreements::one))
        .route("/console/health", get(health::page))
        .route(
            "/console/health/verify",
            get(health::verify_page).post(health::start_verify),
        )
        .route("/console/charts", get(charts::page))
        .route("/console/review", get(review::queue))
        .route(
            "/console/review/{id}",
            get(review::form).post(review::submit),
        )
        .route("/console/reviewed", get(review::reviewed))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/{*rest}", get(not_found).post(not_found));
    if console.0.provider.is_some() {
        routes = routes
            .route("/console/login", get(signin::login))
            .route("/console/callback", get(signin::callback));
    }
    if console.0.demo {
        routes = routes.route("/console/demo-sign-in", post(signin::demo));
    }
    routes
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// The headers every console answer carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `GET /console/`: who is signed in, and the way out.
async fn home(State(console): State<Console>, headers: HeaderMap) -> Response {
    match console.current(&headers).await {
        Ok(Current::Active(session)) => {
            let waiting = console.waiting_for_review(&session).await;
            let html = pages::home(&console.0.path, &session, waiting);
            console.page(StatusCode::OK, html)
        }
        Ok(Current::Choosing(_)) => console.redirect("/role"),
        Ok(Current::None) => console.redirect("/sign-in"),
        Err(e) => console.refusal(&e),
    }
}

/// `POST /console/sign-out`: ends the session (with the form's token) and clears its cookie.
async fn sign_out(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match console.current(&headers).await {
        Ok(Current::Active(s) | Current::Choosing(s)) => s,
        Ok(Current::None) => return console.redirect("/sign-in"),
        Err(e) => return console.refusal(&e),
    };
    if !session::csrf_matches(&session.csrf, &session::form(&body)) {
        return console.refusal(&ConsoleError::Csrf);
    }
    let ended = async {
        console
            .0
            .store
            .delete_console_session(&session.id_hash)
            .await?;
        console
            .record(
                &headers,
                "POST",
                "/console/sign-out",
                Some(&session),
                StatusCode::SEE_OTHER,
            )
            .await
    };
    if let Err(e) = ended.await {
        return console.refusal(&e);
    }
    let mut response = console.redirect("/sign-in?signed-out");
    response.headers_mut().append(
        header::SET_COOKIE,
        console.clear_cookie(session::SESSION_COOKIE, ""),
    );
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn not_found(State(console): State<Console>) -> Response {
    console.page(
        StatusCode::NOT_FOUND,
        pages::refusal(
            &console.0.path,
            "Page not found",
            "There is no such page in the IG console.",
        ),
    )
}

/// Now, Unix seconds.
fn now_s() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// SHA-256 of a text, lower-case hex: what the store keeps of ids, states and nonces.
fn sha256_hex(text: &str) -> String {
    crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

/// 32 random bytes, base64url: session ids, states, nonces, PKCE verifiers, form tokens.
fn random_token() -> Result<String, ConsoleError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ConsoleError::Randomness)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests;
