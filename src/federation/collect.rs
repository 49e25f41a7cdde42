//! Gathering a person's records: every source that knows them is asked (once per linked
//! patient id, in parallel, before the deadline) for the types the plan allows; a link
//! whose Patient no longer carries the person's NHS number is left out and refreshed next
//! time; what comes back is admitted ([`Federation::admit`]) and given once.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::time::Instant;

use super::admit::origin;
use super::{Collected, Federation, Person, Plan, Problem, SourceReport, within};
use crate::fhir::resource::{Resource, SharedResource};
use crate::sources::{Fetched, Source, SourceError, SourceInfo};

/// One call to make: a source and the person's patient id in it.
type Call<'a> = (&'a Arc<dyn Source>, String);

/// What has been gathered so far in one [`Federation::collect`].
#[derive(Default)]
struct Gathered {
    /// The answer being built.
    collected: Collected,
    /// Every resource given (compared by `Type/id`), so that each is given once. Hashed
    /// with foldhash, not SipHash, which was 1.5-1.8% of the gateway's CPU here under load
    /// (`benches/README.md`, issue 15). foldhash seeds each process and each table
    /// differently (from address-space layout, the clock and a counter, not the operating
    /// system's random source), so no fixed list of ids collides in every gateway. The
    /// set holds one answer's resources and lives for one request.
    seen: foldhash::HashSet<ByReference>,
    /// Sources already reported as failed (a source called for two patient ids fails once).
    failed: HashSet<String>,
}

impl Federation {
    /// Everything of the given types about the person, from every source that knows them,
    /// asked in parallel before `deadline`. Each source answers with one `$everything`-style
    /// call (or one search when a single type is asked for).
    pub async fn collect(&self, person: &Person, plan: &Plan<'_>, deadline: Instant) -> Collected {
        let calls = self.calls(person, plan);
        let results = join_all(calls.iter().map(|(source, local)| {
            within(
                deadline,
                fetch(source, local, plan.types_for(source.info())),
            )
        }))
        .await;
        let mut gathered = Gathered::default();
        for ((source, local), result) in calls.iter().zip(results) {
            let origin = origin(source.info(), person, plan.labels, &self.sources);
            let links = links_fingerprint(origin.local_patient_ids) ^ plan.labels_key;
            // A static source's resources normalised before for this person and links: a hit
            // also says its resource's type without reading the source's JSON again.
            let hits = match &result {
                Ok(fetched) if source.is_static() => {
                    self.normalised
                        .get_each(&fetched.resources, person.id, links)
                }
                _ => Vec::new(),
            };
            if let Some(fetched) = self
                .accept(source.info(), local, person, result, &hits, &mut gathered)
                .await
            {
                self.take_in(source, fetched, hits, (&origin, links), &mut gathered);
            }
        }
        gathered.collected
    }

    /// The calls to make: one per source the plan may ask for something and patient id the
    /// person has in it, in source order.
    fn calls<'a>(&'a self, person: &Person, plan: &Plan<'_>) -> Vec<Call<'a>> {
        let mut calls = Vec::new();
        for source in &self.sources {
            if plan.types_for(source.info()).is_empty() {
                continue;
            }
            for local in person.links.get(&source.info().id).into_iter().flatten() {
                calls.push((source, local.clone()));
            }
        }
        calls
    }

    /// Looks at one source's answer for the patient id `local` (`hits`: its resources'
    /// normalised forms found cached, in order, or none): a failure is reported (once per
    /// source), a stale link is dropped whole, a truncated answer is reported. Returns what
    /// is to be taken in.
    async fn accept(
        &self,
        info: &SourceInfo,
        local: &str,
        person: &Person,
        result: Result<Fetched, Problem>,
        hits: &[Option<SharedResource>],
        gathered: &mut Gathered,
    ) -> Option<Fetched> {
        let fetched = match result {
            Ok(f) if link_is_stale(&f, hits, local, person) => {
                self.drop_stale_link(info, person, f.resources.len(), gathered)
                    .await;
                return None;
            }
            Ok(f) => f,
            Err(problem) => {
                if gathered.failed.insert(info.id.clone()) {
                    gathered.collected.reports.push(SourceReport {
                        source: info.clone(),
                        problem,
                    });
                }
                return None;
            }
        };
        if fetched.truncated {
            gathered.collected.reports.push(SourceReport {
                source: info.clone(),
                problem: Problem::Truncated,
            });
        }
        Some(fetched)
    }

    /// The source's own Patient no longer carries the person's NHS number (it corrected a
    /// record): what it holds under that id is someone else's. Leaves all `count` resources
    /// out, reports them, and has the person looked up again next time.
    async fn drop_stale_link(
        &self,
        info: &SourceInfo,
        person: &Person,
        count: usize,
        gathered: &mut Gathered,
    ) {
        tracing::warn!(source.id = %info.id, "a linked patient no longer carries the person's NHS number; link dropped");
        self.metrics.source_fault(&info.id, "stale_link", 1);
        if let Err(e) = self.store.forget_check(person.id, &info.id).await {
            tracing::warn!(error = %e, "could not mark a stale link for refresh");
        }
        self.cache.evict(person.id);
        gathered.collected.reports.push(SourceReport {
            source: info.clone(),
            problem: Problem::Dropped(count),
        });
    }

    /// Admits each resource of one source's answer and gives it once; a static source's
    /// resources are normalised once and reused for the same person, links and label map
    /// (`hits`: those found cached, in order). What is dropped is reported.
    fn take_in(
        &self,
        source: &Arc<dyn Source>,
        fetched: Fetched,
        hits: Vec<Option<SharedResource>>,
        (origin, links): (&super::normalise::Origin<'_>, u64),
        gathered: &mut Gathered,
    ) {
        let info = source.info();
        let reuse = source.is_static();
        let mut dropped = Vec::new();
        let mut hits = hits.into_iter();
        for resource in fetched.resources {
            let cached = hits.next().flatten();
            let normalised: SharedResource = match cached {
                Some(hit) => hit,
                None => {
                    let original = reuse.then(|| resource.clone());
                    match self.admit(resource, origin) {
                        Ok((r, problems)) => {
                            let shared = Resource::flagged(r, problems);
                            if let Some(original) = original {
                                self.normalised.put(
                                    original,
                                    origin.person_id,
                                    links,
                                    shared.clone(),
                                );
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
            if gathered.seen.insert(ByReference(normalised.clone())) {
                gathered.collected.resources.push(normalised);
            }
        }
        self.report_dropped(info, &dropped, &mut gathered.collected.reports);
    }
}

/// Asks one source for the person's resources of `types` under the patient id `local`: a
/// read for the Patient alone, a search for one other type, `$everything` for more.
async fn fetch(
    source: &Arc<dyn Source>,
    local: &str,
    types: &[&'static str],
) -> Result<Fetched, SourceError> {
    match types {
        ["Patient"] => source.read("Patient", local).await.map(|p| Fetched {
            resources: p.into_iter().map(Arc::new).collect(),
            truncated: false,
        }),
        [one] => source.search(one, local).await,
        _ => source.everything(local, types).await,
    }
}

/// True when an answer includes the linked Patient itself and it no longer carries the
/// person's NHS number. A resource's type is read from its cached normalised form when
/// there is one (`hits`, in the answer's order: normalising keeps the type), so that a warm
/// request does not look into every resource's JSON; the Patient itself is always read as
/// the source gave it.
fn link_is_stale(
    fetched: &Fetched,
    hits: &[Option<SharedResource>],
    local: &str,
    person: &Person,
) -> bool {
    let mut hits = hits.iter();
    fetched.resources.iter().any(|r| {
        let is_patient = match hits.next() {
            Some(Some(hit)) => hit.resource_type() == "Patient",
            _ => r.get("resourceType").and_then(Value::as_str) == Some("Patient"),
        };
        is_patient
            && r.get("id").and_then(Value::as_str) == Some(local)
            && !crate::fhir::nhs_number::carried_by(r).any(|n| n == person.nhs.as_str())
    })
}

/// A resource given, compared with the others by its `Type/id` (kept without copying it).
struct ByReference(SharedResource);

impl PartialEq for ByReference {
    fn eq(&self, other: &Self) -> bool {
        self.0.reference() == other.0.reference()
    }
}

impl Eq for ByReference {}

impl std::hash::Hash for ByReference {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.reference().hash(state);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::nhs_number::NhsNumber;
    use crate::fhir::resource::Resource;
    use serde_json::json;

    const NHS: &str = "9434765919";

    fn ann() -> Person {
        Person {
            id: uuid::Uuid::new_v4(),
            nhs: NhsNumber::parse(NHS).expect("valid NHS number"),
            links: std::collections::HashMap::new(),
        }
    }

    fn patient(id: &str, nhs: &str) -> Value {
        json!({"resourceType": "Patient", "id": id, "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]})
    }

    fn fetched(resources: Vec<Value>) -> Fetched {
        Fetched {
            resources: resources.into_iter().map(Arc::new).collect(),
            truncated: false,
        }
    }

    /// A cached hit says only what type a resource is: the linked Patient itself is still
    /// read as the source gave it, warm or cold.
    #[test]
    fn a_stale_link_is_found_with_and_without_cached_forms() {
        let person = ann();
        let observation = json!({"resourceType": "Observation", "id": "o1"});
        let moved = fetched(vec![observation.clone(), patient("p1", "9999999468")]);
        let kept = fetched(vec![observation.clone(), patient("p1", NHS)]);
        let hits = [
            Some(Resource::shared(
                json!({"resourceType": "Observation", "id": "gp.o1"}),
            )),
            Some(Resource::shared(
                json!({"resourceType": "Patient", "id": "gp.p1"}),
            )),
        ];
        for hits in [&hits[..], &[], &[None, None]] {
            assert!(link_is_stale(&moved, hits, "p1", &person), "{hits:?}");
            assert!(!link_is_stale(&kept, hits, "p1", &person), "{hits:?}");
            // Another patient id's answer: its Patient is not the linked one.
            assert!(!link_is_stale(&moved, hits, "p2", &person), "{hits:?}");
        }
        // Only a Patient is looked at for the link, whatever its id.
        let not_patient = fetched(vec![json!({"resourceType": "Observation", "id": "p1"})]);
        let hit = [Some(Resource::shared(
            json!({"resourceType": "Observation", "id": "gp.p1"}),
        ))];
        assert!(!link_is_stale(&not_patient, &hit, "p1", &person));
        assert!(!link_is_stale(&not_patient, &[], "p1", &person));
    }

    /// A resource given twice (a source listing it on two pages, or two patient ids of one
    /// source) is given once.
    #[test]
    #[expect(
        clippy::mutable_key_type,
        reason = "a resource's reference, which alone is hashed and compared, never changes"
    )]
    fn resources_compare_by_reference() {
        let mut seen = HashSet::new();
        let first = Resource::shared(
            json!({"resourceType": "Observation", "id": "gp.o1", "status": "final"}),
        );
        let again = Resource::shared(
            json!({"resourceType": "Observation", "id": "gp.o1", "status": "amended"}),
        );
        let other = Resource::shared(json!({"resourceType": "Condition", "id": "gp.o1"}));
        assert!(seen.insert(ByReference(first)));
        assert!(!seen.insert(ByReference(again)));
        assert!(seen.insert(ByReference(other)));
    }
}
