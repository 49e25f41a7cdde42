//! The OpenID Connect relying party: discovery, the authorization request (code flow with
//! PKCE S256), the code exchange and the ID token's checks.
//!
//! The provider's discovery document and keys are read at the first sign-in, not at start,
//! so a provider that is down never stops the gateway; they are kept for an hour, and the keys
//! are read again (at most once a minute) when a token names a key id not seen yet. The ID
//! token is checked like a bearer token ([`crate::auth::decode_checked`]: the key by `kid`,
//! its one pinned algorithm, `iss`, `aud`, `exp`, `nbf`), then its `nonce` and `azp`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::ConsoleError;
use crate::auth::{AuthError, Expected};

/// Longest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// How long discovery and keys are trusted.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// Least time between two reads of the keys prompted by an unknown key id.
const KEYS_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// What a sign-in needs from the config.
#[derive(Debug, Clone)]
pub(super) struct Client {
    /// The issuer, exactly as configured (without a trailing `/`).
    pub(super) issuer: String,
    /// The client id.
    pub(super) client_id: String,
    /// The client secret; none for a public client.
    pub(super) secret: Option<String>,
    /// Scopes, space separated.
    pub(super) scopes: String,
    /// Where the provider sends the browser back.
    pub(super) redirect_url: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub(super) leeway: u64,
}

/// The provider's endpoints and keys, as last read.
#[derive(Debug)]
struct Known {
    authorization_endpoint: reqwest::Url,
    token_endpoint: reqwest::Url,
    jwks_uri: reqwest::Url,
    /// Where the user's claims are read besides the ID token (NHS CIS2 gives its roles only
    /// there), when the provider has one.
    userinfo_endpoint: Option<reqwest::Url>,
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    read_at: Instant,
    keys_read_at: Instant,
}

/// An OpenID Connect provider and the gateway's registration with it.
#[derive(Debug)]
pub(super) struct Provider {
    client: Client,
    http: reqwest::Client,
    known: tokio::sync::Mutex<Option<Known>>,
}

/// The PKCE S256 challenge of a verifier.
pub(super) fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn provider_error(what: &str, e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::Provider(format!("{what}: {e}"))
}

impl Provider {
    pub(super) fn new(client: Client) -> Result<Provider, ConsoleError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| provider_error("http client", e))?;
        Ok(Provider {
            client,
            http,
            known: tokio::sync::Mutex::new(None),
        })
    }

    /// The URL the browser is sent to, to sign in.
    pub(super) async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, ConsoleError> {
        let mut guard = self.known.lock().await;
        let known = self.refreshed(&mut guard).await?;
        let mut url = known.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", &self.client.redirect_url)
            .append_pair("scope", &self.client.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    /// Exchanges a code for an ID token and checks it; the token's claims, with those of the
    /// provider's UserInfo endpoint added when it has one.
    pub(super) async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        nonce_hash: &str,
    ) -> Result<Map<String, Value>, ConsoleError> {
        let (token_endpoint, userinfo_endpoint) = {
            let mut guard = self.known.lock().await;
            let known = self.refreshed(&mut guard).await?;
            (
                known.token_endpoint.clone(),
                known.userinfo_endpoint.clone(),
            )
        };
        let tokens = self.exchange(token_endpoint, code, verifier).await?;
        let mut claims = self.check(&tokens.id_token).await?;
        let nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if super::sha256_hex(nonce) != nonce_hash {
            return Err(ConsoleError::Nonce);
        }
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(self.client.client_id.as_str())
        {
            return Err(ConsoleError::IdToken(AuthError::WrongAudience));
        }
        if let (Some(endpoint), Some(access_token)) = (userinfo_endpoint, &tokens.access_token) {
            let more = self.userinfo(endpoint, access_token).await?;
            add_userinfo(&mut claims, more)?;
        }
        Ok(claims)
    }

    /// The user's claims from the UserInfo endpoint (OpenID Connect Core 5.3), as JSON.
    async fn userinfo(
        &self,
        endpoint: reqwest::Url,
        access_token: &str,
    ) -> Result<Map<String, Value>, ConsoleError> {
        let answer = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_error("userinfo", e.without_url()))?;
        if !answer.status().is_success() {
            return Err(provider_error("userinfo", answer.status()));
        }
        read_json(answer).await
    }

    async fn exchange(
        &self,
        endpoint: reqwest::Url,
        code: &str,
        verifier: &str,
    ) -> Result<Tokens, ConsoleError> {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            enc(code),
            enc(&self.client.redirect_url),
            enc(verifier)
        );
        let mut request = self.http.post(endpoint);
        match &self.client.secret {
            // RFC 6749 2.3.1: both halves form-encoded before Basic.
            Some(secret) => {
                request = request.basic_auth(enc(&self.client.client_id), Some(enc(secret)));
            }
            None => body.push_str(&format!("&client_id={}", enc(&self.client.client_id))),
        }
        let answer = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| provider_error("token endpoint", e.without_url()))?;
        let status = answer.status();
        let body: Map<String, Value> = read_json(answer).await?;
        if !status.is_success() {
            // The OAuth error code only: its description may repeat what was sent.
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            return Err(ConsoleError::CodeRefused(safe_word(code)));
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| provider_error("token endpoint", "no id_token in the answer"))?;
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Tokens {
            id_token,
            access_token,
        })
    }

    /// The ID token's signature, `iss`, `aud`, `exp` and `nbf`.
    async fn check(&self, token: &str) -> Result<Map<String, Value>, ConsoleError> {
        let (alg, kid) = crate::auth::header_alg_kid(token).map_err(ConsoleError::IdToken)?;
        let mut guard = self.known.lock().await;
        let known = self.refreshed(&mut guard).await?;
        let kid = kid.unwrap_or_default();
        if !known.keys.contains_key(&kid) && known.keys_read_at.elapsed() > KEYS_AGAIN_AFTER {
            known.keys = self.keys(&known.jwks_uri).await?;
            known.keys_read_at = Instant::now();
        }
        let (pinned, key) = match known.keys.get(&kid) {
            Some(found) => found,
            None if known.keys.len() == 1 && kid.is_empty() => known
                .keys
                .values()
                .next()
                .ok_or(ConsoleError::IdToken(AuthError::UnknownKey))?,
            None => return Err(ConsoleError::IdToken(AuthError::UnknownKey)),
        };
        if crate::auth::algorithm(&alg) != Some(*pinned) {
            return Err(ConsoleError::IdToken(AuthError::Algorithm));
        }
        let expected = Expected {
            issuer: &self.client.issuer,
            audience: &self.client.client_id,
            leeway: self.client.leeway,
        };
        crate::auth::decode_checked(token, key, *pinned, &expected).map_err(ConsoleError::IdToken)
    }

    /// The provider's endpoints and keys, read again when missing or old.
    async fn refreshed<'a>(
        &self,
        slot: &'a mut Option<Known>,
    ) -> Result<&'a mut Known, ConsoleError> {
        if slot
            .as_ref()
            .is_none_or(|k| k.read_at.elapsed() > CACHE_FOR)
        {
            *slot = Some(self.discover().await?);
        }
        slot.as_mut()
            .ok_or_else(|| provider_error("discovery", "nothing read"))
    }

    async fn discover(&self) -> Result<Known, ConsoleError> {
        let url = format!("{}/.well-known/openid-configuration", self.client.issuer);
        let answer = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_error("discovery", e.without_url()))?;
        if !answer.status().is_success() {
            return Err(provider_error("discovery", answer.status()));
        }
        let doc: Map<String, Value> = read_json(answer).await?;
        let field = |name: &str| -> Result<reqwest::Url, ConsoleError> {
            let text = doc.get(name).and_then(Value::as_str).unwrap_or_default();
            let url = reqwest::Url::parse(text)
                .map_err(|_| provider_error("discovery", format!("`{name}` is not a URL")))?;
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(provider_error(
                    "discovery",
                    format!("`{name}` is not https"),
                ));
            }
            Ok(url)
        };
        if doc.get("issuer").and_then(Value::as_str) != Some(self.client.issuer.as_str()) {
            return Err(provider_error(
                "discovery",
                "its `issuer` is not the configured issuer",
            ));
        }
        if let Some(methods) = doc.get("code_challenge_methods_supported")
            && !methods
                .as_array()
                .is_some_and(|m| m.iter().any(|v| v == "S256"))
        {
            return Err(provider_error(
                "discovery",
                "the provider does not offer PKCE S256",
            ));
        }
        let jwks_uri = field("jwks_uri")?;
        let userinfo_endpoint = match doc.get("userinfo_endpoint") {
            None | Some(Value::Null) => None,
            Some(_) => Some(field("userinfo_endpoint")?),
        };
        let keys = self.keys(&jwks_uri).await?;
        Ok(Known {
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri,
            userinfo_endpoint,
            keys,
            read_at: Instant::now(),
            keys_read_at: Instant::now(),
        })
    }

    /// The signing keys of the provider's JWKS, each pinned to one algorithm: its `alg`, or
    /// the one its key type implies (RSA: RS256, EC P-256: ES256, Ed25519: EdDSA).
    async fn keys(
        &self,
        uri: &reqwest::Url,
    ) -> Result<HashMap<String, (Algorithm, DecodingKey)>, ConsoleError> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, PublicKeyUse};
        let answer = self
            .http
            .get(uri.clone())
            .send()
            .await
            .map_err(|e| provider_error("keys", e.without_url()))?;
        if !answer.status().is_success() {
            return Err(provider_error("keys", answer.status()));
        }
        let set: jsonwebtoken::jwk::JwkSet = read_json(answer).await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let implied = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Some(Algorithm::ES256)
                }
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    Some(Algorithm::EdDSA)
                }
                _ => None,
            };
            let alg = match jwk.common.key_algorithm {
                Some(a) => crate::auth::algorithm(&a.to_string()),
                None => implied,
            };
            let (Some(alg), Ok(key)) = (alg, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(jwk.common.key_id.clone().unwrap_or_default(), (alg, key));
        }
        Ok(keys)
    }
}

/// What the token endpoint answered.
struct Tokens {
    id_token: String,
    access_token: Option<String>,
}

/// Claims that only the checked ID token may give: UserInfo never supplies or replaces them.
const ID_TOKEN_ONLY: [&str; 9] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "nonce",
    "azp",
    "auth_time",
];

/// Adds the UserInfo answer's claims to the ID token's. The answer must be about the same
/// user (its `sub` is the ID token's, OpenID Connect Core 5.3.2); a claim both give keeps
/// the ID token's value, which is signed.
fn add_userinfo(
    claims: &mut Map<String, Value>,
    more: Map<String, Value>,
) -> Result<(), ConsoleError> {
    let subject = claims.get("sub").and_then(Value::as_str);
    if subject.is_none() || more.get("sub").and_then(Value::as_str) != subject {
        return Err(provider_error(
            "userinfo",
            "its answer is about another user than the ID token",
        ));
    }
    for (name, value) in more {
        if !ID_TOKEN_ONLY.contains(&name.as_str()) && !claims.contains_key(&name) {
            claims.insert(name, value);
        }
    }
    Ok(())
}

/// Reads a JSON answer of at most [`MAX_ANSWER_BYTES`].
async fn read_json<T: serde::de::DeserializeOwned>(
    mut answer: reqwest::Response,
) -> Result<T, ConsoleError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| provider_error("reading an answer", e.without_url()))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(provider_error("reading an answer", "it is too large"));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|_| provider_error("reading an answer", "not JSON"))
}

/// An OAuth error code, kept only if it is a plain word (it reaches a page and the log).
pub(super) fn safe_word(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        code.to_owned()
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            super::challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_plain_error_codes_pass() {
        assert_eq!(super::safe_word("invalid_grant"), "invalid_grant");
        assert_eq!(super::safe_word("<b>x</b>"), "unknown");
        assert_eq!(super::safe_word(""), "unknown");
    }

    fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn userinfo_adds_what_the_id_token_lacks_and_changes_nothing_it_says() {
        let mut id =
            claims(serde_json::json!({"sub": "555", "iss": "https://idp", "name": "Cara"}));
        let more = claims(serde_json::json!({
            "sub": "555", "name": "Someone Else", "iss": "https://elsewhere", "exp": 1,
            "nhsid_nrbac_roles": [{"org_code": "RY4", "role_code": "S8000:G8000:R8003"}]
        }));
        super::add_userinfo(&mut id, more).expect("same user");
        assert_eq!(id["name"], "Cara", "the signed value stands");
        assert_eq!(id["iss"], "https://idp");
        assert!(
            id.get("exp").is_none(),
            "never a validity claim from userinfo"
        );
        assert_eq!(id["nhsid_nrbac_roles"][0]["org_code"], "RY4");
    }

    #[test]
    fn userinfo_about_another_user_is_refused() {
        for other in [
            serde_json::json!({"sub": "666", "role": "ig-lead"}),
            serde_json::json!({"role": "ig-lead"}),
            serde_json::json!({"sub": 555, "role": "ig-lead"}),
        ] {
            let mut id = claims(serde_json::json!({"sub": "555"}));
            let refused = super::add_userinfo(&mut id, claims(other.clone()));
            assert!(
                matches!(refused, Err(super::ConsoleError::Provider(_))),
                "{other}"
            );
            assert!(id.get("role").is_none(), "{other}: nothing added");
        }
    }
}
