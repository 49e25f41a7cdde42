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
    /// `Type/id` of every resource given, so that each is given once.
    seen: HashSet<String>,
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
            if let Some(fetched) = self
                .accept(source.info(), local, person, result, &mut gathered)
                .await
            {
                self.take_in(source, fetched, person, plan, &mut gathered);
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

    /// Looks at one source's answer for the patient id `local`: a failure is reported (once
    /// per source), a stale link is dropped whole, a truncated answer is reported. Returns
    /// what is to be taken in.
    async fn accept(
        &self,
        info: &SourceInfo,
        local: &str,
        person: &Person,
        result: Result<Fetched, Problem>,
        gathered: &mut Gathered,
    ) -> Option<Fetched> {
        let fetched = match result {
            Ok(f) if link_is_stale(&f, local, person) => {
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
    /// resources are normalised once and reused for the same person, links and label map.
    /// What is dropped is reported.
    fn take_in(
        &self,
        source: &Arc<dyn Source>,
        fetched: Fetched,
        person: &Person,
        plan: &Plan<'_>,
        gathered: &mut Gathered,
    ) {
        let info = source.info();
        let origin = origin(info, person, plan.labels, &self.sources);
        let reuse = source.is_static();
        let links = links_fingerprint(origin.local_patient_ids) ^ plan.labels_key;
        let mut dropped = Vec::new();
        let hits = if reuse {
            self.normalised
                .get_each(&fetched.resources, person.id, links)
        } else {
            Vec::new()
        };
        let mut hits = hits.into_iter();
        for resource in fetched.resources {
            let cached = hits.next().flatten();
            let normalised: SharedResource = match cached {
                Some(hit) => hit,
                None => {
                    let original = reuse.then(|| resource.clone());
                    match self.admit(resource, &origin) {
                        Ok((r, problems)) => {
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
            if gathered.seen.insert(normalised.reference().to_owned()) {
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
/// person's NHS number.
fn link_is_stale(fetched: &Fetched, local: &str, person: &Person) -> bool {
    fetched.resources.iter().any(|r| {
        r.get("resourceType").and_then(Value::as_str) == Some("Patient")
            && r.get("id").and_then(Value::as_str) == Some(local)
            && !crate::fhir::nhs_number::carried_by(r).any(|n| n == person.nhs.as_str())
    })
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
