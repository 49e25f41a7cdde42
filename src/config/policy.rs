//! `[policy]`: the data-sharing agreements.

use std::path::PathBuf;

use serde::Deserialize;

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The directory of agreement files and `labels.toml` (default `policies`, beside the
    /// config file). Nothing is disclosed that no agreement there permits.
    pub dir: PathBuf,
    /// How often to look for changed files, in seconds (0: only on `SIGHUP`).
    pub reload_check_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            reload_check_secs: 5,
        }
    }
}
