//! Finding the person in every source, asking the sources in parallel under one deadline, and
//! turning their answers into the gateway's: normalised, checked and merged.

pub mod cache;
pub mod merge;
pub mod normalise;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::fhir::NhsNumber;
use crate::fhir::resource::{Resource, SharedResource};
use crate::policy::LabelMap;
use crate::sources::{Fetched, Source, SourceError, SourceInfo};
use crate::store::{Link, PersonRecord, Store, StoreError};
use crate::telemetry::Metrics;
use normalise::{Context, Fault, normalise, split_gateway_id};

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
}

impl Plan<'_> {
    fn may_identify(&self, source: &SourceInfo) -> bool {
        self.identify.contains(&source.id)
    }

    fn types_for(&self, source: &SourceInfo) -> &[&'static str] {
        self.types.get(&source.id).map_or(&[], Vec::as_slice)
    }
}

/// The federation: sources, the store of links, and the rules for asking.
#[derive(Debug)]
pub struct Federation {
    sources: Vec<Arc<dyn Source>>,
    store: Store,
    metrics: Arc<Metrics>,
    link_max_age: Duration,
    cache: cache::LinkCache,
    normalised: cache::NormalisedCache,
    profiles: Option<Arc<crate::profiles::Profiles>>,
}

/// What the profiles say of a source's resource.
enum Verdict {
    /// It conforms, or was not checked.
    Conforms,
    /// Pass it on, tagged, with these problems.
    Flag(Vec<crate::fhir::conformance::Departure>),
    /// Withhold it.
    Drop,
}

/// The `meta.tag` on a resource that does not conform to its profile.
pub const NONCONFORMANT_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/conformance";

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

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
            normalised: cache::NormalisedCache::default(),
            profiles: None,
        }
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

    /// Checks a resource as its source sent it, as the source's `conformance` says.
    fn verdict(&self, info: &SourceInfo, resource: &Value) -> Verdict {
        use crate::config::Conformance;
        let Some(profiles) = self
            .profiles
            .as_ref()
            .filter(|_| info.conformance != Conformance::Off)
        else {
            return Verdict::Conforms;
        };
        let problems = profiles.check(resource);
        if problems.is_empty() {
            return Verdict::Conforms;
        }
        match info.conformance {
            // Counted with the other dropped resources (`Fault::Nonconformant`).
            Conformance::Drop => Verdict::Drop,
            _ => {
                self.metrics
                    .source_fault(&info.id, Fault::Nonconformant.kind(), 1);
                Verdict::Flag(problems)
            }
        }
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

    /// Finds the person with this NHS number in every source, using stored links while they
    /// are fresh and asking (in parallel, before `deadline`) the sources whose links are not.
    pub async fn resolve_nhs(
        &self,
        nhs: &NhsNumber,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Resolution, FederationError> {
        let record = match self.cache.by_nhs(nhs.as_str()) {
            Some(r) => Some(r),
            None => {
                let stored = self.store.person_by_nhs(nhs.as_str()).await?;
                if let Some(r) = &stored {
                    self.cache.put(r.clone());
                }
                stored
            }
        };
        self.resolve(nhs.clone(), record, plan, deadline).await
    }

    /// Finds the person with this gateway id; `None` when the gateway has never met them.
    pub async fn resolve_id(
        &self,
        id: Uuid,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Option<Resolution>, FederationError> {
        let record = match self.cache.by_id(id) {
            Some(r) => r,
            None => match self.store.person_by_id(id).await? {
                Some(r) => {
                    self.cache.put(r.clone());
                    r
                }
                None => return Ok(None),
            },
        };
        let Ok(nhs) = NhsNumber::parse(&record.nhs_number) else {
            return Err(FederationError::Store(StoreError::Corrupt(
                "persons.nhs_number",
            )));
        };
        self.resolve(nhs, Some(record), plan, deadline)
            .await
            .map(Some)
    }

    async fn resolve(
        &self,
        nhs: NhsNumber,
        record: Option<PersonRecord>,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Resolution, FederationError> {
        let now = now_secs();
        let max_age = i64::try_from(self.link_max_age.as_secs()).unwrap_or(i64::MAX);
        let mut links: HashMap<String, HashSet<String>> = HashMap::new();
        let mut stale: Vec<&Arc<dyn Source>> = Vec::new();
        for source in &self.sources {
            let id = &source.info().id;
            let fresh = record.as_ref().is_some_and(|r| {
                r.checked
                    .iter()
                    .any(|(s, at)| s == id && now.saturating_sub(*at) < max_age)
            });
            // A source the plan may not ask keeps what is known of it, unrefreshed.
            if fresh || !plan.may_identify(source.info()) {
                let known = record
                    .iter()
                    .flat_map(|r| &r.links)
                    .filter(|l| &l.source_id == id)
                    .map(|l| l.local_id.clone());
                links.insert(id.clone(), known.collect());
            } else {
                stale.push(source);
            }
        }
        let mut reports = Vec::new();
        let mut answers = Vec::new();
        let asked = join_all(
            stale
                .iter()
                .map(|s| within(deadline, s.find_patients(&nhs))),
        )
        .await;
        for (source, result) in stale.into_iter().zip(asked) {
            let info = source.info();
            match result {
                Ok(fetched) => {
                    let (ids, dropped) = patient_ids(&fetched, nhs.as_str());
                    self.report_dropped(info, dropped, &mut reports);
                    answers.push((info.id.clone(), ids));
                }
                Err(problem) => {
                    // Keep using what we knew, if anything, while the source is unreachable.
                    let known = record
                        .iter()
                        .flat_map(|r| &r.links)
                        .filter(|l| l.source_id == info.id)
                        .map(|l| l.local_id.clone());
                    links.insert(info.id.clone(), known.collect());
                    reports.push(SourceReport {
                        source: info.clone(),
                        problem,
                    });
                }
            }
        }
        let known_anywhere =
            links.values().any(|l| !l.is_empty()) || answers.iter().any(|(_, ids)| !ids.is_empty());
        if !known_anywhere {
            return Ok(Resolution {
                person: None,
                reports,
            });
        }
        let person_id = match &record {
            Some(r) => r.id,
            None => self.store.ensure_person(nhs.as_str(), now).await?,
        };
        if !answers.is_empty() {
            let mut checked: Vec<(String, i64)> = record
                .iter()
                .flat_map(|r| r.checked.iter().cloned())
                .filter(|(s, _)| !answers.iter().any(|(a, _)| a == s))
                .collect();
            for (source_id, ids) in answers {
                let moved_from = self
                    .store
                    .record_links(person_id, &source_id, &ids, now)
                    .await?;
                for previous in moved_from {
                    self.cache.evict(previous);
                }
                checked.push((source_id.clone(), now));
                links.insert(source_id, ids.into_iter().collect());
            }
            self.cache.put(PersonRecord {
                id: person_id,
                nhs_number: nhs.as_str().to_owned(),
                links: links
                    .iter()
                    .flat_map(|(s, ids)| {
                        ids.iter().map(|l| Link {
                            source_id: s.clone(),
                            local_id: l.clone(),
                        })
                    })
                    .collect(),
                checked,
            });
        }
        Ok(Resolution {
            person: Some(Person {
                id: person_id,
                nhs,
                links,
            }),
            reports,
        })
    }

    fn report_dropped(
        &self,
        info: &SourceInfo,
        dropped: Vec<Fault>,
        reports: &mut Vec<SourceReport>,
    ) {
        for fault in &dropped {
            self.metrics.source_fault(&info.id, fault.kind(), 1);
        }
        let faults = dropped.iter().filter(|f| **f != Fault::Unserved).count();
        if faults == 0 {
            return;
        }
        tracing::warn!(source.id = %info.id, dropped = faults, "source returned resources that are not about the person asked for, invalid, or (conformance = drop) not conforming to their profiles; dropped");
        reports.push(SourceReport {
            source: info.clone(),
            problem: Problem::Dropped(faults),
        });
    }

    /// Everything of the given types about the person, from every source that knows them,
    /// asked in parallel before `deadline`. Each source answers with one `$everything`-style
    /// call (or one search when a single type is asked for).
    pub async fn collect(&self, person: &Person, plan: &Plan<'_>, deadline: Instant) -> Collected {
        let mut calls = Vec::new();
        for source in &self.sources {
            if plan.types_for(source.info()).is_empty() {
                continue;
            }
            for local in person.links.get(&source.info().id).into_iter().flatten() {
                calls.push((source, local.clone()));
            }
        }
        let results = join_all(calls.iter().map(|(source, local)| {
            let types = plan.types_for(source.info());
            within(deadline, async move {
                match types {
                    ["Patient"] => source.read("Patient", local).await.map(|p| Fetched {
                        resources: p.into_iter().map(Arc::new).collect(),
                        truncated: false,
                    }),
                    [one] => source.search(one, local).await,
                    _ => source.everything(local, types).await,
                }
            })
        }))
        .await;
        let mut collected = Collected::default();
        let mut seen = HashSet::new();
        let mut failed = HashSet::new();
        for ((source, local), result) in calls.iter().zip(results) {
            let info = source.info();
            let fetched = match result {
                Ok(f) if self.link_is_stale(&f, local, person) => {
                    // The source's own Patient no longer carries this NHS number (it corrected
                    // a record): what it holds under that id is someone else's. Leave it all
                    // out and look the person up again next time.
                    tracing::warn!(source.id = %info.id, "a linked patient no longer carries the person's NHS number; link dropped");
                    self.metrics.source_fault(&info.id, "stale_link", 1);
                    if let Err(e) = self.store.forget_check(person.id, &info.id).await {
                        tracing::warn!(error = %e, "could not mark a stale link for refresh");
                    }
                    self.cache.evict(person.id);
                    collected.reports.push(SourceReport {
                        source: info.clone(),
                        problem: Problem::Dropped(f.resources.len()),
                    });
                    continue;
                }
                Ok(f) => f,
                Err(problem) => {
                    if failed.insert(info.id.clone()) {
                        collected.reports.push(SourceReport {
                            source: info.clone(),
                            problem,
                        });
                    }
                    continue;
                }
            };
            if fetched.truncated {
                collected.reports.push(SourceReport {
                    source: info.clone(),
                    problem: Problem::Truncated,
                });
            }
            let empty = HashSet::new();
            let ctx = Context {
                source: info,
                person_id: person.id,
                nhs_number: person.nhs.as_str(),
                local_patient_ids: person.links.get(&info.id).unwrap_or(&empty),
                labels: plan.labels,
            };
            let mut dropped = Vec::new();
            let reuse = source.is_static();
            let links = links_fingerprint(ctx.local_patient_ids) ^ plan.labels_key;
            for resource in fetched.resources {
                let normalised = match reuse
                    .then(|| self.normalised.get(&resource, person.id, links))
                    .flatten()
                {
                    Some(hit) => hit,
                    None => {
                        let problems = match self.verdict(info, &resource) {
                            Verdict::Conforms => Vec::new(),
                            Verdict::Flag(problems) => problems,
                            Verdict::Drop => {
                                dropped.push(Fault::Nonconformant);
                                continue;
                            }
                        };
                        let original = reuse.then(|| resource.clone());
                        match normalise(resource, &ctx) {
                            Ok(mut r) => {
                                if !problems.is_empty() {
                                    tag_nonconformant(&mut r);
                                }
                                let shared = Resource::flagged(r, problems);
                                if let Some(original) = original {
                                    self.normalised
                                        .put(original, person.id, links, shared.clone());
                                }
                                shared
                            }
                            Err(fault) => {
                                dropped.push(fault);
                                continue;
                            }
                        }
                    }
                };
                // A source that lists a resource twice (say on two pages) gives it once.
                if seen.insert(format!(
                    "{}/{}",
                    normalised.resource_type(),
                    normalised.id()
                )) {
                    collected.resources.push(normalised);
                }
            }
            self.report_dropped(info, dropped, &mut collected.reports);
        }
        collected
    }

    /// True when an answer includes the linked Patient itself and it no longer carries the
    /// person's NHS number.
    fn link_is_stale(&self, fetched: &Fetched, local: &str, person: &Person) -> bool {
        fetched.resources.iter().any(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some("Patient")
                && r.get("id").and_then(Value::as_str) == Some(local)
                && !crate::fhir::nhs_number::carried_by(r).any(|n| n == person.nhs.as_str())
        })
    }

    /// Reads one resource by gateway id (`{source}.{local id}`), provided it is about a person
    /// the gateway can find. Returns the normalised resource and that person.
    pub async fn read(
        &self,
        resource_type: &str,
        gateway_id: &str,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Option<(Value, Person)>, FederationError> {
        let Some((source_id, local_id)) = split_gateway_id(gateway_id) else {
            return Ok(None);
        };
        let Some(source) = self.source(source_id) else {
            return Ok(None);
        };
        let failed = |error: SourceError| FederationError::SourceFailed {
            source_id: source.info().id.clone(),
            source_name: source.info().name.clone(),
            error,
        };
        let resource = match within(deadline, source.read(resource_type, local_id)).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(Problem::Failed(e)) => return Err(failed(e)),
            Err(_) => return Err(failed(SourceError::Timeout)),
        };
        // Whose is it? A Patient says by NHS number; anything else by its patient reference.
        let nhs = if resource_type == "Patient" {
            crate::fhir::nhs_number::carried_by(&resource).find_map(|n| NhsNumber::parse(&n).ok())
        } else {
            let base = source.info().base_url.as_deref();
            let Some(patient_local) = crate::fhir::search::patient_id_of(&resource, base) else {
                return Ok(None);
            };
            match self.store.person_by_link(source_id, patient_local).await? {
                Some(id) => self
                    .store
                    .person_by_id(id)
                    .await?
                    .and_then(|p| NhsNumber::parse(&p.nhs_number).ok()),
                None => match within(deadline, source.read("Patient", patient_local)).await {
                    Ok(Some(p)) => crate::fhir::nhs_number::carried_by(&p)
                        .find_map(|n| NhsNumber::parse(&n).ok()),
                    Ok(None) => None,
                    Err(Problem::Failed(e)) => return Err(failed(e)),
                    Err(_) => return Err(failed(SourceError::Timeout)),
                },
            }
        };
        let Some(nhs) = nhs else { return Ok(None) };
        let resolution = self.resolve_nhs(&nhs, plan, deadline).await?;
        let Some(person) = resolution.person else {
            return Ok(None);
        };
        let empty = HashSet::new();
        let ctx = Context {
            source: source.info(),
            person_id: person.id,
            nhs_number: person.nhs.as_str(),
            local_patient_ids: person.links.get(source_id).unwrap_or(&empty),
            labels: plan.labels,
        };
        let verdict = self.verdict(source.info(), &resource);
        let flagged = matches!(verdict, Verdict::Flag(_));
        let normalised = match verdict {
            Verdict::Drop => Err(Fault::Nonconformant),
            _ => normalise(Arc::new(resource), &ctx),
        };
        match normalised {
            Ok(mut r) => {
                if flagged {
                    tag_nonconformant(&mut r);
                }
                Ok(Some((r, person)))
            }
            Err(fault) => {
                self.metrics.source_fault(source_id, fault.kind(), 1);
                Ok(None)
            }
        }
    }
}

/// Marks a resource that does not conform to its profile (`meta.tag`).
fn tag_nonconformant(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut() {
        normalise::add_tag(
            obj,
            serde_json::json!({
                "system": NONCONFORMANT_SYSTEM,
                "code": "nonconformant",
                "display": "Does not conform to its profile",
            }),
        );
    }
}

/// A fingerprint of a person's patient ids in one source, so that reused normalised resources
/// are only reused for exactly the same links.
fn links_fingerprint(ids: &HashSet<String>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sorted.hash(&mut hasher);
    hasher.finish()
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

/// The local ids of the Patients that carry this NHS number, and faults for those that do not.
fn patient_ids(fetched: &Fetched, nhs: &str) -> (Vec<String>, Vec<Fault>) {
    let mut ids = Vec::new();
    let mut faults = Vec::new();
    for p in &fetched.resources {
        let id = p
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| crate::fhir::reference::is_valid_id(id));
        let is_patient = p.get("resourceType").and_then(Value::as_str) == Some("Patient");
        match id {
            Some(id) if is_patient && crate::fhir::nhs_number::carried_by(p).any(|n| n == nhs) => {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_owned());
                }
            }
            Some(_) if is_patient => faults.push(Fault::Foreign),
            _ => faults.push(Fault::Invalid),
        }
    }
    (ids, faults)
}
