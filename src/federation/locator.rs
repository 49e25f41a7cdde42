//! The record locator: an index in the store of which sources hold which NHS numbers, so that
//! finding a person asks only the sources that hold them, not every source of a region.
//!
//! The index is fed two ways. Resolution notes what sources answer (a source that has the
//! person is added, one that says it does not is removed), and a background sync lists each
//! source's NHS numbers on its own schedule ([`crate::sources::Source::nhs_numbers`]: a FHIR
//! server's `Patient` search for identifiers only, or an export's own numbers), a bounded
//! round at a time (pages and seconds), resumed where the last round stopped.
//!
//! A source is ruled out for a person only when the index says it does not hold them *and*
//! a pass over the source has completed: a source never synced (or that cannot be listed, or
//! whose sync is off) is always asked. When the index knows no source at all for the person,
//! `[locator] fallback` says whether every source is asked (`all`) or only those that cannot
//! be ruled out (`none`); either way the answer says so.
//!
//! Sync rounds are leased in the store, so that a fleet on one PostgreSQL syncs each source
//! once, whichever instance runs the round.
//!
//! An answer about a person the caller may see says what the index did ([`LocatorNote`]):
//! the sources it ruled out, each with the start of the sync pass its entries come from, and
//! the fallback when it knew no source. A staff caller may ask for a full look-up
//! (`X-Concord-Lookup: full`): the index then rules nothing out for that request (what it
//! learns from the answers is still kept), within `[locator] full_lookups_per_minute`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{LocatorConfig, LocatorFallback, SourceConfig, SourceKindName};
use crate::fhir::{CONCORD_CANONICAL, Issue, Severity, operation_outcome};
use crate::sources::Source;
use crate::store::{LocatorSource, PageRead, RoundEnd, Store, StoreError};
use crate::telemetry::{FallbackLabels, Metrics, RoundLabels, SourceLabels};

/// How often the sync loop looks for due rounds (and re-reads every source's sync state).
const TICK: Duration = Duration::from_secs(1);

/// A lease outlives its round's time limit by this much, so that a round that ends late is
/// not run twice; an instance that dies mid-round leaves its lease to run out.
const LEASE_MARGIN_SECS: i64 = 30;

/// Longest the locator's own reads for the readiness view may take.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// The record locator of one gateway instance.
#[derive(Debug)]
pub struct Locator {
    config: LocatorConfig,
    /// Each source's sync interval; `None`: never synced (the source is always asked).
    intervals: HashMap<String, Option<Duration>>,
    store: Store,
    metrics: Arc<Metrics>,
    /// Every source's sync as last read from the store (by the sync loop, every tick).
    seen: RwLock<HashMap<String, LocatorSource>>,
    /// Full look-ups left to this minute (`[locator] full_lookups_per_minute`).
    full_lookups: Mutex<Bucket>,
}

/// A token bucket: `per_minute` tokens, refilled evenly over the minute.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Which of the sources a resolution would ask, the locator says to ask.
#[derive(Debug)]
pub(super) struct Choice {
    /// Source ids to ask.
    pub(super) ask: HashSet<String>,
    /// Source ids the index says hold the person.
    pub(super) holders: HashSet<String>,
    /// The fallback used, when the index knew no source for the person.
    pub(super) fallback: Option<LocatorFallback>,
    /// The candidates it ruled out (not asked), in the order given.
    pub(super) ruled_out: Vec<RuledOut>,
}

/// A source the record locator ruled out for a person: its index entries, from the sync pass
/// that started at `synced_at`, do not list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuledOut {
    /// The source id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// The start of its last complete sync pass (Unix seconds): how fresh its entries are.
    pub synced_at: i64,
}

/// What the record locator did for one resolution, for the answer. Said only in an answer
/// that shows the caller something of the person: in one that discloses nothing it would
/// tell whether (and where) the index knows the NHS number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocatorNote {
    /// The fallback used, when the index knew no source holding the person.
    pub fallback: Option<LocatorFallback>,
    /// The sources it ruled out.
    pub ruled_out: Vec<RuledOut>,
    /// A full look-up was asked for: the index ruled nothing out.
    pub full: bool,
}

/// The code system of the record locator's OperationOutcome issues (in `details.coding`):
/// `locator-fallback-all`, `locator-fallback-none`, `locator-ruled-out` and `locator-full`.
pub const LOCATOR_CODE_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/locator";

/// Most ruled-out sources named one by one in an answer; the rest are counted.
pub const MAX_RULED_OUT_LISTED: usize = 20;

impl LocatorNote {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.fallback.is_none() && self.ruled_out.is_empty() && !self.full
    }

    /// The OperationOutcome entries that say it: one for a full look-up, one for the
    /// fallback, one naming the sources ruled out (at most [`MAX_RULED_OUT_LISTED`], the
    /// rest counted) with the start of the sync pass each one's entries come from.
    pub fn outcomes(&self) -> Vec<Value> {
        let mut outcomes = Vec::new();
        if self.full {
            outcomes.push(coded(
                vec![Issue::new(
                    Severity::Information,
                    "informational",
                    "A full look-up was made: the record locator ruled out no provider for this request.",
                )],
                "locator-full",
            ));
        }
        if let Some(fallback) = self.fallback {
            let (severity, code, text) = match fallback {
                LocatorFallback::All => (
                    Severity::Information,
                    "informational",
                    "The record locator knew no provider holding this person, so every provider was asked (locator fallback `all`).",
                ),
                LocatorFallback::None => (
                    Severity::Warning,
                    "incomplete",
                    "The record locator knew no provider holding this person, and providers it has indexed were not asked (locator fallback `none`): a provider that registered the person since its last sync may be missing from this result.",
                ),
            };
            outcomes.push(coded(
                vec![Issue::new(severity, code, text)],
                &format!("locator-fallback-{}", fallback.name()),
            ));
        }
        if !self.ruled_out.is_empty() {
            outcomes.push(self.ruled_out_outcome());
        }
        outcomes
    }

    /// One OperationOutcome: a first issue saying what ruling out means, then one issue per
    /// source (its id and name in `details.coding`), then how many more were not named.
    fn ruled_out_outcome(&self) -> Value {
        let n = self.ruled_out.len();
        let oldest = self
            .ruled_out
            .iter()
            .map(|r| r.synced_at)
            .min()
            .unwrap_or(0);
        let mut issues = vec![Issue::new(
            Severity::Information,
            "informational",
            format!(
                "The record locator ruled out {n} provider(s): their index entries, from each one's last complete sync (the oldest began {}), do not list this person, so they were not asked. A provider that registered the person since its sync is missing from this result; send `X-Concord-Lookup: full` to ask every provider.",
                rfc3339(oldest)
            ),
        )];
        let listed = self.ruled_out.iter().take(MAX_RULED_OUT_LISTED);
        issues.extend(listed.map(|r| {
            Issue::new(
                Severity::Information,
                "informational",
                format!(
                    "{} ({}) was not asked: its index entries are from the sync that began {}.",
                    r.name,
                    r.id,
                    rfc3339(r.synced_at)
                ),
            )
        }));
        if n > MAX_RULED_OUT_LISTED {
            let rest = &self.ruled_out[MAX_RULED_OUT_LISTED..];
            let oldest = rest.iter().map(|r| r.synced_at).min().unwrap_or(0);
            issues.push(Issue::new(
                Severity::Information,
                "informational",
                format!(
                    "{} more provider(s) were ruled out and are not named here; the oldest of their syncs began {}.",
                    rest.len(),
                    rfc3339(oldest)
                ),
            ));
        }
        let mut outcome = operation_outcome(&issues);
        let ruled_out = json!({"system": LOCATOR_CODE_SYSTEM, "code": "locator-ruled-out"});
        let source_system = format!("{CONCORD_CANONICAL}/CodeSystem/source");
        // Issue 0 says what ruling out means; issues 1..=listed name one source each.
        let named = std::iter::once(None)
            .chain(self.ruled_out.iter().take(MAX_RULED_OUT_LISTED).map(Some))
            .chain(std::iter::repeat(None));
        if let Some(all) = outcome.get_mut("issue").and_then(Value::as_array_mut) {
            for (issue, source) in all.iter_mut().zip(named) {
                let mut coding = vec![ruled_out.clone()];
                if let Some(r) = source {
                    coding.push(json!({"system": source_system, "code": r.id, "display": r.name}));
                }
                if let Some(issue) = issue.as_object_mut() {
                    issue.insert("details".into(), json!({ "coding": coding }));
                }
            }
        }
        outcome
    }
}

/// An OperationOutcome of `issues`, the first coded `code` in [`LOCATOR_CODE_SYSTEM`].
fn coded(issues: Vec<Issue>, code: &str) -> Value {
    let mut outcome = operation_outcome(&issues);
    if let Some(issue) = outcome
        .pointer_mut("/issue/0")
        .and_then(Value::as_object_mut)
    {
        issue.insert(
            "details".into(),
            json!({"coding": [{"system": LOCATOR_CODE_SYSTEM, "code": code}]}),
        );
    }
    outcome
}

/// A full look-up refused: this instance has made `[locator] full_lookups_per_minute`
/// already in the last minute.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "too many full look-ups: at most {per_minute} a minute on this instance; try again shortly"
)]
pub struct FullLookupsSpent {
    /// The limit.
    pub per_minute: u32,
}

impl Locator {
    /// A locator under `[locator]`, for the configured sources (each source's own
    /// `locator_sync_secs` wins over the default interval; 0 turns its sync off).
    pub fn new(
        config: LocatorConfig,
        sources: &[SourceConfig],
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Self {
        let intervals = sources
            .iter()
            .map(|s| {
                let secs = match s.kind {
                    SourceKindName::Store => 0,
                    _ => s.locator_sync_secs.unwrap_or(config.sync_interval_secs),
                };
                (s.id.clone(), (secs > 0).then(|| Duration::from_secs(secs)))
            })
            .collect();
        Self {
            intervals,
            full_lookups: Mutex::new(Bucket {
                tokens: f64::from(config.full_lookups_per_minute),
                at: Instant::now(),
            }),
            store,
            metrics,
            seen: RwLock::new(HashMap::new()),
            config,
        }
    }

    /// Takes one full look-up from this minute's allowance (`[locator]
    /// full_lookups_per_minute`, refilled evenly), or says that it is spent.
    pub fn admit_full_lookup(&self) -> Result<(), FullLookupsSpent> {
        let per_minute = self.config.full_lookups_per_minute;
        let mut bucket = self
            .full_lookups
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() * f64::from(per_minute) / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(per_minute));
        bucket.at = now;
        let admitted = bucket.tokens >= 1.0;
        if admitted {
            bucket.tokens -= 1.0;
        }
        drop(bucket);
        self.metrics
            .locator
            .full_lookups
            .get_or_create(&crate::telemetry::FullLookupLabels {
                result: if admitted { "made" } else { "refused" },
            })
            .inc();
        if admitted {
            Ok(())
        } else {
            Err(FullLookupsSpent { per_minute })
        }
    }

    /// `[locator]`.
    pub fn config(&self) -> &LocatorConfig {
        &self.config
    }

    /// The source's sync interval, when it is synced.
    fn interval(&self, source: &dyn Source) -> Option<Duration> {
        if !source.lists_nhs_numbers() {
            return None;
        }
        self.intervals.get(&source.info().id).copied().flatten()
    }

    /// True when a pass over the source has completed, so that the index can rule it out.
    fn synced(&self, source: &dyn Source) -> bool {
        self.interval(source).is_some()
            && self
                .seen
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&source.info().id)
                .is_some_and(|s| s.synced_at.is_some())
    }

    /// Of the sources a resolution would ask (`candidates`), those to ask: the ones the index
    /// says hold the person with `nhs`, and the ones it cannot rule out. When it knows no
    /// source for them (and `known` says no stored link names one either), the fallback
    /// decides. A `full` look-up asks every candidate (the holders are still read, so that
    /// what the candidates answer corrects the index).
    pub(super) async fn choose(
        &self,
        nhs: &str,
        candidates: &[&Arc<dyn Source>],
        known: bool,
        full: bool,
    ) -> Result<Choice, StoreError> {
        let holders: HashSet<String> = self.store.locator_holders(nhs).await?.into_iter().collect();
        let mut ask: HashSet<String> = candidates
            .iter()
            .filter(|s| full || holders.contains(&s.info().id) || !self.synced(s.as_ref()))
            .map(|s| s.info().id.clone())
            .collect();
        let any_holder = known || candidates.iter().any(|s| holders.contains(&s.info().id));
        let fallback = (!any_holder && !full).then_some(self.config.fallback);
        if fallback == Some(LocatorFallback::All) {
            ask = candidates.iter().map(|s| s.info().id.clone()).collect();
        }
        let ruled_out = {
            let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
            candidates
                .iter()
                .filter(|s| !ask.contains(&s.info().id))
                .map(|s| RuledOut {
                    id: s.info().id.clone(),
                    name: s.info().name.clone(),
                    // Ruled out only when synced: `synced_at` is there.
                    synced_at: seen
                        .get(&s.info().id)
                        .and_then(|row| row.synced_at)
                        .unwrap_or_default(),
                })
                .collect()
        };
        if let Some(mode) = fallback {
            self.metrics
                .locator
                .fallbacks
                .get_or_create(&FallbackLabels { mode: mode.name() })
                .inc();
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a count of sources is far below 2^52"
        )]
        self.metrics.locator.sources_asked.observe(ask.len() as f64);
        Ok(Choice {
            ask,
            holders,
            fallback,
            ruled_out,
        })
    }

    /// Notes what a source answered about the person with `nhs`, when it changes what the
    /// index holds: a source that has them and was not listed is added, one listed that does
    /// not have them is removed.
    pub(super) async fn learn(
        &self,
        nhs: &str,
        source_id: &str,
        holds: bool,
        listed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        if holds != listed {
            self.store.locator_note(source_id, nhs, holds, now).await?;
        }
        Ok(())
    }

    /// Re-reads every source's sync from the store, and sets the per-source gauges.
    async fn refresh(&self) -> Result<(), StoreError> {
        let rows = self.store.locator_sources().await?;
        let mut seen = HashMap::with_capacity(rows.len());
        for row in rows {
            let labels = SourceLabels {
                source: row.source_id.clone(),
            };
            self.metrics
                .locator
                .entries
                .get_or_create(&labels)
                .set(row.entries);
            self.metrics
                .locator
                .sync_failing
                .get_or_create(&labels)
                .set(i64::from(row.failed_at.is_some()));
            seen.insert(row.source_id.clone(), row);
        }
        let mut current = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        for (id, row) in &mut seen {
            // A round of this instance that ended while the rows were read is not undone.
            if let Some(mine) = current.get(id).and_then(|r| r.synced_at)
                && row.synced_at.is_none_or(|theirs| theirs < mine)
            {
                row.synced_at = Some(mine);
            }
        }
        *current = seen;
        Ok(())
    }

    /// Sets each synced source's sync age (for `/metrics`, at the time it is read).
    pub fn publish_ages(&self) {
        let now = now_secs();
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        for row in seen.values() {
            if let Some(synced) = row.synced_at {
                self.metrics
                    .locator
                    .sync_age
                    .get_or_create(&SourceLabels {
                        source: row.source_id.clone(),
                    })
                    .set(now.saturating_sub(synced));
            }
        }
    }

    /// The sync loop: every tick, re-reads the sources' syncs, and starts the rounds that are
    /// due (at most `max_concurrent_syncs` at once), each under this instance's lease. Ends
    /// when `alive` says the gateway is gone.
    pub async fn run(
        self: Arc<Self>,
        sources: Vec<Arc<dyn Source>>,
        instance: String,
        alive: impl Fn() -> bool + Send,
    ) {
        let synced: Vec<(Arc<dyn Source>, Duration)> = sources
            .into_iter()
            .filter_map(|s| self.interval(s.as_ref()).map(|i| (s, i)))
            .collect();
        let ids: Vec<String> = synced.iter().map(|(s, _)| s.info().id.clone()).collect();
        let mut registered = false;
        let mut running: JoinSet<String> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        let mut failing = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !alive() {
                running.abort_all();
                return;
            }
            while let Some(done) = running.try_join_next() {
                if let Ok(id) = done {
                    busy.remove(&id);
                }
            }
            if !registered {
                match self.store.locator_register(&ids, now_secs()).await {
                    Ok(()) => registered = true,
                    Err(error) => {
                        tracing::warn!(%error, "record locator: cannot register the sources to sync");
                        continue;
                    }
                }
            }
            match self.refresh().await {
                Ok(()) if failing => {
                    tracing::info!("record locator: the store answers again");
                    failing = false;
                }
                Ok(()) => {}
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "record locator: cannot read the sources' syncs");
                    }
                    failing = true;
                    continue;
                }
            }
            let now = now_secs();
            let due: Vec<&(Arc<dyn Source>, Duration)> = {
                let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
                synced
                    .iter()
                    .filter(|(s, _)| !busy.contains(&s.info().id))
                    .filter(|(s, _)| {
                        seen.get(&s.info().id).is_some_and(|row| {
                            row.due_at <= now && row.lease_until.is_none_or(|l| l < now)
                        })
                    })
                    .collect()
            };
            for (source, interval) in due {
                if running.len() >= self.config.max_concurrent_syncs {
                    break;
                }
                let lease = now + secs(self.config.round_secs) + LEASE_MARGIN_SECS;
                let claimed = match self
                    .store
                    .locator_claim(&source.info().id, &instance, now, lease)
                    .await
                {
                    Ok(Some(row)) => row,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, source.id = %source.info().id, "record locator: cannot take a sync round");
                        continue;
                    }
                };
                busy.insert(source.info().id.clone());
                let locator = self.clone();
                let source = source.clone();
                let interval = *interval;
                running.spawn(async move {
                    let id = source.info().id.clone();
                    locator.round(source.as_ref(), claimed, interval).await;
                    id
                });
            }
        }
    }

    /// One round of a source's sync: pages from where the pass stands, until the pass ends,
    /// the round's page or time limit is reached, or a page fails; then the lease is given
    /// back with when the next round is due.
    async fn round(&self, source: &dyn Source, row: LocatorSource, interval: Duration) {
        let id = source.info().id.clone();
        let started = now_secs();
        let deadline = Instant::now() + Duration::from_secs(self.config.round_secs);
        let (mut cursor, pass_started, mut pages) = match row.cursor {
            Some(cursor) => (
                Some(cursor),
                row.pass_started_at.unwrap_or(started),
                row.pages,
            ),
            None => (None, started, 0),
        };
        let mut read = 0;
        let mut completed = None;
        let mut failure: Option<&'static str> = None;
        while read < self.config.max_pages_per_round && Instant::now() < deadline {
            let page = tokio::time::timeout_at(
                deadline,
                source.nhs_numbers(cursor.as_deref(), self.config.page_size),
            )
            .await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    tracing::warn!(source.id = %id, %error, "record locator: a sync page failed");
                    failure = Some(error.kind());
                    break;
                }
                Err(_) => {
                    // Out of time is not a failure: the pass goes on next round.
                    break;
                }
            };
            read += 1;
            pages += 1;
            let saved = PageRead {
                numbers: &page.numbers,
                next: page.next.as_deref(),
                pass_started_at: pass_started,
                pages,
            };
            if let Err(error) = self.store.locator_save_page(&id, &saved, now_secs()).await {
                tracing::warn!(source.id = %id, %error, "record locator: cannot save a sync page");
                failure = Some("store_error");
                break;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => {
                    completed = Some(pass_started);
                    break;
                }
            }
        }
        let now = now_secs();
        let (due_at, result) = match (completed, failure) {
            (_, Some(_)) => (
                now + secs(self.config.retry_secs.min(interval.as_secs())),
                "failed",
            ),
            (Some(_), None) => (now + secs(interval.as_secs()), "complete"),
            (None, None) => (now, "partial"),
        };
        // This instance rules the source out from now on, not from the next re-read of the
        // store: never later than the store says it may.
        self.seen_round(&id, completed, due_at);
        let end = RoundEnd {
            completed,
            due_at,
            failure: failure.map(|kind| (started, kind)),
        };
        self.metrics
            .locator
            .rounds
            .get_or_create(&RoundLabels {
                source: id.clone(),
                result,
            })
            .inc();
        let labels = SourceLabels { source: id.clone() };
        self.metrics
            .locator
            .sync_failing
            .get_or_create(&labels)
            .set(i64::from(failure.is_some()));
        match self.store.locator_end_round(&id, &end).await {
            Ok(entries) => {
                self.metrics
                    .locator
                    .entries
                    .get_or_create(&labels)
                    .set(entries);
            }
            Err(error) => {
                // The lease runs out on its own; the round is then run again.
                tracing::warn!(source.id = %id, %error, "record locator: cannot end a sync round");
            }
        }
    }

    /// Records in this instance's copy of the sources' syncs how a round it ran ended.
    fn seen_round(&self, id: &str, completed: Option<i64>, due_at: i64) {
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = seen.get_mut(id) {
            if let Some(started) = completed {
                row.synced_at = Some(started);
            }
            row.due_at = due_at;
            row.lease_until = None;
        }
    }

    /// The `locator` part of the operator's readiness view: per source, whether it is synced,
    /// how fresh its last complete pass is, the pass under way, entries and the last failure.
    pub async fn view(&self, sources: &[Arc<dyn Source>]) -> Value {
        let mut view = json!({
            "enabled": true,
            "fallback": self.config.fallback.name(),
            "sync_interval_secs": self.config.sync_interval_secs,
        });
        let rows = match tokio::time::timeout(STORE_WAIT, self.store.locator_sources()).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: cannot read the record locator");
                view["error"] = json!("the store did not say how fresh the record locator is");
                return view;
            }
            Err(_) => {
                view["error"] = json!("the store did not say how fresh the record locator is");
                return view;
            }
        };
        let rows: HashMap<&str, &LocatorSource> =
            rows.iter().map(|r| (r.source_id.as_str(), r)).collect();
        let now = now_secs();
        view["sources"] = sources
            .iter()
            .map(|s| {
                let id = s.info().id.as_str();
                let Some(interval) = self.interval(s.as_ref()) else {
                    return json!({"id": id, "state": "not synced (always asked)"});
                };
                let row = rows.get(id);
                let synced = row.and_then(|r| r.synced_at);
                let state = match (synced, row.and_then(|r| r.failed_at)) {
                    (_, Some(_)) => "failing",
                    (Some(_), None) => "synced",
                    (None, None) => "never synced (always asked)",
                };
                json!({
                    "id": id,
                    "state": state,
                    "interval_secs": interval.as_secs(),
                    "synced_at": synced.map(rfc3339),
                    "age_secs": synced.map(|t| now.saturating_sub(t)),
                    "entries": row.map_or(0, |r| r.entries),
                    "pass_under_way": row.is_some_and(|r| r.cursor.is_some()),
                    "pages_in_pass": row.map_or(0, |r| r.pages),
                    "last_failure": row.and_then(|r| r.failed_at.map(|at| json!({"at": rfc3339(at), "kind": r.failure}))),
                    "leased_by": row.and_then(|r| r.leased_by.clone()),
                })
            })
            .collect();
        view
    }
}

/// Seconds as the store's integer.
fn secs(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 4)
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// The current time, in Unix seconds.
fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}
