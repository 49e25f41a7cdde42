//! Who is calling: bearer JWTs verified against configured public keys, turned into a
//! [`Principal`] with SMART scopes.
//!
//! Keys are selected by `kid` and each is pinned to one algorithm (RS256, ES256 or EdDSA);
//! `none` and HMAC algorithms are never accepted, so a token signed with a public key's bytes
//! as an HMAC secret (algorithm confusion) fails. `iss`, `aud`, `exp` and `nbf` are checked with
//! a small leeway. Errors say what is wrong with the token but never repeat it.

pub mod scopes;

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, ClaimNames};
use crate::fhir::NhsNumber;
use scopes::{Context, Interaction, Scopes};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The demo's public key: `serve` warns loudly when it is trusted.
pub const DEMO_PUBLIC_KEY_PEM: &str =
    include_str!("../examples/demo/keys/demo-signing-key.pub.pem");

/// Why a request's credentials were refused. The text is safe to send to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// An `Authorization` header with another scheme.
    #[error("the Authorization scheme must be Bearer")]
    WrongScheme,
    /// Not a JWT.
    #[error("the token is malformed")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than 8 KiB")]
    TooLarge,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Wrong `iss`.
    #[error("the token was issued by an issuer this gateway does not trust")]
    WrongIssuer,
    /// Wrong `aud`.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// `kid` names no configured key.
    #[error("the token's key id is not known")]
    UnknownKey,
    /// The algorithm is not the one pinned for the key (or is `none`, or HMAC).
    #[error("the token's algorithm is not allowed for its key")]
    Algorithm,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    Signature,
    /// A claim the gateway needs is missing or of the wrong kind.
    #[error("the token's `{0}` claim is missing or invalid")]
    Claim(String),
}

/// Why the verifier could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file `{path}`: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key is not a key of its algorithm.
    #[error("key `{kid}`: {message}")]
    Invalid {
        /// The key id.
        kid: String,
        /// What is wrong.
        message: String,
    },
}

/// A patient token's person: who the record is about, and who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientContext {
    /// The person whose record this token opens.
    pub nhs: NhsNumber,
    /// For a carer acting for the person: their relationship (e.g. `SON`).
    pub acting_for_relationship: Option<String>,
}

/// The certificate a caller presented over mutual TLS, verified against the configured CAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's distinguished name, e.g. `CN=ehr.riverside.example, O=Riverside GP`.
    pub subject: String,
    /// SHA-256 of the certificate (DER), lower-case hex.
    pub sha256: String,
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user id (`sub`).
    pub user: String,
    /// Who issued the token (`iss`): with `user`, what names the principal uniquely.
    pub issuer: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Organisation (ODS code).
    pub org: Option<String>,
    /// Role, e.g. `clinician`, `social-worker`, `patient`.
    pub role: Option<String>,
    /// HL7 v3 PurposeOfUse. When the token gives none: `TREAT` for staff, `PATRQT` for the
    /// person, `FAMRQT` for a carer.
    pub purpose_of_use: String,
    /// SMART scopes.
    pub scopes: Scopes,
    /// Set for patient (and carer) tokens: the only person they may see.
    pub patient: Option<PatientContext>,
    /// The client certificate of the connection the request came on (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
    /// Emergency access asked for with `X-Break-Glass-Reason`: the reason given (kept for the
    /// audit record, never logged).
    pub break_glass: Option<String>,
    /// A full look-up asked for with `X-Concord-Lookup: full` (staff only): the record
    /// locator rules no source out for this request, which its audit record says.
    pub full_lookup: bool,
}

impl Principal {
    /// The scope context that counts for this principal: `patient/` scopes for patient tokens,
    /// `user/` for staff.
    pub fn context(&self) -> Context {
        if self.patient.is_some() {
            Context::Patient
        } else {
            Context::User
        }
    }

    /// Whether the scopes allow `interaction` on `resource_type`.
    pub fn may(&self, resource_type: &str, interaction: Interaction) -> bool {
        self.scopes
            .allows(self.context(), resource_type, interaction)
    }

    /// True when this principal may see the person with this NHS number at all: staff may
    /// (agreements narrow it later); a patient token only its own person.
    pub fn may_see_person(&self, nhs: &NhsNumber) -> bool {
        self.patient.as_ref().is_none_or(|p| &p.nhs == nhs)
    }
}

#[derive(Debug)]
struct TrustedKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verified tokens, by the SHA-256 of their text (the tokens themselves are not kept), with
/// their principal and expiry. Verifying a signature costs tens of microseconds; a client
/// sends the same token with every request until it expires.
#[derive(Debug, Default)]
struct VerifiedCache {
    entries: std::sync::Mutex<HashMap<[u8; 32], (i64, Principal)>>,
}

/// Most verified tokens remembered; past this the cache starts again empty.
const MAX_VERIFIED: usize = 50_000;

impl VerifiedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (i64, Principal)>> {
        // Each update is one insert or clear, so a poisoned lock holds no half-state.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Verifies bearer tokens.
pub struct Verifier {
    verified: VerifiedCache,
    keys: HashMap<String, TrustedKey>,
    issuer: String,
    audience: String,
    leeway: u64,
    claims: ClaimNames,
    demo_key_trusted: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The one algorithm a key may verify, by its JOSE name: `RS256`, `ES256` or `EdDSA` (never
/// `none`, never HMAC).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

fn decoding_key(kid: &str, alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, KeyError> {
    let invalid = |e: jsonwebtoken::errors::Error| KeyError::Invalid {
        kid: kid.to_owned(),
        message: e.to_string(),
    };
    match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem).map_err(invalid),
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem).map_err(invalid),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(invalid),
        _ => Err(KeyError::Invalid {
            kid: kid.to_owned(),
            message: "unsupported algorithm".into(),
        }),
    }
}

impl Verifier {
    /// Loads the configured keys.
    pub fn from_config(config: &AuthConfig) -> Result<Verifier, KeyError> {
        let mut keys = HashMap::new();
        let mut demo_key_trusted = false;
        for key in &config.keys {
            let pem = std::fs::read(&key.public_key_file).map_err(|source| KeyError::Read {
                path: key.public_key_file.clone(),
                source,
            })?;
            let alg = algorithm(&key.algorithm).ok_or_else(|| KeyError::Invalid {
                kid: key.kid.clone(),
                message: "unsupported algorithm".into(),
            })?;
            demo_key_trusted |= String::from_utf8_lossy(&pem).trim() == DEMO_PUBLIC_KEY_PEM.trim();
            keys.insert(
                key.kid.clone(),
                TrustedKey {
                    algorithm: alg,
                    key: decoding_key(&key.kid, alg, &pem)?,
                },
            );
        }
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })?;
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(&text).map_err(|e| KeyError::Invalid {
                    kid: "(jwks)".into(),
                    message: e.to_string(),
                })?;
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone().ok_or_else(|| KeyError::Invalid {
                    kid: "(jwks)".into(),
                    message: "a key has no kid".into(),
                })?;
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| algorithm(&a.to_string()))
                    .ok_or_else(|| KeyError::Invalid {
                        kid: kid.clone(),
                        message: "needs alg RS256, ES256 or EdDSA".into(),
                    })?;
                let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Invalid {
                    kid: kid.clone(),
                    message: e.to_string(),
                })?;
                if keys
                    .insert(
                        kid.clone(),
                        TrustedKey {
                            algorithm: alg,
                            key,
                        },
                    )
                    .is_some()
                {
                    return Err(KeyError::Invalid {
                        kid,
                        message: "kid used twice".into(),
                    });
                }
            }
        }
        Ok(Verifier {
            verified: VerifiedCache::default(),
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_secs,
            claims: config.claims.clone(),
            demo_key_trusted,
        })
    }

    /// True when the published demo key is among the trusted keys.
    pub fn trusts_demo_key(&self) -> bool {
        self.demo_key_trusted
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let token = bearer_token(header)?;
        self.verify(token)
    }

    /// Verifies a compact JWT. A token verified before is recognised by its hash and trusted
    /// until its `exp` (plus leeway), never longer.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let hash = token_hash(token);
        let now = jiff::Timestamp::now().as_second();
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        if let Some((exp, principal)) = self.verified.lock().get(&hash)
            && now <= exp.saturating_add(leeway)
        {
            return Ok(principal.clone());
        }
        let (exp, principal) = self.verify_uncached(token)?;
        let mut cache = self.verified.lock();
        if cache.len() >= MAX_VERIFIED {
            cache.clear();
        }
        cache.insert(hash, (exp, principal.clone()));
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<(i64, Principal), AuthError> {
        let (alg, kid) = header_alg_kid(token)?;
        let trusted = match kid {
            Some(kid) => self.keys.get(&kid).ok_or(AuthError::UnknownKey)?,
            None if self.keys.len() == 1 => {
                self.keys.values().next().ok_or(AuthError::UnknownKey)?
            }
            None => return Err(AuthError::UnknownKey),
        };
        if algorithm(&alg) != Some(trusted.algorithm) {
            return Err(AuthError::Algorithm);
        }
        let claims = decode_checked(
            token,
            &trusted.key,
            trusted.algorithm,
            &Expected {
                issuer: &self.issuer,
                audience: &self.audience,
                leeway: self.leeway,
            },
        )?;
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
            .ok_or_else(|| AuthError::Claim("exp".into()))?;
        Ok((exp, principal_from_claims(&self.claims, &claims)?))
    }
}

/// What a JWT must say about itself to be accepted: who issued it, for whom, and the clock
/// skew allowed on `exp` and `nbf` (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The one `iss` accepted.
    pub issuer: &'a str,
    /// The `aud` that must be among the token's audiences.
    pub audience: &'a str,
    /// Clock skew allowed, in seconds.
    pub leeway: u64,
}

/// Checks a compact JWT's signature with `key` under the one pinned `algorithm`, and its
/// `iss`, `aud`, `exp` and `nbf`; the claims when all hold. Bearer tokens and the console's
/// OpenID Connect ID tokens are both checked here.
pub fn decode_checked(
    token: &str,
    key: &DecodingKey,
    algorithm: Algorithm,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    let mut validation = Validation::new(algorithm);
    validation.leeway = expected.leeway;
    validation.validate_nbf = true;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidSignature => AuthError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
                ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                    AuthError::Claim(c.clone())
                }
                _ => AuthError::Malformed,
            }
        })?;
    Ok(data.claims)
}

/// Maps a verified token's claims to a [`Principal`], with the config's claim names: the
/// same mapping for bearer tokens and the console's ID tokens.
pub fn principal_from_claims(
    names: &ClaimNames,
    claims: &Map<String, Value>,
) -> Result<Principal, AuthError> {
    // A text claim: identity providers send empty strings for claims they have no value
    // for, so an empty (or blank) one counts as absent; one with control characters is
    // refused, since it would reach the audit log and FHIR, whose strings forbid them.
    let text = |name: &str| -> Result<Option<String>, AuthError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err(AuthError::Claim(name.to_owned()))
            }
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_owned()))
            }
            Some(_) => Err(AuthError::Claim(name.to_owned())),
        }
    };
    let user = text(&names.user)?.ok_or_else(|| AuthError::Claim(names.user.clone()))?;
    let scopes = match claims.get(&names.scope) {
        Some(Value::String(s)) => Scopes::parse(s),
        Some(Value::Array(items)) => Scopes::parse(
            &items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => Scopes::default(),
    };
    let patient = match claims.get(&names.nhs_number) {
        None => None,
        Some(Value::String(n)) => Some(PatientContext {
            nhs: NhsNumber::parse(n).map_err(|_| AuthError::Claim(names.nhs_number.clone()))?,
            // INVARIANT: an empty relationship is refused, never read as absent: absent
            // would make a carer's token the person's own.
            acting_for_relationship: match claims.get(&names.relationship) {
                Some(Value::String(r)) if r.trim().is_empty() => {
                    return Err(AuthError::Claim(names.relationship.clone()));
                }
                _ => text(&names.relationship)?,
            },
        }),
        Some(_) => return Err(AuthError::Claim(names.nhs_number.clone())),
    };
    if patient.is_none()
        && scopes.has_context(Context::Patient)
        && !scopes.has_context(Context::User)
    {
        return Err(AuthError::Claim(names.nhs_number.clone()));
    }
    Ok(Principal {
        user,
        issuer: text("iss")?,
        name: text(&names.name)?,
        org: text(&names.org)?,
        role: text(&names.role)?,
        purpose_of_use: text(&names.purpose_of_use)?.unwrap_or_else(|| {
            match &patient {
                None => "TREAT",
                Some(p) if p.acting_for_relationship.is_some() => "FAMRQT",
                Some(_) => "PATRQT",
            }
            .into()
        }),
        scopes,
        patient,
        client_certificate: None,
        break_glass: None,
        full_lookup: false,
    })
}

/// The token of an `Authorization: Bearer …` header. The scheme is case-insensitive and may
/// be followed by several spaces (RFC 6750 and RFC 7235).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(if header.is_empty() {
            AuthError::Missing
        } else {
            AuthError::WrongScheme
        });
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if !token.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b'+' | b'/' | b'~')
    }) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Reads `alg` and `kid` from the token's header without trusting anything else in it.
pub fn header_alg_kid(token: &str) -> Result<(String, Option<String>), AuthError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Algorithm)?
        .to_owned();
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok((alg, kid))
}

/// What `concord dev-token` puts in a token.
#[derive(Debug, Clone)]
pub struct DevToken {
    /// `sub`.
    pub user: String,
    /// `name`.
    pub name: String,
    /// `org`.
    pub org: String,
    /// `role`.
    pub role: String,
    /// `purpose_of_use`.
    pub purpose_of_use: String,
    /// `nhs_number` for a patient token.
    pub patient: Option<String>,
    /// `acting_for_relationship` for a carer's token.
    pub relationship: Option<String>,
    /// `scope`.
    pub scope: String,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
}

/// Why a dev token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    /// The config has no `[auth] dev_signing_key`.
    #[error("`[auth] dev_signing_key` is not set: dev-token only signs with the demo key")]
    NoKey,
    /// The key file could not be read or used.
    #[error("cannot use the signing key `{path}`: {message}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Signs a token with the config's `dev_signing_key` (Ed25519), naming the kid of the first
/// EdDSA `[[auth.key]]`; the claims use the config's claim names.
pub fn sign_dev_token(config: &AuthConfig, spec: &DevToken) -> Result<String, DevTokenError> {
    let path = config
        .dev_signing_key
        .as_ref()
        .ok_or(DevTokenError::NoKey)?;
    sign_with_pem(config, spec, path)
}

fn sign_with_pem(
    config: &AuthConfig,
    spec: &DevToken,
    path: &Path,
) -> Result<String, DevTokenError> {
    let key_error = |message: String| DevTokenError::Key {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
    let key = EncodingKey::from_ed_pem(&pem).map_err(|e| key_error(e.to_string()))?;
    let kid = config
        .keys
        .iter()
        .find(|k| k.algorithm == "EdDSA")
        .map(|k| k.kid.clone());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid;
    let now = jiff::Timestamp::now().as_second();
    let names = &config.claims;
    let mut claims = Map::new();
    claims.insert("iss".into(), config.issuer.clone().into());
    claims.insert("aud".into(), config.audience.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert(
        "exp".into(),
        (now + i64::try_from(spec.ttl_secs).unwrap_or(3600)).into(),
    );
    claims.insert(names.user.clone(), spec.user.clone().into());
    claims.insert(names.name.clone(), spec.name.clone().into());
    claims.insert(names.org.clone(), spec.org.clone().into());
    claims.insert(names.role.clone(), spec.role.clone().into());
    claims.insert(
        names.purpose_of_use.clone(),
        spec.purpose_of_use.clone().into(),
    );
    claims.insert(names.scope.clone(), spec.scope.clone().into());
    if let Some(nhs) = &spec.patient {
        claims.insert(names.nhs_number.clone(), nhs.clone().into());
    }
    if let Some(rel) = &spec.relationship {
        claims.insert(names.relationship.clone(), rel.clone().into());
    }
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| key_error(e.to_string()))
}

#[cfg(test)]
mod tests;
