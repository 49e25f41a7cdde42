//! `[audit]`: the audit log's key, spool, signed heads and witness.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, check_http_url, invalid};

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file holding the HMAC key audit records are hashed with (at least 32 bytes), kept
    /// outside the database.
    pub key_file: Option<PathBuf>,
    /// Or the name of an environment variable holding it.
    pub key_env: Option<String>,
    /// Where records go while the store cannot take them (default `data/audit-spool`, beside
    /// the config file). Keep it on a local disk of the gateway's own.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// An Ed25519 private key (PKCS#8 PEM) the chain's head is signed with now and then.
    /// Without it a cut-off tail of the log cannot be detected; the gateway warns at start.
    pub head_signing_key_file: Option<PathBuf>,
    /// How often the head is signed when it moved, in seconds.
    #[serde(default = "default_head_interval")]
    pub head_interval_secs: u64,
    /// A file signed heads are appended to (one JSON line each). Put it where those who can
    /// write to the database cannot.
    pub witness_file: Option<PathBuf>,
    /// A URL each signed head is POSTed to as JSON.
    pub witness_url: Option<String>,
    /// Longest an audit batch waits for the store before its records go to the spool
    /// instead, in milliseconds: a store that hangs (a lock held elsewhere, a stalled
    /// network) costs callers this much, not the store's own timeouts.
    #[serde(default = "default_store_wait")]
    pub store_wait_ms: u64,
    /// Roles that read the whole audit log, in the AuditEvent API and the IG console (a
    /// region's IG team, say). Default none: every other reader sees the accesses by their
    /// own organisation's staff and the accesses to the data their organisation discloses.
    #[serde(default)]
    pub region_roles: Vec<String>,
}

fn default_store_wait() -> u64 {
    250
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("data/audit-spool")
}

fn default_head_interval() -> u64 {
    60
}

impl AuditConfig {
    /// Checks `[audit]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let audit = self;
        if audit.head_interval_secs == 0 {
            return Err(invalid("audit.head_interval_secs", "must be at least 1"));
        }
        if !(10..=60_000).contains(&audit.store_wait_ms) {
            return Err(invalid(
                "audit.store_wait_ms",
                "must be from 10 to 60000 (milliseconds)",
            ));
        }
        if let Some(url) = &audit.witness_url {
            check_http_url("audit.witness_url", url)?;
        }
        if audit.region_roles.iter().any(|r| r.trim().is_empty()) {
            return Err(invalid("audit.region_roles", "must not name an empty role"));
        }
        Ok(())
    }
}
