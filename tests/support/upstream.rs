//! A fake-but-real upstream FHIR R4 server for integration tests.
//!
//! [`Upstream::start`] binds `127.0.0.1:0` inside the test process and serves a
//! fixed set of resources under `http://127.0.0.1:PORT/fhir` (see
//! [`Upstream::base_url`]), speaking plain FHIR R4 REST with JSON only:
//!
//! * `GET /fhir/metadata` answers a minimal `CapabilityStatement`;
//! * `GET /fhir/{Type}/{id}` reads a resource (404 `OperationOutcome` if absent);
//! * `GET /fhir/{Type}?...` searches, supporting `_id`, `identifier`
//!   (`system|value`, `|value`, `system|`, or a bare value), `patient` and
//!   `subject` (`ID` or `Patient/ID`, matched against `subject.reference` and
//!   `patient.reference`), and `_elements` (each match keeps only the elements
//!   named, with `resourceType`, `id` and `meta`); every other parameter is
//!   ignored;
//! * `GET /fhir/Patient/{id}/$everything` returns the Patient and everything
//!   that references it;
//! * `POST /fhir/{Type}` creates a resource (a new id, `meta.versionId` 1) and
//!   `PUT /fhir/{Type}/{id}` updates one, versioned: an `If-Match` that is not
//!   the current version (`W/"n"`) is 412 and nothing is written; `meta.tag` and
//!   `meta.security` are kept, the rest of `meta` is the server's; a POST with
//!   `If-None-Exist` (parameters as a search takes them) that finds one match answers
//!   200 with it and writes nothing, more than one 412; every write
//!   received is kept ([`Upstream::writes`]), and [`Upstream::refuse_writes`]
//!   makes it refuse them with a status and an OperationOutcome;
//! * anything else answers 404 (unknown type or path) or 405 with an
//!   `OperationOutcome`.
//!
//! Searchsets are paged: [`Upstream::set_page_size`] (default 1000) or a smaller
//! `_count` sets the page size, and the `next` link is an absolute URL on this
//! server carrying `_count` and `_offset`, so following it yields the next,
//! non-overlapping page.
//!
//! # Switches
//!
//! All switches take effect immediately, even while a test is running, so a
//! source can be made to fail mid-test:
//!
//! * [`Upstream::set_mode`] picks a [`Mode`]: behave normally, answer every
//!   request with a fixed status, with garbage, with JSON that is not a
//!   Bundle, never answer at all, or ignore search parameters like a broken
//!   provider system. The mode is sampled when a request arrives.
//! * [`Upstream::set_latency`] delays every answer.
//! * [`Upstream::set_page_size`] changes the searchset page size.
//!
//! Every request is recorded: [`Upstream::request_count`],
//! [`Upstream::requests`] (path and query, in order) and
//! [`Upstream::last_accept_header`].
//!
//! [`Upstream::start_secure`] serves the same over HTTPS, optionally demanding
//! a client certificate and a bearer token that its own token endpoint
//! (`POST /token`) issues for a client-credentials grant with a signed JWT
//! assertion (SMART Backend Services).
//!
//! [`Upstreams::start`] serves many such servers from one listener, each under its own base
//! path `/{name}/fhir` with its own data set, switches and request log ([`Base`]): hundreds
//! of sources without hundreds of listeners.
//!
//! Dropping the [`Upstream`] (or calling [`Upstream::shutdown`]) stops the
//! server; requests that are hanging or waiting out the latency are released
//! with a 503 rather than kept open forever.

use std::collections::{BTreeSet, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The media type of every answer.
pub(crate) const FHIR_JSON: &str = "application/fhir+json";

/// The page size used until [`Upstream::set_page_size`] is called.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 1000;

/// The body served in [`Mode::Garbage`].
pub(crate) const GARBAGE_BODY: &str =
    "<html><body>502 Bad Gateway: this is not JSON{{{</body></html>";

/// How the server answers; switch it at run time with [`Upstream::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// Behave like a correct FHIR R4 server.
    #[default]
    Normal,
    /// Answer every request (all paths) with this status and an
    /// `OperationOutcome` body. Values outside `200..=999` are answered as 500.
    Status(u16),
    /// Answer every request with 200, `Content-Type: application/fhir+json`
    /// and a body that is not JSON.
    Garbage,
    /// Answer every request with 200 and valid JSON that is not a Bundle
    /// (nor any FHIR resource): `{"hello":1}`.
    WrongJson,
    /// Accept every request and never answer it (until the server stops).
    Hang,
    /// Every search returns all resources of the requested type, whatever the
    /// filter parameters, like a broken provider system. Paging (`_count`,
    /// `_offset`) still works; reads and `$everything` are unaffected.
    IgnoreSearchParams,
}

/// A running fake upstream FHIR R4 server; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Upstream {
    base_url: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// State shared between the [`Upstream`] handle and the request handler.
#[derive(Debug)]
struct Shared {
    /// `http://127.0.0.1:PORT`, used to make links absolute.
    origin: String,
    /// `{origin}/fhir` (`{origin}/{name}/fhir` for a base of [`Upstreams`]).
    base_url: String,
    /// When set, searchsets' `next` links are written under this base URL instead of
    /// `base_url`, like a server that pages through another host or path.
    next_base: Mutex<Option<String>>,
    resources: RwLock<Vec<Value>>,
    mode: Mutex<Mode>,
    latency: Mutex<Duration>,
    page_size: AtomicUsize,
    /// Types whose searches answer 400, like a server that does not support them.
    unsupported: Mutex<Vec<String>>,
    requests: Mutex<Vec<String>>,
    last_accept: Mutex<Option<String>>,
    /// Every write received (method, path, If-Match, body), in order.
    writes: Mutex<Vec<Received>>,
    /// When set, every write is refused with this status.
    refuse_writes: Mutex<Option<u16>>,
    shutdown: watch::Receiver<bool>,
    oauth: Option<OAuthState>,
}

/// A write the fake upstream received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// `POST` or `PUT`.
    pub(crate) method: String,
    /// The path, e.g. `/fhir/Goal`.
    pub(crate) path: String,
    /// The `If-Match` header, when sent.
    pub(crate) if_match: Option<String>,
    /// The `If-None-Exist` header, when sent.
    pub(crate) if_none_exist: Option<String>,
    /// The body, as sent.
    pub(crate) body: Value,
    /// The status it answered.
    pub(crate) status: u16,
}

/// What [`Upstream::start_secure`] demands of callers.
pub(crate) struct Secure {
    /// The server certificate and, with `client_ca_file`, client certificates.
    pub(crate) tls: concord::config::ServerTlsConfig,
    /// When set, every FHIR request needs a bearer token from `POST /token`.
    pub(crate) oauth: Option<OAuthServer>,
}

/// The token endpoint's one registered client.
#[derive(Debug)]
pub(crate) struct OAuthServer {
    /// The client id assertions must name as `iss` and `sub`.
    pub(crate) client_id: String,
    /// The client's public key (PEM) and the one algorithm it signs with.
    pub(crate) public_key_pem: Vec<u8>,
    pub(crate) algorithm: jsonwebtoken::Algorithm,
    /// `expires_in` of issued tokens, in seconds.
    pub(crate) expires_in: u64,
}

#[derive(Debug)]
struct OAuthState {
    server: OAuthServer,
    token_url: String,
    issued: Mutex<HashSet<String>>,
    seen_jtis: Mutex<HashSet<String>>,
    token_requests: AtomicUsize,
    refused: AtomicUsize,
}

impl Upstream {
    /// Binds `127.0.0.1:0` and starts serving `resources` (FHIR R4 resources
    /// as JSON, each with `resourceType` and `id`) on the current Tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Panics if the listener cannot be bound.
    pub(crate) async fn start(resources: Vec<Value>) -> Self {
        Self::start_inner(resources, None).await
    }

    /// Like [`Upstream::start`], over HTTPS with `secure`'s demands.
    pub(crate) async fn start_secure(resources: Vec<Value>, secure: Secure) -> Self {
        Self::start_inner(resources, Some(secure)).await
    }

    async fn start_inner(resources: Vec<Value>, secure: Option<Secure>) -> Self {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the fake upstream FHIR server to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("read the fake upstream's local address");
        let (scheme, tls, oauth) = match secure {
            None => ("http", None, None),
            Some(Secure { tls, oauth }) => ("https", Some(tls), oauth),
        };
        let origin = format!("{scheme}://{addr}");
        let oauth = oauth.map(|server| OAuthState {
            server,
            token_url: format!("{origin}/token"),
            issued: Mutex::new(HashSet::new()),
            seen_jtis: Mutex::new(HashSet::new()),
            token_requests: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let listener = concord::server::tls::Listener::new(listener, tls.as_ref())
            .expect("the fake upstream's TLS config");
        let base_url = format!("{origin}/fhir");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(
            origin,
            base_url.clone(),
            resources,
            shutdown_rx.clone(),
            oauth,
        ));
        let app = Router::new()
            .route("/token", axum::routing::post(token))
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let stopped = async move {
                // An error means the sender is gone, which also means "stop".
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            // A fake server has nobody to report accept errors to.
            let _ = concord::server::tls::serve(listener, app, stopped).await;
        });
        Self {
            base_url,
            shared,
            shutdown,
            server: Some(server),
        }
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:PORT/fhir` (no trailing slash).
    pub(crate) fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Switches how the server answers requests arriving from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Adds `d` before every answer to requests arriving from now on
    /// (`Duration::ZERO` to turn it off).
    pub(crate) fn set_latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// Sets the searchset page size (default 1000; 0 is treated as 1). A
    /// request's `_count` wins when it is smaller.
    pub(crate) fn set_page_size(&self, n: usize) {
        self.shared.page_size.store(n.max(1), Ordering::Relaxed);
    }

    /// Makes searches of these types answer 400, as a server that does not support them.
    pub(crate) fn set_unsupported_types(&self, types: &[&str]) {
        *lock(&self.shared.unsupported) = types.iter().map(|t| (*t).to_owned()).collect();
    }

    /// Adds a resource (or replaces the one with the same type and id) to the served data set, e.g. to simulate new data
    /// arriving mid-test.
    pub(crate) fn add_resource(&self, resource: Value) {
        self.shared.add_resource(resource);
    }

    /// Every write received, in order (refused ones too).
    pub(crate) fn writes(&self) -> Vec<Received> {
        lock(&self.shared.writes).clone()
    }

    /// Refuses every write from now on with `status` (`None`: takes them again).
    pub(crate) fn refuse_writes(&self, status: Option<u16>) {
        *lock(&self.shared.refuse_writes) = status;
    }

    /// The resource of this type and id as the server holds it now.
    pub(crate) fn resource(&self, resource_type: &str, id: &str) -> Option<Value> {
        self.shared
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|r| {
                resource_type_of(r) == Some(resource_type)
                    && r.get("id").and_then(Value::as_str) == Some(id)
            })
            .cloned()
    }

    /// How many requests have been received (all paths, all modes).
    pub(crate) fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The path and query of each request received, in order, e.g.
    /// `/fhir/Patient?identifier=urn%3Asys%7C123`.
    pub(crate) fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests and Accept header.
    pub(crate) fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
        *lock(&self.shared.last_accept) = None;
    }

    /// The `Accept` header of the most recent request, or `None` if it had
    /// none (or no request has arrived yet).
    pub(crate) fn last_accept_header(&self) -> Option<String> {
        lock(&self.shared.last_accept).clone()
    }

    /// The token endpoint's URL (`{origin}/token`).
    pub(crate) fn token_url(&self) -> String {
        format!("{}/token", self.shared.origin)
    }

    /// How many token requests arrived (granted or not).
    pub(crate) fn token_requests(&self) -> usize {
        self.shared
            .oauth
            .as_ref()
            .map_or(0, |o| o.token_requests.load(Ordering::Relaxed))
    }

    /// How many FHIR requests were refused with 401 for a missing or unknown token.
    pub(crate) fn refused_requests(&self) -> usize {
        self.shared
            .oauth
            .as_ref()
            .map_or(0, |o| o.refused.load(Ordering::Relaxed))
    }

    /// Forgets every token issued so far, as a server revoking them early.
    pub(crate) fn revoke_tokens(&self) {
        if let Some(o) = &self.shared.oauth {
            lock(&o.issued).clear();
        }
    }

    /// Stops the server and waits until it has closed its listener and all
    /// connections. Hanging requests are released with a 503.
    pub(crate) async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            // The server task never panics; a JoinError would only mean it
            // was cancelled, which is what we want anyway.
            let _ = server.await;
        }
    }
}

impl Drop for Upstream {
    /// Signals the server to stop without waiting: the listener closes,
    /// idle connections are closed, and hanging requests are released.
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl Shared {
    fn new(
        origin: String,
        base_url: String,
        resources: Vec<Value>,
        shutdown: watch::Receiver<bool>,
        oauth: Option<OAuthState>,
    ) -> Self {
        Shared {
            origin,
            base_url,
            next_base: Mutex::new(None),
            resources: RwLock::new(resources),
            mode: Mutex::new(Mode::Normal),
            latency: Mutex::new(Duration::ZERO),
            page_size: AtomicUsize::new(DEFAULT_PAGE_SIZE),
            unsupported: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            last_accept: Mutex::new(None),
            writes: Mutex::new(Vec::new()),
            refuse_writes: Mutex::new(None),
            shutdown,
            oauth,
        }
    }

    /// The base URL `next` links are written under.
    fn next_base(&self) -> String {
        lock(&self.next_base)
            .clone()
            .unwrap_or_else(|| self.base_url.clone())
    }

    /// Adds a resource, or replaces the one with the same type and id.
    fn add_resource(&self, resource: Value) {
        let mut resources = self
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // A resource with the same type and id is an update: it replaces the old version.
        let same = |r: &Value| {
            r.get("resourceType") == resource.get("resourceType")
                && r.get("id") == resource.get("id")
        };
        match resources.iter().position(same) {
            Some(i) => resources[i] = resource,
            None => resources.push(resource),
        }
    }
}

/// Many fake upstream FHIR servers in one process, on one port: each base path
/// `http://127.0.0.1:PORT/{name}/fhir` is a server of its own, with its own data set,
/// switches and request log ([`Base`]), so that a test can have hundreds of sources without
/// hundreds of listeners. It stops when dropped.
#[derive(Debug)]
pub(crate) struct Upstreams {
    bases: Vec<Base>,
    shutdown: watch::Sender<bool>,
    _server: JoinHandle<()>,
}

/// One base path of [`Upstreams`].
#[derive(Debug, Clone)]
pub(crate) struct Base(Arc<Shared>);

impl Upstreams {
    /// Binds `127.0.0.1:0` and serves each `(name, resources)` under `/{name}/fhir` (names
    /// are path segments: letters, digits and `-`).
    pub(crate) async fn start(bases: Vec<(String, Vec<Value>)>) -> Self {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind the fake upstreams to 127.0.0.1:0");
        let addr = listener.local_addr().expect("the fake upstreams' address");
        let origin = format!("http://{addr}");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut by_name = std::collections::HashMap::new();
        let mut handles = Vec::new();
        for (name, resources) in bases {
            let shared = Arc::new(Shared::new(
                origin.clone(),
                format!("{origin}/{name}/fhir"),
                resources,
                shutdown_rx.clone(),
                None,
            ));
            handles.push(Base(shared.clone()));
            by_name.insert(name, shared);
        }
        let app = Router::new()
            .fallback(handle_many)
            .with_state(Arc::new(by_name));
        // One test gateway keeps a connection open to each base: no per-client cap.
        let listener = concord::server::tls::Listener::new(listener, None)
            .expect("the fake upstreams' listener")
            .with_limits(concord::server::tls::Limits {
                max_connections: 10_000,
                max_connections_per_client: 0,
                ..concord::server::tls::Limits::default()
            });
        let mut stop = shutdown_rx;
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            let _ = concord::server::tls::serve(listener, app, stopped).await;
        });
        Self {
            bases: handles,
            shutdown,
            _server: server,
        }
    }

    /// The base paths, in the order given.
    pub(crate) fn bases(&self) -> &[Base] {
        &self.bases
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl Base {
    /// The FHIR base URL, `http://127.0.0.1:PORT/{name}/fhir`.
    pub(crate) fn base_url(&self) -> String {
        self.0.base_url.clone()
    }

    /// Switches how this base answers requests arriving from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        *lock(&self.0.mode) = mode;
    }

    /// Adds `d` before every answer of this base.
    #[allow(dead_code, reason = "used by benches/locator.rs")]
    pub(crate) fn set_latency(&self, d: Duration) {
        *lock(&self.0.latency) = d;
    }

    /// Sets this base's searchset page size (0 is treated as 1).
    pub(crate) fn set_page_size(&self, n: usize) {
        self.0.page_size.store(n.max(1), Ordering::Relaxed);
    }

    /// Writes this base's `next` links under `base_url` (another base, another host) from
    /// now on; `None` puts them back under its own.
    pub(crate) fn set_next_base(&self, base_url: Option<String>) {
        *lock(&self.0.next_base) = base_url;
    }

    /// Adds a resource (or replaces the one with the same type and id).
    pub(crate) fn add_resource(&self, resource: Value) {
        self.0.add_resource(resource);
    }

    /// How many requests this base has received.
    pub(crate) fn request_count(&self) -> usize {
        lock(&self.0.requests).len()
    }

    /// The path (below the base's name) and query of each request this base received.
    pub(crate) fn requests(&self) -> Vec<String> {
        lock(&self.0.requests).clone()
    }

    /// Forgets the recorded requests.
    pub(crate) fn clear_requests(&self) {
        lock(&self.0.requests).clear();
    }
}

/// The handler of [`Upstreams`]: `/{name}/fhir/...` is answered by that base as
/// [`handle`] answers `/fhir/...`; an unknown name is a 404.
async fn handle_many(
    State(bases): State<Arc<std::collections::HashMap<String, Arc<Shared>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().trim_start_matches('/');
    let (name, rest) = path.split_once('/').unwrap_or((path, ""));
    let Some(shared) = bases.get(name) else {
        return not_found(&format!("no fake upstream named {name}"));
    };
    let inner = match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let Ok(inner) = inner.parse::<Uri>() else {
        return outcome(StatusCode::BAD_REQUEST, "unparsable request path");
    };
    handle(State(shared.clone()), method, inner, headers, body).await
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The single handler: records the request, applies latency and mode, routes.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    lock(&shared.requests).push(path_and_query(&uri).to_owned());
    *lock(&shared.last_accept) = headers
        .get(ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(oauth) = &shared.oauth {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !token.is_some_and(|t| lock(&oauth.issued).contains(t)) {
            oauth.refused.fetch_add(1, Ordering::Relaxed);
            let mut response =
                outcome(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return response;
        }
    }
    let mode = *lock(&shared.mode);
    let latency = *lock(&shared.latency);

    let mut stopped = shared.shutdown.clone();
    let released = async move {
        // An error means the Upstream is gone, which also means "stop".
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(released);

    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            () = &mut released => return shutting_down(),
        }
    }

    match mode {
        Mode::Hang => {
            released.await;
            shutting_down()
        }
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| !s.is_informational())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            outcome(status, &format!("fake upstream is in Status({code}) mode"))
        }
        Mode::Garbage => fhir_response(StatusCode::OK, GARBAGE_BODY.to_owned()),
        Mode::WrongJson => fhir_response(StatusCode::OK, json!({"hello": 1}).to_string()),
        Mode::Normal | Mode::IgnoreSearchParams => {
            if method == Method::GET || method == Method::HEAD {
                route(&shared, &uri, mode == Mode::IgnoreSearchParams)
            } else if method == Method::POST || method == Method::PUT {
                let response = write(&shared, &method, &uri, &headers, &body);
                lock(&shared.writes).push(Received {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                    if_match: headers
                        .get(http::header::IF_MATCH)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    if_none_exist: headers
                        .get("if-none-exist")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    status: response.status().as_u16(),
                });
                response
            } else {
                outcome(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("method {method} is not supported by the fake upstream"),
                )
            }
        }
    }
}

/// `POST /token`: a client-credentials grant with a JWT assertion (RFC 7523), checked as a
/// SMART Backend Services authorisation server would: grant and assertion types, signature
/// with the registered key and algorithm, `iss` = `sub` = client id, `aud` = this endpoint,
/// an unexpired `exp`, and a `jti` never seen before.
async fn token(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let Some(oauth) = &shared.oauth else {
        return not_found("this upstream has no token endpoint");
    };
    oauth.token_requests.fetch_add(1, Ordering::Relaxed);
    let refuse = |status: StatusCode, error: &str| {
        (
            status,
            [(CONTENT_TYPE, "application/json")],
            json!({"error": error, "error_description": "refused by the fake upstream"})
                .to_string(),
        )
            .into_response()
    };
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if field("client_assertion_type")
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Some(assertion) = field("client_assertion") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let key = match oauth.server.algorithm {
        jsonwebtoken::Algorithm::EdDSA => {
            jsonwebtoken::DecodingKey::from_ed_pem(&oauth.server.public_key_pem)
        }
        jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::RS384 => {
            jsonwebtoken::DecodingKey::from_rsa_pem(&oauth.server.public_key_pem)
        }
        _ => jsonwebtoken::DecodingKey::from_ec_pem(&oauth.server.public_key_pem),
    }
    .expect("the registered client key");
    let mut validation = jsonwebtoken::Validation::new(oauth.server.algorithm);
    validation.set_audience(&[&oauth.token_url]);
    validation.set_issuer(&[&oauth.server.client_id]);
    validation.sub = Some(oauth.server.client_id.clone());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let Ok(data) = jsonwebtoken::decode::<Value>(assertion, &key, &validation) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    let Some(jti) = data.claims.get("jti").and_then(Value::as_str) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if !lock(&oauth.seen_jtis).insert(jti.to_owned()) {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let access_token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    lock(&oauth.issued).insert(access_token.clone());
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": oauth.server.expires_in,
            "scope": field("scope").unwrap_or_default(),
        })
        .to_string(),
    )
        .into_response()
}

/// Routes a `GET` in normal operation.
fn route(shared: &Shared, uri: &Uri, ignore_search_params: bool) -> Response {
    let Some(rest) = uri.path().strip_prefix("/fhir/") else {
        return not_found(&format!("no FHIR endpoint at {}", uri.path()));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["metadata"] => fhir_response(StatusCode::OK, capability_statement(shared).to_string()),
        [ty] if is_known_type(shared, ty) => search(shared, uri, ty, ignore_search_params),
        [ty, id] if is_known_type(shared, ty) => read(shared, ty, id),
        ["Patient", id, op] if is_everything(op) => everything(shared, uri, id),
        _ => not_found(&format!("unknown type or path {}", uri.path())),
    }
}

/// `GET {base}/{Type}/{id}`.
fn read(shared: &Shared, ty: &str, id: &str) -> Response {
    let resources = shared
        .resources
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    match resources
        .iter()
        .find(|r| resource_type(r) == Some(ty) && resource_id(r) == Some(id))
    {
        Some(resource) => fhir_response(StatusCode::OK, resource.to_string()),
        None => not_found(&format!("{ty}/{id} is not known")),
    }
}

/// `GET {base}/{Type}?...`.
fn search(shared: &Shared, uri: &Uri, ty: &str, ignore_params: bool) -> Response {
    if lock(&shared.unsupported).iter().any(|t| t == ty) {
        return outcome(
            StatusCode::BAD_REQUEST,
            &format!("searching {ty} is not supported"),
        );
    }
    let query = match SearchQuery::parse(uri, shared) {
        Ok(query) => query,
        Err(diagnostics) => return outcome(StatusCode::BAD_REQUEST, &diagnostics),
    };
    let matches: Vec<Value> = {
        let resources = shared
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        resources
            .iter()
            .filter(|r| resource_type(r) == Some(ty))
            .filter(|r| ignore_params || matches_params(r, &query.params))
            .map(|r| only_elements(r, &query.params))
            .collect()
    };
    let next_path = format!("{}/{ty}", shared.next_base());
    searchset(shared, uri, matches, &query, &next_path)
}

/// `GET {base}/Patient/{id}/$everything`.
fn everything(shared: &Shared, uri: &Uri, id: &str) -> Response {
    let query = match SearchQuery::parse(uri, shared) {
        Ok(query) => query,
        Err(diagnostics) => return outcome(StatusCode::BAD_REQUEST, &diagnostics),
    };
    let reference = format!("Patient/{id}");
    let matches: Vec<Value> = {
        let resources = shared
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(patient) = resources
            .iter()
            .find(|r| resource_type(r) == Some("Patient") && resource_id(r) == Some(id))
        else {
            return not_found(&format!("{reference} is not known"));
        };
        std::iter::once(patient)
            .chain(
                resources
                    .iter()
                    .filter(|r| references_patient(r, &reference)),
            )
            .cloned()
            .collect()
    };
    let next_path = format!("{}/Patient/{id}/$everything", shared.next_base());
    searchset(shared, uri, matches, &query, &next_path)
}

/// A decoded search query and the page it asks for.
struct SearchQuery {
    /// Every query parameter, decoded, in order.
    params: Vec<(String, String)>,
    /// Index of the first match on the page (`_offset`, default 0).
    offset: usize,
    /// Page length: `_count` capped at the configured page size.
    count: usize,
}

impl SearchQuery {
    /// Decodes the query of `uri`; a malformed `_offset` or `_count` yields
    /// the diagnostics for a 400.
    fn parse(uri: &Uri, shared: &Shared) -> Result<Self, String> {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let number = |name: &str| -> Result<Option<usize>, String> {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("{name} must be a non-negative integer, got {v:?}"))
                })
                .transpose()
        };
        let configured = shared.page_size.load(Ordering::Relaxed).max(1);
        let offset = number("_offset")?.unwrap_or(0);
        let count = number("_count")?.map_or(configured, |c| c.min(configured));
        Ok(Self {
            params,
            offset,
            count,
        })
    }
}

/// Builds one page of a searchset Bundle over `matches`.
fn searchset(
    shared: &Shared,
    uri: &Uri,
    matches: Vec<Value>,
    query: &SearchQuery,
    next_path: &str,
) -> Response {
    let total = matches.len();
    let end = query.offset.saturating_add(query.count).min(total);
    let entries: Vec<Value> = matches
        .into_iter()
        .skip(query.offset)
        .take(query.count)
        .map(|resource| {
            let mut entry = serde_json::Map::new();
            if let (Some(ty), Some(id)) = (resource_type(&resource), resource_id(&resource)) {
                entry.insert(
                    "fullUrl".to_owned(),
                    Value::from(format!("{}/{ty}/{id}", shared.base_url)),
                );
            }
            entry.insert("resource".to_owned(), resource);
            entry.insert("search".to_owned(), json!({"mode": "match"}));
            Value::Object(entry)
        })
        .collect();

    // `uri` is the path below the base's name (`/fhir/...`): the link names the base.
    let below = path_and_query(uri);
    let self_url = format!(
        "{}{}",
        shared.base_url,
        below.strip_prefix("/fhir").unwrap_or(below)
    );
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if query.count > 0 && end < total {
        let mut next_query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query
            .params
            .iter()
            .filter(|(k, _)| k != "_offset" && k != "_count")
        {
            next_query.append_pair(k, v);
        }
        next_query.append_pair("_count", &query.count.to_string());
        next_query.append_pair("_offset", &end.to_string());
        links.push(json!({
            "relation": "next",
            "url": format!("{next_path}?{}", next_query.finish()),
        }));
    }

    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    });
    fhir_response(StatusCode::OK, bundle.to_string())
}

/// Whether `resource` satisfies every supported filter in `params`:
/// repeated parameters must all match, and one of a parameter's
/// comma-separated alternatives must match. Unsupported parameters are
/// ignored.
fn matches_params(resource: &Value, params: &[(String, String)]) -> bool {
    params.iter().all(|(name, value)| {
        let mut alternatives = value.split(',');
        match name.as_str() {
            "_id" => alternatives.any(|id| resource_id(resource) == Some(id)),
            "identifier" => alternatives.any(|token| has_identifier(resource, token)),
            "patient" | "subject" => alternatives.any(|target| {
                let reference = if target.contains('/') {
                    target.to_owned()
                } else {
                    format!("Patient/{target}")
                };
                references_patient(resource, &reference)
            }),
            _ => true,
        }
    })
}

/// The resource with only the elements `_elements` names (and `resourceType`, `id` and
/// `meta`), or the whole resource when the search has no `_elements`.
fn only_elements(resource: &Value, params: &[(String, String)]) -> Value {
    let Some((_, wanted)) = params.iter().rev().find(|(k, _)| k == "_elements") else {
        return resource.clone();
    };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let Some(object) = resource.as_object() else {
        return resource.clone();
    };
    Value::Object(
        object
            .iter()
            .filter(|(k, _)| {
                matches!(k.as_str(), "resourceType" | "id" | "meta") || wanted.contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Token match of `identifier` against `system|value`, `|value`, `system|`
/// or a bare `value`.
fn has_identifier(resource: &Value, token: &str) -> bool {
    let Some(identifiers) = resource.get("identifier").and_then(Value::as_array) else {
        return false;
    };
    identifiers.iter().any(|identifier| {
        let system = identifier.get("system").and_then(Value::as_str);
        let value = identifier.get("value").and_then(Value::as_str);
        match token.split_once('|') {
            None => value == Some(token),
            Some(("", want_value)) => system.is_none() && value == Some(want_value),
            Some((want_system, "")) => system == Some(want_system),
            Some((want_system, want_value)) => {
                system == Some(want_system) && value == Some(want_value)
            }
        }
    })
}

/// Whether `subject.reference` or `patient.reference` equals `reference`.
fn references_patient(resource: &Value, reference: &str) -> bool {
    ["subject", "patient"].iter().any(|field| {
        resource
            .get(field)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
            == Some(reference)
    })
}

/// The path and query of a request URI, e.g. `/fhir/Patient?_id=p1`.
/// `POST /fhir/{Type}` and `PUT /fhir/{Type}/{id}`, versioned, honouring `If-Match`.
fn write(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Some(status) = *lock(&shared.refuse_writes) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        return outcome(
            status,
            "the fake upstream refuses this write: its business rules say no",
        );
    }
    let Some(rest) = uri.path().strip_prefix("/fhir/") else {
        return not_found("no FHIR endpoint here");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let Ok(mut resource) = serde_json::from_slice::<Value>(body) else {
        return outcome(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let mut resources = shared
        .resources
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if let (Some(condition), "POST", [rtype]) = (
        headers.get("if-none-exist").and_then(|v| v.to_str().ok()),
        method.as_str(),
        segments.as_slice(),
    ) {
        // A conditional create: one match is 200 with it and nothing written; more is 412.
        let params: Vec<(String, String)> = form_urlencoded::parse(condition.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let found: Vec<&Value> = resources
            .iter()
            .filter(|r| resource_type_of(r) == Some(*rtype) && matches_params(r, &params))
            .collect();
        match found.as_slice() {
            [] => {}
            [one] => {
                let mut response = fhir_response(StatusCode::OK, one.to_string());
                let version = one
                    .pointer("/meta/versionId")
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
                    response.headers_mut().insert(http::header::ETAG, v);
                }
                return response;
            }
            _ => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "more than one resource matches If-None-Exist",
                );
            }
        }
    }
    let (rtype, id, version) = match (method.as_str(), segments.as_slice()) {
        ("POST", [rtype]) => {
            let n = resources.len() + 1;
            ((*rtype).to_owned(), format!("w{n}"), 1)
        }
        ("PUT", [rtype, id]) => {
            let current = resources.iter().find(|r| {
                resource_type_of(r) == Some(*rtype)
                    && r.get("id").and_then(Value::as_str) == Some(*id)
            });
            let Some(current) = current else {
                return not_found("no such resource to update");
            };
            let version: u64 = current
                .pointer("/meta/versionId")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let expected = format!("W/\"{version}\"");
            match headers
                .get(http::header::IF_MATCH)
                .and_then(|v| v.to_str().ok())
            {
                Some(tag) if tag == expected => {}
                Some(_) => return outcome(StatusCode::PRECONDITION_FAILED, "version conflict"),
                None => {}
            }
            if resource.get("id").and_then(Value::as_str) != Some(*id) {
                return outcome(StatusCode::BAD_REQUEST, "the body's id is not the URL's");
            }
            ((*rtype).to_owned(), (*id).to_owned(), version + 1)
        }
        _ => {
            return outcome(
                StatusCode::METHOD_NOT_ALLOWED,
                "not a write the fake upstream takes",
            );
        }
    };
    if resource_type_of(&resource) != Some(rtype.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "the body's resourceType is not the URL's",
        );
    }
    resource["id"] = Value::String(id.clone());
    // Like a real server, the tags and labels sent are kept; the version is the server's.
    let mut meta = json!({"versionId": version.to_string(), "lastUpdated": "2026-12-01T10:00:00Z"});
    for kept in ["tag", "security"] {
        if let Some(v) = resource.pointer(&format!("/meta/{kept}")) {
            meta[kept] = v.clone();
        }
    }
    resource["meta"] = meta;
    let same = |r: &Value| {
        resource_type_of(r) == Some(rtype.as_str())
            && r.get("id").and_then(Value::as_str) == Some(id.as_str())
    };
    match resources.iter().position(same) {
        Some(i) => resources[i] = resource.clone(),
        None => resources.push(resource.clone()),
    }
    let status = if method == Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = fhir_response(status, resource.to_string());
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        response.headers_mut().insert(http::header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}/{rtype}/{id}/_history/{version}",
        shared.base_url
    )) {
        response.headers_mut().insert(http::header::LOCATION, v);
    }
    response
}

fn resource_type_of(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query()
        .map_or_else(|| uri.path(), PathAndQuery::as_str)
}

fn resource_type(resource: &Value) -> Option<&str> {
    resource.get("resourceType").and_then(Value::as_str)
}

fn resource_id(resource: &Value) -> Option<&str> {
    resource.get("id").and_then(Value::as_str)
}

fn is_everything(segment: &str) -> bool {
    segment == "$everything" || segment.eq_ignore_ascii_case("%24everything")
}

/// A type is known if it is an R4 resource type or appears in the data set.
fn is_known_type(shared: &Shared, ty: &str) -> bool {
    R4_RESOURCE_TYPES.contains(&ty)
        || shared
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|r| resource_type(r) == Some(ty))
}

/// A minimal `CapabilityStatement` listing the types present in the data set.
fn capability_statement(shared: &Shared) -> Value {
    let types: BTreeSet<String> = shared
        .resources
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|r| resource_type(r).map(str::to_owned))
        .collect();
    let resources: Vec<Value> = types
        .iter()
        .map(|ty| {
            json!({
                "type": ty,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "software": {"name": "Concord test fake upstream"},
        "implementation": {"description": "fake upstream", "url": shared.base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    })
}

/// A response with the FHIR JSON content type.
fn fhir_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// An `OperationOutcome` with an issue code fitting `status`.
fn outcome(status: StatusCode, diagnostics: &str) -> Response {
    let code = match status.as_u16() {
        400 | 422 => "invalid",
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 => "not-supported",
        408 | 504 => "timeout",
        429 => "throttled",
        500..=599 => "exception",
        _ => "processing",
    };
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    });
    fhir_response(status, body.to_string())
}

fn not_found(diagnostics: &str) -> Response {
    outcome(StatusCode::NOT_FOUND, diagnostics)
}

/// The answer to requests released because the server is stopping.
fn shutting_down() -> Response {
    outcome(
        StatusCode::SERVICE_UNAVAILABLE,
        "fake upstream is shutting down",
    )
}

/// Every resource type defined by FHIR R4 (4.0.1).
const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use super::{FHIR_JSON, GARBAGE_BODY, Mode, Upstream, Upstreams};

    /// Patients `p1` and `p2`; five Observations about `p1` and one about
    /// `p2` (via `subject`); one `AllergyIntolerance` about `p1` (via
    /// `patient`).
    fn fixture() -> Vec<Value> {
        let mut resources = vec![
            json!({
                "resourceType": "Patient",
                "id": "p1",
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
                    {"system": "urn:oid:local", "value": "MRN-1"},
                ],
            }),
            json!({
                "resourceType": "Patient",
                "id": "p2",
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017"},
                ],
            }),
            json!({
                "resourceType": "Observation",
                "id": "o-p2",
                "status": "final",
                "subject": {"reference": "Patient/p2"},
            }),
            json!({
                "resourceType": "AllergyIntolerance",
                "id": "a-p1",
                "patient": {"reference": "Patient/p1"},
            }),
        ];
        resources.extend((1..=5).map(|i| {
            json!({
                "resourceType": "Observation",
                "id": format!("o{i}-p1"),
                "status": "final",
                "subject": {"reference": "Patient/p1"},
            })
        }));
        resources
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("build a reqwest client")
    }

    /// GETs `url`, checks the FHIR content type and returns status and JSON.
    async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
        let response = client
            .get(url)
            .header("accept", FHIR_JSON)
            .send()
            .await
            .expect("send request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(
            content_type.as_deref(),
            Some(FHIR_JSON),
            "content type of {url}"
        );
        let body = response.bytes().await.expect("read body");
        let json = serde_json::from_slice(&body).expect("body is JSON");
        (status, json)
    }

    /// The `resourceType/id` of every entry of a Bundle.
    fn entry_ids(bundle: &Value) -> Vec<String> {
        bundle["entry"]
            .as_array()
            .expect("entry array")
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().expect("type"),
                    e["resource"]["id"].as_str().expect("id")
                )
            })
            .collect()
    }

    fn next_link(bundle: &Value) -> Option<String> {
        bundle["link"]
            .as_array()
            .expect("link array")
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().expect("next url").to_owned())
    }

    #[tokio::test]
    async fn metadata_read_and_not_found() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/fhir"));
        let client = client();

        let (status, cs) = get_json(&client, &format!("{base}/metadata")).await;
        assert_eq!(status, 200);
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");

        let (status, patient) = get_json(&client, &format!("{base}/Patient/p1")).await;
        assert_eq!(status, 200);
        assert_eq!(patient["id"], "p1");

        for path in [
            "Patient/nope",
            "Unicorn/p1",
            "Unicorn",
            "",
            "Patient/p1/extra/x",
        ] {
            let (status, oo) = get_json(&client, &format!("{base}/{path}")).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(oo["resourceType"], "OperationOutcome", "{path}");
            assert_eq!(oo["issue"][0]["code"], "not-found", "{path}");
        }
        let origin = base.trim_end_matches("/fhir");
        let (status, _) = get_json(&client, &format!("{origin}/elsewhere")).await;
        assert_eq!(status, 404);

        // A known type with no data is an empty searchset, not a 404.
        let (status, empty) = get_json(&client, &format!("{base}/Condition?patient=p1")).await;
        assert_eq!(status, 200);
        assert_eq!(empty["total"], 0);
        assert_eq!(entry_ids(&empty), Vec::<String>::new());
    }

    #[tokio::test]
    async fn identifier_search_finds_the_right_patient() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();

        let cases = [
            (
                "https://fhir.nhs.uk/Id/nhs-number|9000000009",
                vec!["Patient/p1"],
            ),
            (
                "https://fhir.nhs.uk/Id/nhs-number|9000000017",
                vec!["Patient/p2"],
            ),
            ("9000000017", vec!["Patient/p2"]),
            ("urn:oid:local|MRN-1", vec!["Patient/p1"]),
            ("urn:oid:other|9000000009", vec![]),
            ("|9000000009", vec![]),
            ("0000000000", vec![]),
        ];
        for (token, expected) in cases {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("identifier", token)
                .finish();
            let (status, bundle) = get_json(&client, &format!("{base}/Patient?{query}")).await;
            assert_eq!(status, 200, "{token}");
            assert_eq!(bundle["resourceType"], "Bundle");
            assert_eq!(bundle["type"], "searchset");
            assert_eq!(bundle["total"], expected.len(), "{token}");
            assert_eq!(entry_ids(&bundle), expected, "{token}");
            for entry in bundle["entry"].as_array().expect("entries") {
                assert_eq!(entry["search"]["mode"], "match");
                let id = entry["resource"]["id"].as_str().expect("id");
                assert_eq!(entry["fullUrl"], format!("{base}/Patient/{id}"));
            }
        }
    }

    #[tokio::test]
    async fn patient_search_filters_unless_ignoring_params() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();

        for query in ["patient=p2", "subject=Patient%2Fp2", "patient=Patient/p2"] {
            let (_, bundle) = get_json(&client, &format!("{base}/Observation?{query}")).await;
            assert_eq!(entry_ids(&bundle), ["Observation/o-p2"], "{query}");
        }
        let (_, bundle) = get_json(&client, &format!("{base}/AllergyIntolerance?patient=p1")).await;
        assert_eq!(entry_ids(&bundle), ["AllergyIntolerance/a-p1"]);
        // Unsupported parameters are ignored; `_count` above the page size is harmless.
        let (_, bundle) = get_json(
            &client,
            &format!("{base}/Observation?patient=p2&date=ge2020&code=x|y&_count=50"),
        )
        .await;
        assert_eq!(entry_ids(&bundle), ["Observation/o-p2"]);

        upstream.set_mode(Mode::IgnoreSearchParams);
        let (status, bundle) = get_json(&client, &format!("{base}/Observation?patient=p2")).await;
        assert_eq!(status, 200);
        assert_eq!(bundle["total"], 6);
        assert_eq!(entry_ids(&bundle).len(), 6);
        let (_, bundle) = get_json(&client, &format!("{base}/Patient?identifier=9000000009")).await;
        assert_eq!(entry_ids(&bundle), ["Patient/p1", "Patient/p2"]);

        upstream.set_mode(Mode::Normal);
        let (_, bundle) = get_json(&client, &format!("{base}/Observation?patient=p2")).await;
        assert_eq!(entry_ids(&bundle), ["Observation/o-p2"]);
    }

    #[tokio::test]
    async fn paging_follows_next_links_without_overlap() {
        let upstream = Upstream::start(fixture()).await;
        upstream.set_page_size(2);
        let base = upstream.base_url();
        let client = client();

        let mut url = Some(format!("{base}/Observation?subject=Patient/p1"));
        let mut pages = Vec::new();
        while let Some(current) = url.take() {
            let (status, bundle) = get_json(&client, &current).await;
            assert_eq!(status, 200);
            assert_eq!(bundle["total"], 5);
            let self_link = bundle["link"][0].clone();
            assert_eq!(self_link["relation"], "self");
            assert_eq!(self_link["url"], current.as_str());
            url = next_link(&bundle);
            if let Some(next) = &url {
                assert!(next.starts_with(&base), "absolute next link {next}");
            }
            pages.push(entry_ids(&bundle));
            assert!(pages.len() <= 3, "too many pages: {pages:?}");
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let all: Vec<String> = pages.into_iter().flatten().collect();
        let distinct: BTreeSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 5);
        assert_eq!(distinct.len(), 5);
        assert!(all.iter().all(|id| id.ends_with("-p1")));

        // A smaller `_count` wins over the configured page size.
        upstream.set_page_size(1000);
        let (_, bundle) =
            get_json(&client, &format!("{base}/Observation?patient=p1&_count=3")).await;
        assert_eq!(entry_ids(&bundle).len(), 3);
        let next = next_link(&bundle).expect("a next link");
        let (_, bundle) = get_json(&client, &next).await;
        assert_eq!(entry_ids(&bundle).len(), 2);
        assert_eq!(next_link(&bundle), None);

        let (status, oo) = get_json(&client, &format!("{base}/Observation?_count=lots")).await;
        assert_eq!(status, 400);
        assert_eq!(oo["issue"][0]["code"], "invalid");
    }

    /// Each base of [`Upstreams`] links its pages under its own base URL (name included);
    /// `set_next_base` writes the `next` links under another one.
    #[tokio::test]
    async fn many_bases_link_their_pages_under_their_own_base() {
        let upstreams = Upstreams::start(vec![
            ("north".to_owned(), fixture()),
            ("south".to_owned(), fixture()),
        ])
        .await;
        let (north, south) = (&upstreams.bases()[0], &upstreams.bases()[1]);
        north.set_page_size(2);
        let base = north.base_url();
        assert!(base.ends_with("/north/fhir"), "{base}");
        let client = client();
        let mut url = Some(format!("{base}/Observation?subject=Patient/p1"));
        let mut pages = 0;
        while let Some(current) = url.take() {
            let (status, bundle) = get_json(&client, &current).await;
            assert_eq!(status, 200);
            assert_eq!(bundle["link"][0]["relation"], "self");
            assert_eq!(bundle["link"][0]["url"], current.as_str());
            url = next_link(&bundle);
            if let Some(next) = &url {
                assert!(next.starts_with(&format!("{base}/")), "{next}");
            }
            pages += 1;
            assert!(pages <= 3, "too many pages");
        }
        assert_eq!(pages, 3);
        assert_eq!(south.request_count(), 0);

        north.set_next_base(Some(south.base_url()));
        let (_, bundle) = get_json(&client, &format!("{base}/Observation?patient=p1")).await;
        let next = next_link(&bundle).expect("a next link");
        assert!(
            next.starts_with(&format!("{}/Observation?", south.base_url())),
            "{next}"
        );
        north.set_next_base(None);
        let (_, bundle) = get_json(&client, &format!("{base}/Observation?patient=p1")).await;
        assert!(next_link(&bundle).is_some_and(|n| n.starts_with(&format!("{base}/"))));
    }

    #[tokio::test]
    async fn everything_returns_patient_and_referencing_resources() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();

        let (status, bundle) = get_json(&client, &format!("{base}/Patient/p1/$everything")).await;
        assert_eq!(status, 200);
        assert_eq!(bundle["type"], "searchset");
        let ids = entry_ids(&bundle);
        assert_eq!(ids.first().map(String::as_str), Some("Patient/p1"));
        assert_eq!(ids.len(), 7);
        assert!(ids.contains(&"AllergyIntolerance/a-p1".to_owned()));
        assert!(!ids.contains(&"Observation/o-p2".to_owned()));
        assert_eq!(bundle["entry"][1]["fullUrl"], format!("{base}/{}", ids[1]));

        upstream.set_page_size(4);
        let (_, first) = get_json(&client, &format!("{base}/Patient/p1/$everything")).await;
        let next = next_link(&first).expect("a next link");
        let (_, second) = get_json(&client, &next).await;
        let mut paged = entry_ids(&first);
        paged.extend(entry_ids(&second));
        assert_eq!(paged, ids);

        let (status, _) = get_json(&client, &format!("{base}/Patient/nope/$everything")).await;
        assert_eq!(status, 404);

        upstream.add_resource(json!({
            "resourceType": "Condition",
            "id": "c-p1",
            "subject": {"reference": "Patient/p1"},
        }));
        upstream.set_page_size(100);
        let (_, bundle) = get_json(&client, &format!("{base}/Patient/p1/$everything")).await;
        assert_eq!(bundle["total"], 8);
    }

    #[tokio::test]
    async fn failure_modes_answer_as_configured() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();

        upstream.set_mode(Mode::Status(500));
        let (status, oo) = get_json(&client, &format!("{base}/Patient/p1")).await;
        assert_eq!(status, 500);
        assert_eq!(oo["resourceType"], "OperationOutcome");
        upstream.set_mode(Mode::Status(429));
        let (status, oo) = get_json(&client, &format!("{base}/metadata")).await;
        assert_eq!(status, 429);
        assert_eq!(oo["issue"][0]["code"], "throttled");
        upstream.set_mode(Mode::Status(42));
        let (status, _) = get_json(&client, &format!("{base}/metadata")).await;
        assert_eq!(status, 500);

        upstream.set_mode(Mode::Garbage);
        let response = client
            .get(format!("{base}/Patient?identifier=9000000009"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 200);
        let body = response.bytes().await.expect("body");
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        assert_eq!(body, GARBAGE_BODY.as_bytes());

        upstream.set_mode(Mode::WrongJson);
        let (status, json) = get_json(&client, &format!("{base}/Observation?patient=p1")).await;
        assert_eq!(status, 200);
        assert_eq!(json, json!({"hello": 1}));

        upstream.set_mode(Mode::Normal);
        let (status, _) = get_json(&client, &format!("{base}/Patient/p1")).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn hang_times_out_clients_and_is_released_on_drop() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        upstream.set_mode(Mode::Hang);

        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .expect("build a reqwest client");
        let started = Instant::now();
        let error = impatient
            .get(format!("{base}/metadata"))
            .send()
            .await
            .expect_err("a hanging upstream must time out");
        assert!(error.is_timeout(), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(upstream.request_count(), 1);

        // A request hanging while the Upstream is dropped is released promptly.
        let patient = client();
        let hung =
            tokio::spawn(async move { patient.get(format!("{base}/metadata")).send().await });
        while upstream.request_count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        drop(upstream);
        let outcome = hung.await.expect("join the hung request");
        assert!(started.elapsed() < Duration::from_secs(2));
        if let Ok(response) = outcome {
            assert_eq!(response.status().as_u16(), 503);
        }
    }

    #[tokio::test]
    async fn latency_delays_answers() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();

        upstream.set_latency(Duration::from_millis(150));
        let started = Instant::now();
        let (status, _) = get_json(&client, &format!("{base}/metadata")).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(150));

        upstream.set_latency(Duration::ZERO);
        let started = Instant::now();
        get_json(&client, &format!("{base}/metadata")).await;
        assert!(started.elapsed() < Duration::from_millis(150));
    }

    #[tokio::test]
    async fn records_requests_and_accept_header() {
        let upstream = Upstream::start(fixture()).await;
        let base = upstream.base_url();
        let client = client();
        assert_eq!(upstream.request_count(), 0);
        assert_eq!(upstream.last_accept_header(), None);

        get_json(&client, &format!("{base}/Patient?identifier=sys%7C1")).await;
        assert_eq!(upstream.last_accept_header().as_deref(), Some(FHIR_JSON));
        // reqwest sends `Accept: */*` unless told otherwise.
        client
            .get(format!("{base}/nowhere"))
            .send()
            .await
            .expect("send");
        assert_eq!(upstream.last_accept_header().as_deref(), Some("*/*"));
        let response = client
            .delete(format!("{base}/Patient"))
            .header("accept", "application/json")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 405);
        assert_eq!(
            upstream.last_accept_header().as_deref(),
            Some("application/json")
        );

        assert_eq!(upstream.request_count(), 3);
        assert_eq!(
            upstream.requests(),
            [
                "/fhir/Patient?identifier=sys%7C1",
                "/fhir/nowhere",
                "/fhir/Patient"
            ]
        );
        upstream.clear_requests();
        assert_eq!(upstream.request_count(), 0);
        assert_eq!(upstream.last_accept_header(), None);

        // After an orderly shutdown nothing listens any more.
        upstream.shutdown().await;
        assert!(client.get(format!("{base}/metadata")).send().await.is_err());
    }
}
