//! A real OpenID Connect provider for the console's tests, on 127.0.0.1 over HTTP, on the
//! same stack as the test FHIR servers (axum):
//!
//! * `GET /.well-known/openid-configuration`: the discovery document;
//! * `GET /jwks`: its one signing key (Ed25519, no `alg`, as many providers publish it);
//! * `GET /authorize`: checks the client, redirect URI and PKCE S256 challenge, signs the
//!   configured user in at once and redirects back with a one-time `code` and the `state`;
//! * `POST /token`: checks the client's secret (HTTP Basic), the code (once only), the
//!   redirect URI and the PKCE verifier, and answers an ID token for the user with the
//!   authorization request's `nonce`.
//!
//! * `GET /userinfo`: the user's claims, for the access token it issued with the ID token.
//!
//! Switches: [`OidcProvider::set_user`] (the claims of whoever signs in next) and
//! [`OidcProvider::set_flaw`] (a flaw in the ID tokens it issues: a broken signature, a
//! wrong nonce, a wrong audience, an expired token). It counts token requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The client the provider knows.
pub(crate) const CLIENT_ID: &str = "concord-console";
/// Its secret.
pub(crate) const CLIENT_SECRET: &str = "s3cret&with=odd chars";

/// A flaw in the ID tokens the provider issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// None: a good token.
    None,
    /// The payload is changed after signing.
    Tampered,
    /// The nonce is not the one asked for.
    WrongNonce,
    /// The audience is another client.
    WrongAudience,
    /// It expired an hour ago.
    Expired,
}

/// Where the user's claims are given, and how UserInfo answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Userinfo {
    /// In the ID token and, the same, from UserInfo.
    Both,
    /// From UserInfo only, as NHS CIS2 gives its roles: the ID token names only the subject.
    Only,
    /// From UserInfo only, but about another subject than the ID token's.
    OtherSubject,
    /// UserInfo fails (500); the ID token names only the subject.
    Fails,
}

struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

struct Shared {
    issuer: String,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
    user: Mutex<Map<String, Value>>,
    flaw: Mutex<Flaw>,
    userinfo: Mutex<Userinfo>,
    /// The user's claims by the access token issued with them.
    access: Mutex<HashMap<String, Map<String, Value>>>,
    grants: Mutex<HashMap<String, Grant>>,
    token_requests: AtomicUsize,
}

/// A running provider; it stops when dropped.
pub(crate) struct OidcProvider {
    /// The issuer URL (`http://{host}:{port}`).
    pub(crate) issuer: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An IG lead at the GP, the default user.
pub(crate) fn ig_lead() -> Map<String, Value> {
    let mut user = Map::new();
    user.insert("sub".into(), "ig-lead-1".into());
    user.insert("name".into(), "Isla Governance".into());
    user.insert("org".into(), "A81001".into());
    user.insert("role".into(), "ig-lead".into());
    user
}

impl OidcProvider {
    /// Starts a provider on 127.0.0.1, named by `host` in its issuer (`127.0.0.1`, or
    /// `localhost` to be another site than a gateway on 127.0.0.1 in a browser).
    pub(crate) async fn start(host: &str) -> OidcProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let port = listener.local_addr().expect("addr").port();
        let issuer = format!("http://{host}:{port}");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes())
            .expect("signing key");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": "idp-1",
            "x": b64(pair.public_key_raw())});
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            key,
            jwk,
            user: Mutex::new(ig_lead()),
            flaw: Mutex::new(Flaw::None),
            userinfo: Mutex::new(Userinfo::Both),
            access: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OidcProvider {
            issuer,
            shared,
            server,
        }
    }

    /// The claims of whoever signs in next.
    pub(crate) fn set_user(&self, user: Map<String, Value>) {
        *lock(&self.shared.user) = user;
    }

    /// The flaw in the ID tokens issued from now on.
    pub(crate) fn set_flaw(&self, flaw: Flaw) {
        *lock(&self.shared.flaw) = flaw;
    }

    /// Where the user's claims are given from now on.
    pub(crate) fn set_userinfo(&self, userinfo: Userinfo) {
        *lock(&self.shared.userinfo) = userinfo;
    }

    /// How many token requests it has answered (or refused).
    pub(crate) fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    let i = &s.issuer;
    json_answer(
        StatusCode::OK,
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/jwks"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }),
    )
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    json_answer(StatusCode::OK, json!({"keys": [s.jwk]})).into_response()
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    json_answer(
        status,
        json!({"error": code, "error_description": "see the test"}),
    )
}

async fn authorize(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let q: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    let scopes = field("scope");
    if field("client_id") != CLIENT_ID
        || field("response_type") != "code"
        || field("code_challenge_method") != "S256"
        || field("code_challenge").len() != 43
        || !scopes.split(' ').any(|x| x == "openid")
        || field("state").is_empty()
        || field("nonce").is_empty()
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    lock(&s.grants).insert(
        code.clone(),
        Grant {
            redirect_uri: field("redirect_uri"),
            challenge: field("code_challenge"),
            nonce: field("nonce"),
        },
    );
    let mut back = reqwest::Url::parse(&field("redirect_uri")).expect("redirect_uri is a URL");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"));
    Redirect::to(back.as_str()).into_response()
}

fn client_authenticated(headers: &HeaderMap) -> bool {
    let enc = |x: &str| form_urlencoded::byte_serialize(x.as_bytes()).collect::<String>();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(CLIENT_ID),
            enc(CLIENT_SECRET)
        ))
    );
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    if !client_authenticated(&headers) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let Some(grant) = lock(&s.grants).remove(&field("code")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let verifier = field("code_verifier");
    let challenge =
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    if field("grant_type") != "authorization_code"
        || field("redirect_uri") != grant.redirect_uri
        || challenge != grant.challenge
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let id_token = id_token(&s, &grant.nonce);
    let access_token = uuid::Uuid::new_v4().simple().to_string();
    let user = lock(&s.user).clone();
    lock(&s.access).insert(access_token.clone(), user);
    json_answer(
        StatusCode::OK,
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
        "id_token": id_token}),
    )
    .into_response()
}

async fn userinfo(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(mut user) = lock(&s.access).get(token).cloned() else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token");
    };
    match *lock(&s.userinfo) {
        Userinfo::Fails => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        Userinfo::OtherSubject => {
            user.insert("sub".into(), "someone-else".into());
        }
        Userinfo::Both | Userinfo::Only => {}
    }
    json_answer(StatusCode::OK, Value::Object(user))
}

fn id_token(s: &Shared, nonce: &str) -> String {
    let flaw = *lock(&s.flaw);
    let now = jiff::Timestamp::now().as_second();
    let mut claims = lock(&s.user).clone();
    if *lock(&s.userinfo) != Userinfo::Both {
        claims.retain(|name, _| name == "sub");
    }
    claims.insert("iss".into(), s.issuer.clone().into());
    claims.insert("aud".into(), CLIENT_ID.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + 300).into());
    claims.insert("nonce".into(), nonce.into());
    match flaw {
        Flaw::WrongNonce => {
            claims.insert("nonce".into(), "another-sign-in".into());
        }
        Flaw::WrongAudience => {
            claims.insert("aud".into(), "another-client".into());
        }
        Flaw::Expired => {
            claims.insert("iat".into(), (now - 7200).into());
            claims.insert("exp".into(), (now - 3600).into());
        }
        Flaw::None | Flaw::Tampered => {}
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("idp-1".into());
    let token = jsonwebtoken::encode(&header, &claims, &s.key).expect("sign");
    if flaw != Flaw::Tampered {
        return token;
    }
    // The same signature over a payload that now says the user is someone else.
    let parts: Vec<&str> = token.split('.').collect();
    claims.insert("sub".into(), "someone-else".into());
    let payload = b64(&serde_json::to_vec(&claims).expect("json"));
    format!("{}.{payload}.{}", parts[0], parts[2])
}
