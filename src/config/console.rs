//! `[console]`: the IG console's sign-in (OpenID Connect) and its sessions.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[console]`. Without the table the console is not served at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The OpenID Connect issuer; its discovery document is read from
    /// `{issuer}/.well-known/openid-configuration`. Without it only the demo sign-in exists,
    /// and only while the demo key is trusted.
    pub issuer: Option<String>,
    /// The gateway's client id at the issuer (the `aud` of its ID tokens).
    pub client_id: Option<String>,
    /// The client secret (HTTP Basic at the token endpoint); none for a public client, which
    /// relies on PKCE alone.
    pub client_secret: Option<String>,
    /// Or the name of an environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// Scopes asked for; must include `openid`.
    pub scopes: Vec<String>,
    /// Roles that may sign in (default `ig-lead`); everyone else is refused.
    pub allowed_roles: Vec<String>,
    /// A session unused for this long ends, in seconds.
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in however it is used, in seconds.
    pub absolute_timeout_secs: u64,
    /// NHS CIS2 role codes (`nhsid_nrbac_roles[].role_code`, the whole `S…:G…:R…` code or its
    /// `R…` part) and the role each stands for here, e.g. `"R8003" = "ig-lead"`. A code not
    /// listed stands for itself.
    pub cis2_roles: BTreeMap<String, String>,
    /// Roles that see the whole audit log in the console (a region's IG team, say). Default
    /// none: every other console user sees only the records of their own organisation's
    /// staff.
    pub region_roles: Vec<String>,
    /// The agreements page flags an agreement whose `valid_until` is this many days away or
    /// fewer (default 30).
    pub lapsing_within_days: u16,
    /// An emergency access not reviewed this many days after it was made is overdue, and
    /// stands out in the break-glass review queue (default 7).
    pub review_overdue_days: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: None,
            client_secret: None,
            client_secret_env: None,
            scopes: vec!["openid".into(), "profile".into()],
            allowed_roles: vec!["ig-lead".into()],
            idle_timeout_secs: 15 * 60,
            absolute_timeout_secs: 8 * 60 * 60,
            cis2_roles: BTreeMap::new(),
            region_roles: Vec::new(),
            lapsing_within_days: 30,
            review_overdue_days: 7,
        }
    }
}

impl ConsoleConfig {
    /// The client secret, from the file or the environment.
    pub fn secret(&self) -> Option<String> {
        self.client_secret.clone().or_else(|| {
            self.client_secret_env
                .as_ref()
                .and_then(|name| std::env::var(name).ok())
        })
    }

    /// Checks `[console]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.issuer, &self.client_id) {
            (Some(issuer), Some(id)) => {
                check_issuer(issuer)?;
                if id.trim().is_empty() {
                    return Err(invalid("console.client_id", "must not be empty"));
                }
            }
            (None, None) => {}
            (Some(_), None) => return Err(invalid("console.client_id", "is required with issuer")),
            (None, Some(_)) => return Err(invalid("console.issuer", "is required with client_id")),
        }
        if self.client_secret.is_some() && self.client_secret_env.is_some() {
            return Err(invalid(
                "console.client_secret",
                "give client_secret or client_secret_env, not both",
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(invalid("console.scopes", "must include `openid`"));
        }
        if let Some(bad) = self.scopes.iter().find(|s| !is_token(s)) {
            return Err(invalid(
                "console.scopes",
                format!("`{bad}` is not a scope token"),
            ));
        }
        if self.allowed_roles.is_empty() || self.allowed_roles.iter().any(|r| r.trim().is_empty()) {
            return Err(invalid(
                "console.allowed_roles",
                "must name at least one role, none empty",
            ));
        }
        if self.lapsing_within_days > 3660 {
            return Err(invalid(
                "console.lapsing_within_days",
                "must be at most 3660 (ten years)",
            ));
        }
        if self.idle_timeout_secs < 60 {
            return Err(invalid("console.idle_timeout_secs", "must be at least 60"));
        }
        if self.absolute_timeout_secs < self.idle_timeout_secs {
            return Err(invalid(
                "console.absolute_timeout_secs",
                "must be at least idle_timeout_secs",
            ));
        }
        if !(1..=3650).contains(&self.review_overdue_days) {
            return Err(invalid(
                "console.review_overdue_days",
                "must be from 1 to 3650",
            ));
        }
        Ok(())
    }
}

/// A scope token (RFC 6749 §3.3): visible ASCII but `"` and `\`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// An issuer is an `https` URL with no query or fragment; plain `http` only on a loopback
/// host (a provider on the same machine, or in tests).
fn check_issuer(issuer: &str) -> Result<(), ConfigError> {
    let field = "console.issuer";
    let url = reqwest::Url::parse(issuer)
        .map_err(|e| invalid(field, format!("`{issuer}` is not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            field,
            format!("`{issuer}` must be an https URL (http only on localhost) with no query"),
        ));
    }
    Ok(())
}
