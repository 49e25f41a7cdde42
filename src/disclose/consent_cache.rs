//! People's standing sharing choices, kept briefly in memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::federation::{Federation, Person};
use crate::policy::engine::Consent;
use crate::store::StoreError;

/// People's standing sharing choices, kept briefly in memory so that a busy gateway does not
/// read the store on every request. A choice recorded through this instance evicts the
/// person's entry at once, and one recorded through another instance as soon as its notice
/// is heard (PostgreSQL); a read that was already under way when the person was evicted, or
/// the cache cleared, is not kept. While changes made elsewhere may go unheard
/// ([`Federation::caches_trusted`] is false) the cache is neither used nor filled.
#[derive(Debug)]
pub(crate) struct ConsentCache {
    ttl: std::time::Duration,
    state: std::sync::Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<uuid::Uuid, (tokio::time::Instant, Arc<Consent>)>,
    /// When each person was last evicted: a read that began before is not kept.
    evicted: HashMap<uuid::Uuid, tokio::time::Instant>,
    /// When the whole cache was last cleared: a read that began before is not kept.
    cleared: Option<tokio::time::Instant>,
}

impl CacheState {
    /// Forgets everyone, and that any read under way now may be kept.
    fn clear(&mut self) {
        *self = CacheState {
            cleared: Some(tokio::time::Instant::now()),
            ..CacheState::default()
        };
    }
}

/// Most people whose choices are held; past this the cache starts again empty.
const MAX_CONSENT_ENTRIES: usize = 100_000;

impl ConsentCache {
    /// A cache whose entries live `ttl` (zero: never kept).
    pub(crate) fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            state: std::sync::Mutex::new(CacheState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // Every update is one insert, remove or clear: a poisoned lock holds no half-state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a person's choices (a new one was recorded, here or elsewhere).
    pub(crate) fn evict(&self, person: uuid::Uuid) {
        let mut state = self.lock();
        state.entries.remove(&person);
        if state.evicted.len() >= MAX_CONSENT_ENTRIES {
            // Forgetting when people were evicted would let a read under way be kept:
            // forget everyone instead.
            state.clear();
        }
        state.evicted.insert(person, tokio::time::Instant::now());
    }

    /// Forgets everyone's choices (changes may have been missed); reads under way are not
    /// kept.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// The sharing choices that stand for a person. A store that cannot say means nothing is
    /// disclosed (503): an objection is never ignored because it could not be read.
    pub(crate) async fn of(
        &self,
        federation: &Federation,
        person: &Person,
    ) -> Result<Arc<Consent>, StoreError> {
        let read_at = tokio::time::Instant::now();
        let cached = !self.ttl.is_zero() && federation.caches_trusted();
        if cached
            && let Some((at, consent)) = self.lock().entries.get(&person.id)
            && at.elapsed() < self.ttl
        {
            return Ok(consent.clone());
        }
        let records = federation.store().consents(person.id).await?;
        let consent = Arc::new(crate::policy::consent::standing(
            records
                .iter()
                .map(|r| (r.kind.as_str(), r.org.as_str(), r.active)),
        ));
        if cached {
            let mut state = self.lock();
            let raced = state.cleared.is_some_and(|c| c >= read_at)
                || state.evicted.get(&person.id).is_some_and(|e| *e >= read_at);
            if !raced {
                if state.entries.len() >= MAX_CONSENT_ENTRIES {
                    state.entries.clear();
                }
                state.entries.insert(person.id, (read_at, consent.clone()));
            }
        }
        Ok(consent)
    }
}

#[cfg(test)]
mod tests;
