//! OAuth 2.0 client credentials with a signed JWT assertion (RFC 7523, the SMART Backend
//! Services pattern), for upstream sources that want a bearer token.
//!
//! The gateway signs a short-lived assertion (`iss` = `sub` = client id, `aud` = token URL, a
//! fresh `jti`, five minutes to live) with its own private key and exchanges it at the token
//! endpoint for an access token. The token is kept until shortly before it expires (a fifth
//! of its life, at most a minute, early), so one token serves many requests; one request at a
//! time fetches a new one while the others wait for it. When a source answers 401 the token is
//! dropped and fetched again once.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{SetupError, SourceError};
use crate::config::OAuthConfig;

/// The assertion type of RFC 7523.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of an assertion (SMART asks for at most five minutes).
const ASSERTION_TTL_SECS: i64 = 300;
/// Lifetime assumed when the token response gives no `expires_in`.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Longest a token is kept, whatever the server says.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Gets and caches access tokens for one source.
pub struct TokenClient {
    config: OAuthConfig,
    algorithm: Algorithm,
    key: EncodingKey,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, never the token.
        f.debug_struct("TokenClient")
            .field("token_url", &self.config.token_url)
            .field("client_id", &self.config.client_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
}

impl TokenClient {
    /// Reads the signing key; errors name the source and the file.
    pub fn new(source_id: &str, config: OAuthConfig) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError::Client {
            source_id: source_id.to_owned(),
            message,
        };
        let pem = std::fs::read(&config.key_file).map_err(|e| {
            fail(format!(
                "cannot read oauth.key_file `{}`: {e}",
                config.key_file.display()
            ))
        })?;
        let (algorithm, key) = match config.algorithm.as_str() {
            "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
            "RS384" => (Algorithm::RS384, EncodingKey::from_rsa_pem(&pem)),
            "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
            "ES384" => (Algorithm::ES384, EncodingKey::from_ec_pem(&pem)),
            "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
            other => return Err(fail(format!("oauth.algorithm `{other}` is not supported"))),
        };
        let key = key.map_err(|e| {
            fail(format!(
                "oauth.key_file `{}` is not a {} private key: {e}",
                config.key_file.display(),
                config.algorithm
            ))
        })?;
        let client = Self {
            config,
            algorithm,
            key,
            cached: Mutex::new(None),
        };
        // Sign once now, so a key that cannot sign stops start-up rather than every request.
        client.assertion().map_err(|e| fail(e.to_string()))?;
        Ok(client)
    }

    /// A signed client assertion for the token endpoint.
    fn assertion(&self) -> Result<String, SourceError> {
        let now = jiff::Timestamp::now().as_second();
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": self.config.token_url,
            "iat": now,
            "exp": now + ASSERTION_TTL_SECS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".into());
        header.kid.clone_from(&self.config.kid);
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SourceError::Token(format!("cannot sign the client assertion: {e}")))
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(http).await?;
        let early = (lifetime / 5).min(Duration::from_secs(60));
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - early,
        });
        Ok(token)
    }

    /// Forgets `token` (the source refused it), unless a newer one has replaced it already.
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(String, Duration), SourceError> {
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", self.config.scope.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Timeout
            } else {
                SourceError::Token(format!("token endpoint: {}", e.without_url()))
            }
        };
        let mut response = http
            .post(&self.config.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SourceError::Token(
                    "token endpoint answered too much".into(),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // The OAuth error code (e.g. `invalid_client`) helps the operator; the free-text
            // description is not passed on.
            let code = serde_json::from_slice::<TokenErrorResponse>(&bytes)
                .ok()
                .map(|e| e.error)
                .filter(|c| {
                    !c.is_empty()
                        && c.len() <= 64
                        && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
            return Err(SourceError::Token(match code {
                Some(code) => format!("token endpoint answered HTTP {} ({code})", status.as_u16()),
                None => format!("token endpoint answered HTTP {}", status.as_u16()),
            }));
        }
        let response: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| SourceError::Token("token endpoint answered no access_token".into()))?;
        if response
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(SourceError::Token(
                "token endpoint answered a token that is not a bearer token".into(),
            ));
        }
        let token = response.access_token;
        if token.is_empty() || token.len() > 8192 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SourceError::Token(
                "token endpoint answered an unusable access_token".into(),
            ));
        }
        let lifetime = match response.expires_in {
            Some(secs) if secs.is_finite() && secs > 0.0 => {
                Duration::from_secs_f64(secs.min(MAX_TOKEN_TTL.as_secs_f64()))
            }
            Some(_) => {
                return Err(SourceError::Token(
                    "token endpoint answered an expires_in that is not positive".into(),
                ));
            }
            None => DEFAULT_TOKEN_TTL,
        };
        Ok((token, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::http::StatusCode;
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn config(dir: &Path, algorithm: &str, token_url: &str) -> (OAuthConfig, rcgen::KeyPair) {
        let alg = match algorithm {
            "ES256" => &rcgen::PKCS_ECDSA_P256_SHA256,
            "EdDSA" => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let key_file = dir.join("client.key");
        std::fs::write(&key_file, key.serialize_pem()).expect("write");
        let config = OAuthConfig {
            token_url: token_url.into(),
            client_id: "concord-gw".into(),
            key_file,
            algorithm: algorithm.into(),
            kid: Some("k-2026".into()),
            scope: "system/*.rs".into(),
        };
        (config, key)
    }

    #[test]
    fn the_assertion_is_what_smart_backend_services_asks_for() {
        let dir = tempfile::tempdir().expect("dir");
        let (config, key) = config(dir.path(), "ES384", "https://auth.example/token");
        let client = TokenClient::new("gp", config).expect("client");
        let assertion = client.assertion().expect("signed");
        let header = jsonwebtoken::decode_header(&assertion).expect("header");
        assert_eq!(header.alg, Algorithm::ES384);
        assert_eq!(header.kid.as_deref(), Some("k-2026"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let mut validation = Validation::new(Algorithm::ES384);
        validation.set_audience(&["https://auth.example/token"]);
        validation.set_issuer(&["concord-gw"]);
        validation.sub = Some("concord-gw".into());
        let decoding = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).expect("public");
        let claims = jsonwebtoken::decode::<serde_json::Value>(&assertion, &decoding, &validation)
            .expect("verifies")
            .claims;
        let exp = claims["exp"].as_i64().expect("exp");
        let iat = claims["iat"].as_i64().expect("iat");
        assert!(exp - iat <= 300, "{claims}");
        let second = client.assertion().expect("signed");
        let jti = |t: &str| {
            jsonwebtoken::decode::<serde_json::Value>(t, &decoding, &validation)
                .expect("verifies")
                .claims["jti"]
                .clone()
        };
        assert_ne!(
            jti(&assertion),
            jti(&second),
            "every assertion has its own jti"
        );
    }

    #[test]
    fn a_key_that_does_not_fit_the_algorithm_stops_start_up() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut config, _) = config(dir.path(), "EdDSA", "https://auth.example/token");
        config.algorithm = "RS384".into();
        let e = TokenClient::new("gp", config.clone()).expect_err("an Ed25519 key is not RSA");
        assert!(e.to_string().contains("client.key"), "{e}");
        assert!(e.to_string().contains("source `gp`"), "{e}");
        config.key_file = dir.path().join("missing.key");
        let e = TokenClient::new("gp", config).expect_err("missing file");
        assert!(e.to_string().contains("missing.key"), "{e}");
    }

    /// A token endpoint on 127.0.0.1 that answers every request with `status` and `body`.
    async fn endpoint(status: StatusCode, body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || async move { (status, body) }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn unusable_token_responses_are_errors_that_say_why() {
        let cases = [
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client","error_description":"key 9 unknown for Dr X"}"#,
                "HTTP 401 (invalid_client)",
            ),
            (
                StatusCode::BAD_REQUEST,
                r#"{"error":"<script>"}"#,
                "HTTP 400",
            ),
            (
                StatusCode::OK,
                r#"{"token_type":"bearer"}"#,
                "no access_token",
            ),
            (
                StatusCode::OK,
                r#"{"access_token":"abc","token_type":"mac"}"#,
                "not a bearer token",
            ),
            (
                StatusCode::OK,
                r#"{"access_token":"a b","token_type":"bearer"}"#,
                "unusable access_token",
            ),
            (
                StatusCode::OK,
                r#"{"access_token":"abc","expires_in":-5}"#,
                "not positive",
            ),
            (StatusCode::OK, "<html>", "no access_token"),
        ];
        let dir = tempfile::tempdir().expect("dir");
        let http = reqwest::Client::new();
        for (status, body, expected) in cases {
            let url = endpoint(status, body).await;
            let (config, _) = config(dir.path(), "ES256", &url);
            let client = TokenClient::new("gp", config).expect("client");
            let e = client.token(&http).await.expect_err(body);
            let text = e.to_string();
            assert!(text.contains(expected), "{body}: {text}");
            assert!(!text.contains("Dr X") && !text.contains("script"), "{text}");
        }
    }

    #[tokio::test]
    async fn a_token_is_kept_until_shortly_before_it_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let http = reqwest::Client::new();
        let url = endpoint(
            StatusCode::OK,
            r#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}"#,
        )
        .await;
        let (config, _) = config(dir.path(), "ES256", &url);
        let client = TokenClient::new("gp", config).expect("client");
        assert_eq!(client.token(&http).await.expect("token"), "tok-1");
        let cached = client.cached.lock().await;
        let left = cached.as_ref().expect("cached").refresh_at - Instant::now();
        // A minute early at most: renewed after 59 minutes, not before.
        assert!(
            left > Duration::from_secs(3500) && left <= Duration::from_secs(3540),
            "{left:?}"
        );
        drop(cached);
        client.invalidate("another token").await;
        assert!(
            client.cached.lock().await.is_some(),
            "a stale invalidation keeps the new token"
        );
        client.invalidate("tok-1").await;
        assert!(client.cached.lock().await.is_none());
    }
}
