//! Finding the person in every source: stored links are used while they are fresh, and the
//! sources whose links are not (and that the plan may ask) are asked again, in parallel,
//! before the deadline. What they answer is written back to the store and the link cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::normalise::Fault;
use super::{Federation, FederationError, Person, Plan, Problem, Resolution, SourceReport, within};
use crate::fhir::NhsNumber;
use crate::sources::{Fetched, Source};
use crate::store::{Link, PersonRecord, StoreError};

/// Each source's local patient ids for the person, by source id.
type Links = HashMap<String, HashSet<String>>;

/// Local patient ids that sources answered with, by source id, in source order.
type Answers = Vec<(String, Vec<String>)>;

impl Federation {
    /// Finds the person with this NHS number in every source, using stored links while they
    /// are fresh and asking (in parallel, before `deadline`) the sources whose links are not.
    pub async fn resolve_nhs(
        &self,
        nhs: &NhsNumber,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Resolution, FederationError> {
        let keep = self.keep_from();
        let cached = keep.and_then(|_| self.cache.by_nhs(nhs.as_str()));
        let record = match cached {
            Some(r) => Some(r),
            None => {
                let stored = self.store.person_by_nhs(nhs.as_str()).await?;
                if let (Some(r), Some(read_at)) = (&stored, keep) {
                    self.cache.put(r.clone(), read_at);
                }
                stored
            }
        };
        self.resolve(nhs.clone(), record, plan, deadline, keep)
            .await
    }

    /// Finds the person with this gateway id; `None` when the gateway has never met them.
    pub async fn resolve_id(
        &self,
        id: Uuid,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Option<Resolution>, FederationError> {
        let keep = self.keep_from();
        let cached = keep.and_then(|_| self.cache.by_id(id));
        let record = match cached {
            Some(r) => r,
            None => match self.store.person_by_id(id).await? {
                Some(r) => {
                    if let Some(read_at) = keep {
                        self.cache.put(r.clone(), read_at);
                    }
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
        self.resolve(nhs, Some(record), plan, deadline, keep)
            .await
            .map(Some)
    }

    /// When the link cache may be used for this request: the instant its reads of the store
    /// begin (what they find is kept only if nobody is evicted meanwhile), or `None` while
    /// changes made through other instances may go unheard (the store is read every time, and
    /// nothing is kept).
    fn keep_from(&self) -> Option<Instant> {
        self.caches_trusted().then(Instant::now)
    }

    /// Finds the person with this NHS number, whose stored record (if the gateway has met
    /// them) is `record`: fresh links are kept, stale ones asked again, and the answers
    /// recorded (and cached, with `keep`: see [`Federation::keep_from`]). The person is `None`
    /// when no source knows them.
    async fn resolve(
        &self,
        nhs: NhsNumber,
        record: Option<PersonRecord>,
        plan: &Plan<'_>,
        deadline: Instant,
        keep: Option<Instant>,
    ) -> Result<Resolution, FederationError> {
        let now = now_secs();
        let (mut links, stale) = self.fresh_links(record.as_ref(), plan, now);
        let (stale, located) = self
            .locate(&nhs, record.as_ref(), plan, stale, &mut links)
            .await?;
        let asked = join_all(
            stale
                .iter()
                .map(|s| within(deadline, s.find_patients(&nhs))),
        )
        .await;
        let mut reports = Vec::new();
        let answers = self.take_answers(
            stale.into_iter().zip(asked),
            &nhs,
            record.as_ref(),
            &mut links,
            &mut reports,
        );
        if let (Some(locator), Some(holders)) = (&self.locator, &located.holders) {
            for (source_id, ids) in &answers {
                let listed = holders.contains(source_id);
                locator
                    .learn(nhs.as_str(), source_id, !ids.is_empty(), listed, now)
                    .await?;
            }
        }
        let known_anywhere =
            links.values().any(|l| !l.is_empty()) || answers.iter().any(|(_, ids)| !ids.is_empty());
        if !known_anywhere {
            return Ok(Resolution {
                person: None,
                reports,
                locator: located.note(),
            });
        }
        let person_id = match &record {
            Some(r) => r.id,
            None => self.store.ensure_person(nhs.as_str(), now).await?,
        };
        if !answers.is_empty() {
            let recorded = Recorded {
                person_id,
                nhs: &nhs,
                record: record.as_ref(),
                now,
                keep,
            };
            self.record_answers(recorded, answers, &mut links).await?;
        }
        Ok(Resolution {
            person: Some(Person {
                id: person_id,
                nhs,
                links,
            }),
            reports,
            locator: located.note(),
        })
    }

    /// Of the stale sources, those to ask: all of them without a record locator; with one,
    /// those it says hold the person and those it cannot rule out (or, when it knows no source
    /// for them, as its fallback says; or all of them, for a full look-up). The sources left
    /// unasked keep what is stored of them.
    async fn locate<'s>(
        &'s self,
        nhs: &NhsNumber,
        record: Option<&PersonRecord>,
        plan: &Plan<'_>,
        stale: Vec<&'s Arc<dyn Source>>,
        links: &mut Links,
    ) -> Result<(Vec<&'s Arc<dyn Source>>, Located), FederationError> {
        let Some(locator) = self.locator.as_ref() else {
            return Ok((stale, Located::default()));
        };
        if stale.is_empty() {
            let located = Located {
                full: plan.full_lookup,
                ..Located::default()
            };
            return Ok((stale, located));
        }
        let known =
            record.is_some_and(|r| r.links.iter().any(|l| plan.identify.contains(&l.source_id)));
        let choice = locator
            .choose(nhs.as_str(), &stale, known, plan.full_lookup)
            .await?;
        let (ask, skip): (Vec<_>, Vec<_>) = stale
            .into_iter()
            .partition(|s| choice.ask.contains(&s.info().id));
        for source in skip {
            let id = &source.info().id;
            links.insert(id.clone(), known_links(record, id));
        }
        Ok((
            ask,
            Located {
                holders: Some(choice.holders),
                fallback: choice.fallback,
                ruled_out: choice.ruled_out,
                full: plan.full_lookup,
            },
        ))
    }

    /// Splits the sources into those whose links are used as stored (fresh, or not to be
    /// asked under this plan: those keep what is known of them, unrefreshed) and the stale
    /// ones to ask again.
    fn fresh_links(
        &self,
        record: Option<&PersonRecord>,
        plan: &Plan<'_>,
        now: i64,
    ) -> (Links, Vec<&Arc<dyn Source>>) {
        let max_age = i64::try_from(self.link_max_age.as_secs()).unwrap_or(i64::MAX);
        let mut links = Links::new();
        let mut stale = Vec::new();
        for source in &self.sources {
            let id = &source.info().id;
            let fresh = record.is_some_and(|r| {
                r.checked
                    .iter()
                    .any(|(s, at)| s == id && now.saturating_sub(*at) < max_age)
            });
            if fresh || !plan.may_identify(source.info()) {
                links.insert(id.clone(), known_links(record, id));
            } else {
                stale.push(source);
            }
        }
        (links, stale)
    }

    /// Takes in the stale sources' answers: the Patients that carry the NHS number become
    /// answers, anything else is dropped (counted and reported); a source that could not
    /// answer is reported and keeps what was known of it.
    fn take_answers<'s>(
        &self,
        asked: impl Iterator<Item = (&'s Arc<dyn Source>, Result<Fetched, Problem>)>,
        nhs: &NhsNumber,
        record: Option<&PersonRecord>,
        links: &mut Links,
        reports: &mut Vec<SourceReport>,
    ) -> Answers {
        let mut answers = Answers::new();
        for (source, result) in asked {
            let info = source.info();
            match result {
                Ok(fetched) => {
                    let (ids, dropped) = patient_ids(&fetched, nhs.as_str());
                    for fault in &dropped {
                        self.count_dropped(info, *fault);
                    }
                    self.report_dropped(info, &dropped, reports);
                    answers.push((info.id.clone(), ids));
                }
                Err(problem) => {
                    // Keep using what we knew, if anything, while the source is unreachable.
                    links.insert(info.id.clone(), known_links(record, &info.id));
                    reports.push(SourceReport {
                        source: info.clone(),
                        problem,
                    });
                }
            }
        }
        answers
    }

    /// Writes the sources' answers to the store (taking a local id from any other person who
    /// held it, whose cache entry is evicted), adds them to `links`, and caches the person
    /// as they now stand (when `keep` says the cache may be filled).
    async fn record_answers(
        &self,
        recorded: Recorded<'_>,
        answers: Answers,
        links: &mut Links,
    ) -> Result<(), FederationError> {
        let Recorded {
            person_id,
            nhs,
            record,
            now,
            keep,
        } = recorded;
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
        let Some(read_at) = keep else {
            return Ok(());
        };
        let person = PersonRecord {
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
        };
        self.cache.put(person, read_at);
        Ok(())
    }
}

/// What the record locator said for one resolution.
#[derive(Debug, Default)]
struct Located {
    /// The sources its index says hold the person (`None` without a locator).
    holders: Option<HashSet<String>>,
    /// Its fallback, when it knew no source for them.
    fallback: Option<crate::config::LocatorFallback>,
    /// The sources it ruled out.
    ruled_out: Vec<super::locator::RuledOut>,
    /// A full look-up was asked for.
    full: bool,
}

impl Located {
    /// What the answer may say of it; `None` when there is nothing to say.
    fn note(self) -> Option<super::locator::LocatorNote> {
        let note = super::locator::LocatorNote {
            fallback: self.fallback,
            ruled_out: self.ruled_out,
            full: self.full,
        };
        (!note.is_empty()).then_some(note)
    }
}

/// Whose answers [`Federation::record_answers`] records, and how to cache them.
struct Recorded<'a> {
    /// The person's gateway id.
    person_id: Uuid,
    /// Their NHS number.
    nhs: &'a NhsNumber,
    /// What the store held of them before, if anything.
    record: Option<&'a PersonRecord>,
    /// Now, Unix seconds.
    now: i64,
    /// See [`Federation::keep_from`].
    keep: Option<Instant>,
}

/// The current time, in seconds since the Unix epoch.
fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The local patient ids the stored record holds for this source (none when there is no
/// record).
fn known_links(record: Option<&PersonRecord>, source_id: &str) -> HashSet<String> {
    record
        .iter()
        .flat_map(|r| &r.links)
        .filter(|l| l.source_id == source_id)
        .map(|l| l.local_id.clone())
        .collect()
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
