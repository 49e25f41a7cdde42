//! What the IG console's health page shows of each source, kept in memory since the process
//! started: how many calls it answered and failed, its most recent faults (what and when,
//! never anything about a person), and its last conformance check. The counters of
//! `/metrics` say how often; this says when, which a person reading a page needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Faults kept per source, newest first; a fault like the newest one only bumps its count.
pub const RECENT_FAULTS: usize = 8;

/// One kind of fault, seen `count` times in a row, the last time at `at_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFault {
    /// When it was last seen, Unix microseconds.
    pub at_us: i64,
    /// The call that failed (`search`, `read`, …), or none for a fault in an answer.
    pub operation: Option<&'static str>,
    /// The metrics label of the failure or fault (`timeout`, `http_error`, `nonconformant`, …).
    pub kind: &'static str,
    /// How many times in a row.
    pub count: u64,
}

/// The last time a source's resources were checked against the profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConformanceCheck {
    /// When, Unix microseconds.
    pub at_us: i64,
    /// Whether that resource conformed.
    pub conformed: bool,
}

/// A copy of what is known of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// Calls made to it (by the gateway's requests, since start).
    pub calls: u64,
    /// Of those, calls that failed.
    pub failed: u64,
    /// The last call answered, Unix microseconds.
    pub last_ok_us: Option<i64>,
    /// Recent faults, newest first.
    pub recent: Vec<RecentFault>,
    /// Resources checked against the profiles.
    pub checked: u64,
    /// Of those, resources that did not conform.
    pub nonconformant: u64,
    /// The last check.
    pub last_check: Option<ConformanceCheck>,
}

/// Every source's health, by source id.
#[derive(Debug, Default)]
pub(super) struct SourceHealthLog {
    sources: RwLock<HashMap<String, Arc<Mutex<SourceHealth>>>>,
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

impl SourceHealthLog {
    /// The entry of a source, made on first use.
    fn entry(&self, source: &str) -> Arc<Mutex<SourceHealth>> {
        // A panic while holding these locks cannot leave an entry half-written (each update
        // is a few assignments), so a poisoned lock is still usable.
        if let Some(found) = self
            .sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(source)
        {
            return found.clone();
        }
        self.sources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(source.to_owned())
            .or_default()
            .clone()
    }

    fn update(&self, source: &str, change: impl FnOnce(&mut SourceHealth)) {
        let entry = self.entry(source);
        let mut health = entry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut health);
    }

    /// One call to a source: `failure` is its failure kind, none when it was answered.
    pub(super) fn call(
        &self,
        source: &str,
        operation: &'static str,
        failure: Option<&'static str>,
    ) {
        let at_us = now_us();
        self.update(source, |h| {
            h.calls += 1;
            match failure {
                None => h.last_ok_us = Some(at_us),
                Some(kind) => {
                    h.failed += 1;
                    note(&mut h.recent, at_us, Some(operation), kind, 1);
                }
            }
        });
    }

    /// Faults found in a source's answer.
    pub(super) fn fault(&self, source: &str, kind: &'static str, count: u64) {
        let at_us = now_us();
        self.update(source, |h| note(&mut h.recent, at_us, None, kind, count));
    }

    /// One resource of a source checked against the profiles.
    pub(super) fn checked(&self, source: &str, conformed: bool) {
        let at_us = now_us();
        self.update(source, |h| {
            h.checked += 1;
            if !conformed {
                h.nonconformant += 1;
            }
            h.last_check = Some(ConformanceCheck { at_us, conformed });
        });
    }

    /// A copy of a source's health (all zero for a source nothing is known of yet).
    pub(super) fn of(&self, source: &str) -> SourceHealth {
        let found = self
            .sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(source)
            .cloned();
        found.map_or_else(SourceHealth::default, |entry| {
            entry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }
}

/// Adds a fault at the front of `recent`, or counts it on the newest when it is the same.
fn note(
    recent: &mut Vec<RecentFault>,
    at_us: i64,
    operation: Option<&'static str>,
    kind: &'static str,
    count: u64,
) {
    if let Some(newest) = recent.first_mut()
        && newest.kind == kind
        && newest.operation == operation
    {
        newest.count = newest.count.saturating_add(count);
        newest.at_us = at_us;
        return;
    }
    recent.insert(
        0,
        RecentFault {
            at_us,
            operation,
            kind,
            count,
        },
    );
    recent.truncate(RECENT_FAULTS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_faults_are_newest_first_bounded_and_repeats_counted() {
        let log = SourceHealthLog::default();
        log.call("gp", "search", None);
        log.call("gp", "search", Some("timeout"));
        log.call("gp", "search", Some("timeout"));
        log.fault("gp", "nonconformant", 3);
        let h = log.of("gp");
        assert_eq!((h.calls, h.failed), (3, 2));
        assert!(h.last_ok_us.is_some());
        let kinds: Vec<_> = h.recent.iter().map(|f| (f.kind, f.count)).collect();
        assert_eq!(kinds, [("nonconformant", 3), ("timeout", 2)]);
        for i in 0..20 {
            let kind = if i % 2 == 0 { "a" } else { "b" };
            log.fault("gp", kind, 1);
        }
        assert_eq!(log.of("gp").recent.len(), RECENT_FAULTS);
        assert_eq!(log.of("other"), SourceHealth::default());
    }

    #[test]
    fn conformance_checks_count_and_keep_the_last() {
        let log = SourceHealthLog::default();
        log.checked("gp", true);
        log.checked("gp", false);
        let h = log.of("gp");
        assert_eq!((h.checked, h.nonconformant), (2, 1));
        assert_eq!(h.last_check.map(|c| c.conformed), Some(false));
    }
}
