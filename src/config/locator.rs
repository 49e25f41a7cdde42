//! `[locator]`: the record locator, an index of which sources hold which NHS numbers, so that
//! finding a person asks only those sources (and the ones the index cannot rule out).

use serde::Deserialize;

use super::{ConfigError, invalid};

/// What resolution does when the index knows no source that holds the person.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LocatorFallback {
    /// Ask every source the caller may ask, as without a locator (the default).
    #[default]
    All,
    /// Ask only the sources the index cannot rule out (never synced); the answer says so.
    None,
}

impl LocatorFallback {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            LocatorFallback::All => "all",
            LocatorFallback::None => "none",
        }
    }
}

/// `[locator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocatorConfig {
    /// Use the index to choose which sources to ask (default false: every source is asked,
    /// as before there was a locator).
    pub enabled: bool,
    /// When the index knows no source for the person: `all` (ask every source) or `none`.
    pub fallback: LocatorFallback,
    /// How often each source is synced, in seconds (a source's own `locator_sync_secs`
    /// wins; 0 there means never).
    pub sync_interval_secs: u64,
    /// NHS numbers asked for per page (`_count`).
    pub page_size: usize,
    /// Most pages one round of a source's sync reads; a longer pass goes on in the next round.
    pub max_pages_per_round: u32,
    /// Longest one round of a source's sync runs, in seconds.
    pub round_secs: u64,
    /// Most sources synced at once by one instance.
    pub max_concurrent_syncs: usize,
    /// How long after a failed round the source is tried again, in seconds (at most its
    /// interval).
    pub retry_secs: u64,
    /// Most full look-ups (`X-Concord-Lookup: full`: every source asked, the index ruling
    /// nothing out) one instance makes a minute; beyond it such a request is answered 429.
    /// 0: none.
    pub full_lookups_per_minute: u32,
}

impl Default for LocatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            fallback: LocatorFallback::All,
            sync_interval_secs: 3_600,
            page_size: 1_000,
            max_pages_per_round: 50,
            round_secs: 60,
            max_concurrent_syncs: 4,
            retry_secs: 60,
            full_lookups_per_minute: 30,
        }
    }
}

/// Largest `page_size`.
pub const MAX_LOCATOR_PAGE_SIZE: usize = 10_000;

/// Largest `full_lookups_per_minute`: each is a fan-out to every source.
pub(super) const MAX_FULL_LOOKUPS_PER_MINUTE: u32 = 600;

/// Most sources one instance syncs at once.
pub const MAX_CONCURRENT_SYNCS: usize = 64;

impl LocatorConfig {
    /// Checks `[locator]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("locator.sync_interval_secs", self.sync_interval_secs),
            ("locator.round_secs", self.round_secs),
            ("locator.retry_secs", self.retry_secs),
            (
                "locator.max_pages_per_round",
                u64::from(self.max_pages_per_round),
            ),
        ] {
            if value == 0 {
                return Err(invalid(name, "must be greater than 0"));
            }
        }
        if !(1..=MAX_LOCATOR_PAGE_SIZE).contains(&self.page_size) {
            return Err(invalid(
                "locator.page_size",
                format!("must be 1 to {MAX_LOCATOR_PAGE_SIZE}"),
            ));
        }
        if !(1..=MAX_CONCURRENT_SYNCS).contains(&self.max_concurrent_syncs) {
            return Err(invalid(
                "locator.max_concurrent_syncs",
                format!("must be 1 to {MAX_CONCURRENT_SYNCS}"),
            ));
        }
        if self.full_lookups_per_minute > MAX_FULL_LOOKUPS_PER_MINUTE {
            return Err(invalid(
                "locator.full_lookups_per_minute",
                format!("must be 0 to {MAX_FULL_LOOKUPS_PER_MINUTE}"),
            ));
        }
        Ok(())
    }
}
