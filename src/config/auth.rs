//! `[auth]`: the keys tokens are verified with and where claims are found.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (the gateway's own identifier).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Public keys, each pinned to one algorithm and selected by `kid`.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
    /// A JWKS file (every key needs `kid` and `alg`); may be used with `[[auth.key]]`.
    pub jwks_file: Option<PathBuf>,
    /// Claim names, for tokens from an identity provider that names them differently.
    #[serde(default)]
    pub claims: ClaimNames,
    /// The private key `concord dev-token` signs with (demo only; never used by `serve`).
    pub dev_signing_key: Option<PathBuf>,
}

fn default_leeway() -> u64 {
    30
}

/// One `[[auth.key]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their header.
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`: the only algorithm this key verifies.
    pub algorithm: String,
    /// PEM file with the public key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    pub public_key_file: PathBuf,
}

/// `[auth.claims]`: where each part of the principal is found in a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The user's id (default `sub`).
    pub user: String,
    /// The user's display name (default `name`).
    pub name: String,
    /// The user's organisation, an ODS code (default `org`).
    pub org: String,
    /// The user's role (default `role`).
    pub role: String,
    /// HL7 v3 PurposeOfUse code (default `purpose_of_use`; `TREAT` when absent).
    pub purpose_of_use: String,
    /// SMART scopes, space separated (default `scope`).
    pub scope: String,
    /// Patient tokens: the person's NHS number (default `nhs_number`).
    pub nhs_number: String,
    /// A carer's token: their relationship to the person (default `acting_for_relationship`).
    pub relationship: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            name: "name".into(),
            org: "org".into(),
            role: "role".into(),
            purpose_of_use: "purpose_of_use".into(),
            scope: "scope".into(),
            nhs_number: "nhs_number".into(),
            relationship: "acting_for_relationship".into(),
        }
    }
}

impl AuthConfig {
    /// Checks `[auth]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let auth = self;
        if auth.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        if auth.audience.trim().is_empty() {
            return Err(invalid("auth.audience", "must not be empty"));
        }
        if auth.keys.is_empty() && auth.jwks_file.is_none() {
            return Err(invalid(
                "auth.key",
                "at least one [[auth.key]] or auth.jwks_file is needed",
            ));
        }
        let mut kids = HashSet::new();
        for (i, key) in auth.keys.iter().enumerate() {
            if !matches!(key.algorithm.as_str(), "RS256" | "ES256" | "EdDSA") {
                return Err(invalid(
                    format!("auth.key[{i}].algorithm"),
                    format!("`{}` is not one of RS256, ES256, EdDSA", key.algorithm),
                ));
            }
            if key.kid.is_empty() || !kids.insert(key.kid.as_str()) {
                return Err(invalid(
                    format!("auth.key[{i}].kid"),
                    format!("`{}` is empty or used by another key", key.kid),
                ));
            }
        }
        Ok(())
    }
}
