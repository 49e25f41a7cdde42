//! `[store]`: the database.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (relative to the config file) or `postgres://…`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long a person's links to the sources are trusted before they are looked up again.
    pub link_max_age_secs: u64,
    /// How long a person's links are kept in memory before the store is read again (0: never
    /// kept). Other instances' changes reach this one within this time.
    pub link_cache_secs: u64,
    /// How long a person's sharing choices (Consent) are kept in memory, in milliseconds (0:
    /// read from the store on every request). A choice recorded through this instance is
    /// honoured on its next request regardless; other instances honour it within this time.
    pub consent_cache_ms: u64,
    /// Apply migrations at start-up (`concord migrate` does it on demand).
    pub migrate_on_start: bool,
    /// SQLite only: the page cache of each of the gateway's connections (the pool's and the
    /// audit log's own), in MiB. Pages beyond it are read again from the file.
    pub sqlite_cache_mib: u32,
}

/// `[store] sqlite_cache_mib` when not set.
pub(crate) const DEFAULT_SQLITE_CACHE_MIB: u32 = 8;

/// The largest `[store] sqlite_cache_mib`.
pub(crate) const MAX_SQLITE_CACHE_MIB: u32 = 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/concord.db".into(),
            max_connections: 8,
            link_max_age_secs: 3_600,
            link_cache_secs: 30,
            consent_cache_ms: 1_000,
            migrate_on_start: true,
            sqlite_cache_mib: DEFAULT_SQLITE_CACHE_MIB,
        }
    }
}

impl StoreConfig {
    /// Checks `[store]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("sqlite:")
            || self.url.starts_with("postgres://")
            || self.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store.url",
                "must start with `sqlite:` or `postgres://`",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("store.max_connections", "must be greater than 0"));
        }
        if !(1..=MAX_SQLITE_CACHE_MIB).contains(&self.sqlite_cache_mib) {
            return Err(invalid(
                "store.sqlite_cache_mib",
                format!("must be from 1 to {MAX_SQLITE_CACHE_MIB}"),
            ));
        }
        Ok(())
    }
}
