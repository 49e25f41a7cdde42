//! A short-lived, in-memory copy of people's links, so that a busy gateway does not read the
//! store on every request. An entry is trusted for at most `ttl` after it was read from (or
//! written to) the store, and never beyond the links' own freshness limit, which
//! [`super::Federation`] still checks. Many instances can share one store: what another
//! instance learns reaches this one within `ttl`.

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
        // Every update is a whole insert or remove, so a poisoned lock holds no half-state.
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

    /// Forgets a person (their links changed elsewhere).
    pub fn evict(&self, id: Uuid) {
        let mut inner = self.lock();
        if let Some((_, record)) = inner.by_id.remove(&id) {
            inner.by_nhs.remove(&record.nhs_number);
        }
    }

    /// Remembers what the store holds for a person now.
    pub fn put(&self, record: PersonRecord) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.by_id.len() >= MAX_ENTRIES {
            *inner = Inner::default();
        }
        inner.by_nhs.insert(record.nhs_number.clone(), record.id);
        inner.by_id.insert(record.id, (Instant::now(), record));
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
    entries: HashMap<usize, CachedResource>,
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
        cache.put(record());
        assert!(cache.by_nhs("9434765919").is_some());
        assert!(cache.by_id(Uuid::nil()).is_some());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(cache.by_id(Uuid::nil()).is_none());
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = LinkCache::new(Duration::ZERO);
        cache.put(record());
        assert!(cache.by_nhs("9434765919").is_none());
    }
}
