//! Finding the person in every source, asking the sources in parallel under one deadline, and
//! turning their answers into the gateway's: normalised, checked and merged.
//!
//! This file holds the public types ([`Federation`], [`Plan`], [`Person`], [`Resolution`],
//! [`Collected`], [`SourceReport`], [`Problem`], [`FederationError`]) and the deadline every
//! source call runs under. Each step of a request has its own file under `federation/`:
//!
//! | step | file | what it does |
//! | --- | --- | --- |
//! | find the person | `resolve.rs` | [`Federation::resolve_nhs`], [`Federation::resolve_id`]: stored links while fresh, the sources asked again when not |
//! | gather their records | `collect.rs` | [`Federation::collect`]: one call per linked patient, stale links left out |
//! | read one record | `read.rs` | [`Federation::read`]: whose record it is, then that person found |
//! | admit what a source sent | `admit.rs` | the profile screening, normalising and tagging every resource goes through; what is dropped counted and reported |
//! | make it the gateway's | [`normalise`] | checks a resource is about the person, rewrites ids and references, stamps provenance |
//! | merge demographics | [`merge`] | one Patient from every source's own |
//! | remember | [`cache`] | people's links, and normalised resources of static sources |
//! | know whom to ask | [`locator`] | the record locator: which sources hold which NHS numbers, and its background sync |

mod admit;
pub mod cache;
mod collect;
pub mod locator;
pub mod merge;
pub mod normalise;
mod read;
mod resolve;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

pub use crate::config::LocatorFallback;
use crate::fhir::NhsNumber;
use crate::fhir::resource::SharedResource;
use crate::policy::LabelMap;
use crate::sources::{Source, SourceError, SourceInfo};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
pub use locator::{FullLookupsSpent, LOCATOR_CODE_SYSTEM, LocatorNote, RuledOut};

/// Why a request could not be served at all (a source failing is not one of these: that is
/// reported in the answer).
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read's only source could not answer.
    #[error("source `{source_id}` could not answer: {error}")]
    SourceFailed {
        /// The source.
        source_id: String,
        /// Display name of the source, for callers.
        source_name: String,
        /// What happened (for logs).
        error: SourceError,
    },
}

/// How one source did in a request, when it did not simply answer.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// The source.
    pub source: SourceInfo,
    /// What happened.
    pub problem: Problem,
}

/// What went wrong with a source.
#[derive(Debug, Clone)]
pub enum Problem {
    /// It failed (the error is for logs, never for callers).
    Failed(SourceError),
    /// It did not answer before the request deadline.
    DeadlineExceeded,
    /// It had more than the page cap allowed the gateway to fetch.
    Truncated,
    /// Some of what it returned was dropped: not about this person, or invalid.
    Dropped(usize),
}

/// A person the gateway has found.
#[derive(Debug, Clone)]
pub struct Person {
    /// The gateway patient id.
    pub id: Uuid,
    /// The NHS number.
    pub nhs: NhsNumber,
    /// Local patient ids per source id.
    pub links: HashMap<String, HashSet<String>>,
}

/// The outcome of finding a person.
#[derive(Debug)]
pub struct Resolution {
    /// The person, when at least one source knows them.
    pub person: Option<Person>,
    /// Sources that could not be asked.
    pub reports: Vec<SourceReport>,
    /// What the record locator did (the sources it ruled out, its fallback, a full
    /// look-up), when there is something to say.
    pub locator: Option<LocatorNote>,
}

/// Resources gathered from the sources for one person.
#[derive(Debug, Default)]
pub struct Collected {
    /// Normalised resources, in source order.
    pub resources: Vec<SharedResource>,
    /// What went wrong, per source.
    pub reports: Vec<SourceReport>,
}

/// What one request may ask of the sources, worked out from the agreements before anything
/// is asked (data minimisation): a source that is in neither list is not called at all.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    /// Source ids that may be asked whether they know the person.
    pub identify: &'a HashSet<String>,
    /// Per source id, the resource types it may be asked for.
    pub types: &'a HashMap<String, Vec<&'static str>>,
    /// The label map that labels what is fetched.
    pub labels: &'a LabelMap,
    /// Which label map (a change of it must not reuse resources labelled under another).
    pub labels_key: u64,
    /// A full look-up: the record locator rules no source out (`X-Concord-Lookup: full`).
    pub full_lookup: bool,
}

impl Plan<'_> {
    /// True when this source may be asked whether it knows the person.
    fn may_identify(&self, source: &SourceInfo) -> bool {
        self.identify.contains(&source.id)
    }

    /// The resource types this source may be asked for (none when it is not in the plan).
    fn types_for(&self, source: &SourceInfo) -> &[&'static str] {
        self.types.get(&source.id).map_or(&[], Vec::as_slice)
    }
}

/// The federation: sources, the store of links, and the rules for asking.
#[derive(Debug)]
pub struct Federation {
    /// The sources, in priority (config) order.
    sources: Vec<Arc<dyn Source>>,
    /// Where people and their links are kept.
    store: Store,
    /// Counters of what sources got wrong.
    metrics: Arc<Metrics>,
    /// How long a source's answer to "do you know this person?" is trusted.
    link_max_age: Duration,
    /// People's links, kept in memory for a short while.
    cache: cache::LinkCache,
    /// False while changes made through other instances may go unheard: caches are then
    /// neither used nor filled ([`Federation::trust_caches`]).
    caches_trusted: AtomicBool,
    /// Normalised resources of static sources, reused between requests.
    normalised: cache::NormalisedCache,
    /// The profiles resources are checked against, when any source is checked.
    profiles: Option<Arc<crate::profiles::Profiles>>,
    /// The source a new resource goes to when nothing else decides (`write_default`).
    write_default: Option<String>,
    /// The record locator, when `[locator]` enables it.
    locator: Option<Arc<locator::Locator>>,
}

/// The `meta.tag` on a resource that does not conform to its profile.
pub const NONCONFORMANT_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/conformance";

impl Federation {
    /// A federation over `sources` (in priority order).
    pub fn new(
        sources: Vec<Arc<dyn Source>>,
        store: Store,
        metrics: Arc<Metrics>,
        link_max_age: Duration,
        link_cache_ttl: Duration,
    ) -> Self {
        Self {
            sources,
            store,
            metrics,
            link_max_age,
            cache: cache::LinkCache::new(link_cache_ttl),
            caches_trusted: AtomicBool::new(true),
            normalised: cache::NormalisedCache::default(),
            profiles: None,
            write_default: None,
            locator: None,
        }
    }

    /// Sends new resources that belong to no plan and no source of the author's organisation
    /// to the source `id` (config `write_default`).
    pub fn with_write_default(mut self, id: Option<String>) -> Self {
        self.write_default = id;
        self
    }

    /// The source new resources go to when nothing else decides.
    pub fn write_default(&self) -> Option<&Arc<dyn Source>> {
        self.write_default.as_deref().and_then(|id| self.source(id))
    }

    /// Asks only the sources the record locator says hold the person (and those it cannot
    /// rule out).
    pub fn with_locator(mut self, locator: Arc<locator::Locator>) -> Self {
        self.locator = Some(locator);
        self
    }

    /// The record locator, when enabled.
    pub fn locator(&self) -> Option<&Arc<locator::Locator>> {
        self.locator.as_ref()
    }

    /// Checks every source's resources against `profiles` (per source: `conformance`).
    pub fn with_profiles(mut self, profiles: Arc<crate::profiles::Profiles>) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// The profiles sources are checked against, when any source is.
    pub fn profiles(&self) -> Option<&crate::profiles::Profiles> {
        self.profiles.as_deref()
    }

    /// The sources, in config order.
    pub fn sources(&self) -> &[Arc<dyn Source>] {
        &self.sources
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The source with this id.
    pub fn source(&self, id: &str) -> Option<&Arc<dyn Source>> {
        self.sources.iter().find(|s| s.info().id == id)
    }

    /// Whether what is cached of people (their links here, their sharing choices in the
    /// door) may be used: true unless [`Federation::trust_caches`] said otherwise.
    pub fn caches_trusted(&self) -> bool {
        self.caches_trusted.load(Ordering::Acquire)
    }

    /// Says whether every change another instance makes is heard now. From `false`, people's
    /// links are read from the store on every request; from `true` (the default), the cache
    /// is used again, so whoever says so must first have cleared it
    /// ([`Federation::forget_everyone`]) of what was cached while changes went unheard.
    pub fn trust_caches(&self, trusted: bool) {
        self.caches_trusted.store(trusted, Ordering::Release);
    }

    /// Forgets the cached links of a person whose links changed elsewhere.
    pub fn forget_person(&self, person: Uuid) {
        self.cache.evict(person);
    }

    /// Forgets every cached link (changes may have been missed).
    pub fn forget_everyone(&self) {
        self.cache.clear();
    }
}

/// Runs a source call, turning an error or a missed deadline into a [`Problem`].
async fn within<T>(
    deadline: Instant,
    call: impl Future<Output = Result<T, SourceError>>,
) -> Result<T, Problem> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Problem::Failed(e)),
        Err(_) => Err(Problem::DeadlineExceeded),
    }
}
