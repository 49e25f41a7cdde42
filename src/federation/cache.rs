//! A short-lived, in-memory copy of people's links, so that a busy gateway does not read the
//! store on every request. An entry is trusted for at most `ttl` after it was read from (or
//! written to) the store, and never beyond the links' own freshness limit, which
//! [`super::Federation`] still checks. Many instances can share one store: what another
//! instance changes evicts the person here as soon as its notice is heard (PostgreSQL), and
//! a read that was already under way when a person was evicted, or the cache cleared, is not
//! kept.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::store::PersonRecord;

/// Most people held; past this the cache starts again empty (cheap, and rare).
const MAX_ENTRIES: usize = 100_000;

/// The cached people, reachable by gateway id and by NHS number.
#[derive(Debug, Default)]
struct Inner {
    /// Each person, with when the entry was read from (or written to) the store.
    by_id: HashMap<Uuid, (Instant, PersonRecord)>,
    /// Gateway ids by NHS number.
    by_nhs: HashMap<String, Uuid>,
    /// When each person was last evicted: a read that began before is not kept.
    evicted: HashMap<Uuid, Instant>,
    /// When the whole cache was last cleared: a read that began before is not kept.
    cleared: Option<Instant>,
}

impl Inner {
    /// Forgets everyone, and that any read under way now may be kept.
    fn clear(&mut self) {
        *self = Inner {
            cleared: Some(Instant::now()),
            ..Inner::default()
        };
    }
}

/// The cache.
#[derive(Debug)]
pub struct LinkCache {
    /// How long an entry is trusted.
    ttl: Duration,
    /// The entries.
    inner: Mutex<Inner>,
}

impl LinkCache {
    /// A cache whose entries live `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The entries, locked.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a whole insert, remove or clear, so a poisoned lock holds no
        // half-state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The person with this gateway id, if cached and young enough.
    pub fn by_id(&self, id: Uuid) -> Option<PersonRecord> {
        let inner = self.lock();
        let (at, record) = inner.by_id.get(&id)?;
        (at.elapsed() < self.ttl).then(|| record.clone())
    }

    /// The person with this NHS number, if cached and young enough.
    pub fn by_nhs(&self, nhs: &str) -> Option<PersonRecord> {
        let id = *self.lock().by_nhs.get(nhs)?;
        self.by_id(id)
    }

    /// Forgets a person (their links changed, here or elsewhere); a read of them already
    /// under way is not kept.
    pub fn evict(&self, id: Uuid) {
        let mut inner = self.lock();
        if let Some((_, record)) = inner.by_id.remove(&id) {
            inner.by_nhs.remove(&record.nhs_number);
        }
        if inner.evicted.len() >= MAX_ENTRIES {
            // Forgetting when people were evicted would let a read under way be kept:
            // forget everyone instead.
            inner.clear();
        }
        inner.evicted.insert(id, Instant::now());
    }

    /// Forgets everyone (changes may have been missed); reads under way are not kept.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Remembers what the store held for a person when a read that began at `read_at`
    /// found it, unless the person was evicted (or the cache cleared) since.
    pub fn put(&self, record: PersonRecord, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        let raced = inner.cleared.is_some_and(|c| c >= read_at)
            || inner.evicted.get(&record.id).is_some_and(|e| *e >= read_at);
        if raced {
            return;
        }
        if inner.by_id.len() >= MAX_ENTRIES {
            inner.by_id.clear();
            inner.by_nhs.clear();
        }
        inner.by_nhs.insert(record.nhs_number.clone(), record.id);
        inner.by_id.insert(record.id, (read_at, record));
    }
}

/// Normalised resources of static sources (NDJSON exports), reused between requests. An entry
/// is keyed by the address of the source's own shared resource, and keeps that resource alive
/// so the address cannot be reused; it is used only for the same person with the same links.
#[derive(Debug, Default)]
pub struct NormalisedCache {
    /// The entries.
    inner: Mutex<Normalised>,
}

/// The cached normalised resources and what they weigh.
#[derive(Debug, Default)]
struct Normalised {
    /// Each entry, by the address of the source's own shared resource.
    entries: foldhash::HashMap<usize, CachedResource>,
    /// JSON text held, in bytes: the budget is counted in these.
    bytes: usize,
}

/// One source resource's normalised form, and for whom it was made.
#[derive(Debug)]
struct CachedResource {
    /// The source's resource, kept alive so that its address is not reused.
    _source: std::sync::Arc<serde_json::Value>,
    /// The person it was normalised for.
    person: Uuid,
    /// The fingerprint of that person's links (and the label map) it was normalised with.
    links: u64,
    /// The normalised resource.
    normalised: crate::fhir::resource::SharedResource,
}

/// JSON text of normalised resources held at most (the resident size, with the parsed form,
/// is a few times this); past it the cache starts again empty. The demo needs about 4 MB.
const MAX_NORMALISED_BYTES: usize = 64 * 1024 * 1024;

impl NormalisedCache {
    /// The entries, locked.
    fn lock(&self) -> MutexGuard<'_, Normalised> {
        // Every update is a whole insert, so a poisoned lock holds no half-state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The normalised form of `source` for this person and links fingerprint, if cached.
    pub fn get(
        &self,
        source: &std::sync::Arc<serde_json::Value>,
        person: Uuid,
        links: u64,
    ) -> Option<crate::fhir::resource::SharedResource> {
        let key = std::sync::Arc::as_ptr(source) as usize;
        let inner = self.lock();
        let hit = inner.entries.get(&key)?;
        (hit.person == person && hit.links == links).then(|| hit.normalised.clone())
    }

    /// [`NormalisedCache::get`] for each of `sources`, under one lock: a source's answer is
    /// looked up whole, rather than taking the lock once per resource.
    pub fn get_each(
        &self,
        sources: &[std::sync::Arc<serde_json::Value>],
        person: Uuid,
        links: u64,
    ) -> Vec<Option<crate::fhir::resource::SharedResource>> {
        let inner = self.lock();
        sources
            .iter()
            .map(|source| {
                let hit = inner
                    .entries
                    .get(&(std::sync::Arc::as_ptr(source) as usize))?;
                (hit.person == person && hit.links == links).then(|| hit.normalised.clone())
            })
            .collect()
    }

    /// Remembers the normalised form of `source`.
    pub fn put(
        &self,
        source: std::sync::Arc<serde_json::Value>,
        person: Uuid,
        links: u64,
        normalised: crate::fhir::resource::SharedResource,
    ) {
        let key = std::sync::Arc::as_ptr(&source) as usize;
        let size = normalised.json().len();
        let mut inner = self.lock();
        if inner.bytes + size > MAX_NORMALISED_BYTES {
            *inner = Normalised::default();
        }
        inner.bytes += size;
        let replaced = inner.entries.insert(
            key,
            CachedResource {
                _source: source,
                person,
                links,
                normalised,
            },
        );
        if let Some(old) = replaced {
            inner.bytes = inner.bytes.saturating_sub(old.normalised.json().len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PersonRecord {
        PersonRecord {
            id: Uuid::nil(),
            nhs_number: "9434765919".into(),
            links: Vec::new(),
            checked: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let cache = LinkCache::new(Duration::from_secs(30));
        cache.put(record(), Instant::now());
        assert!(cache.by_nhs("9434765919").is_some());
        assert!(cache.by_id(Uuid::nil()).is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(cache.by_id(Uuid::nil()).is_none());
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = LinkCache::new(Duration::ZERO);
        cache.put(record(), Instant::now());
        assert!(cache.by_nhs("9434765919").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_under_way_when_the_person_is_evicted_is_not_kept() {
        let cache = LinkCache::new(Duration::from_secs(30));
        let read_at = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        // A notice arrives while the read is under way.
        cache.evict(Uuid::nil());
        cache.put(record(), read_at);
        assert!(cache.by_id(Uuid::nil()).is_none());
        // A read that began after the eviction is kept.
        tokio::time::advance(Duration::from_millis(1)).await;
        cache.put(record(), Instant::now());
        assert!(cache.by_id(Uuid::nil()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn clearing_forgets_everyone_and_reads_under_way() {
        let cache = LinkCache::new(Duration::from_secs(30));
        cache.put(record(), Instant::now());
        tokio::time::advance(Duration::from_millis(1)).await;
        let read_at = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        cache.clear();
        assert!(cache.by_nhs("9434765919").is_none());
        cache.put(record(), read_at);
        assert!(cache.by_nhs("9434765919").is_none());
    }
}
