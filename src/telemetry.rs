//! Prometheus metrics. Labels are routes, source ids and outcome kinds: never anything about
//! a person.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod source_health;

pub use source_health::{ConformanceCheck, RECENT_FAULTS, RecentFault, SourceHealth};

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/fhir/{type}/{id}`), never the concrete path.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Response status code.
    pub status: u16,
}

/// Labels naming a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

/// Labels of a call to a source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceCallLabels {
    /// The source id.
    pub source: String,
    /// `find_patient`, `search`, `everything`, `read`.
    pub operation: &'static str,
    /// `ok`, or the failure kind (`timeout`, `unavailable`, `http_error`, `invalid_response`, …).
    pub result: &'static str,
}

/// Labels naming a source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The source id.
    pub source: String,
}

/// Labels of a fault in what a source returned.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// The source id.
    pub source: String,
    /// `foreign_resource` (not about the person asked for), `invalid_resource`, `truncated`, …
    pub kind: &'static str,
}

/// Labels saying why the gateway refused or closed a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `max_connections`, `max_connections_per_client` (refused); `header_timeout`,
    /// `body_timeout`, `idle_timeout`, `send_timeout`, `evicted`, `shutdown` (closed).
    pub reason: &'static str,
}

/// Labels of a change notice heard from another instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoticeLabels {
    /// `consent`, `links`, or `unrecognised`.
    pub kind: &'static str,
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP request latency.
    pub http_duration: Family<RouteLabels, Histogram>,
    /// Calls to sources.
    pub source_calls: Family<SourceCallLabels, Counter>,
    /// Latency of calls to sources.
    pub source_duration: Family<SourceLabels, Histogram>,
    /// Faults found in sources' answers.
    pub source_faults: Family<FaultLabels, Counter>,
    /// Circuit breaker state per source: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<SourceLabels, Gauge>,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// Client connections refused at once (over a cap).
    pub connections_refused: Family<ConnectionLabels, Counter>,
    /// Client connections the gateway closed (a timeout, eviction, shutdown).
    pub connections_closed: Family<ConnectionLabels, Counter>,
    /// What the IG console shows of each source: recent faults, the last conformance check.
    source_health: source_health::SourceHealthLog,
    /// The change listener: 0 not needed (SQLite), 1 down (caches bypassed), 2 listening.
    pub change_listener: Gauge,
    /// Change notices heard from the store's other writers.
    pub change_notices: Family<NoticeLabels, Counter>,
    /// Instances of the fleet heard from within the window, this one included.
    pub fleet_instances: Gauge,
    /// Distinct policy sets those instances enforce (more than 1: they disagree).
    pub fleet_policy_sets: Gauge,
    /// The record locator's metrics.
    pub locator: LocatorMetrics,
    /// How long each commit of audit records to the store took, from the writer's hand-over
    /// to the store's answer (the disk's flush included): what every request waits for.
    pub audit_commit_seconds: Histogram,
    /// How many records each commit to the store held (concurrent requests share one).
    pub audit_commit_records: Histogram,
}

/// Labels of a locator sync round: the source and how the round ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoundLabels {
    /// Source id.
    pub source: String,
    /// `complete` (a pass ended), `partial` (the pass goes on next round) or `failed`.
    pub result: &'static str,
}

/// Labels of a locator fallback: which one was used.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// `all` or `none`.
    pub mode: &'static str,
}

/// Labels of a full look-up asked for: `made` or `refused` (over the instance's limit).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FullLookupLabels {
    /// `made` or `refused`.
    pub result: &'static str,
}

/// The record locator's metrics (no NHS number is ever a label).
#[derive(Debug)]
pub struct LocatorMetrics {
    /// Seconds since the start of each source's last complete sync pass (absent: never).
    pub sync_age: Family<SourceLabels, Gauge>,
    /// NHS numbers the index holds for each source, as last counted.
    pub entries: Family<SourceLabels, Gauge>,
    /// 1 while a source's last sync round failed.
    pub sync_failing: Family<SourceLabels, Gauge>,
    /// Sync rounds run by this instance, by source and result.
    pub rounds: Family<RoundLabels, Counter>,
    /// Resolutions for which the index knew no source, by the fallback used.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// Sources asked whether they know the person, per resolution that consulted the locator.
    pub sources_asked: Histogram,
    /// Full look-ups asked for (`X-Concord-Lookup: full`), made or refused.
    pub full_lookups: Family<FullLookupLabels, Counter>,
}

impl LocatorMetrics {
    fn new() -> Self {
        Self {
            sync_age: Family::default(),
            entries: Family::default(),
            sync_failing: Family::default(),
            rounds: Family::default(),
            fallbacks: Family::default(),
            sources_asked: Histogram::new([
                0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
            ]),
            full_lookups: Family::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "locator_sync_age_seconds",
            "Seconds since the start of each source's last complete record-locator sync pass",
            self.sync_age.clone(),
        );
        registry.register(
            "locator_entries",
            "NHS numbers the record locator holds for each source, as last counted",
            self.entries.clone(),
        );
        registry.register(
            "locator_sync_failing",
            "1 while a source's last record-locator sync round failed",
            self.sync_failing.clone(),
        );
        registry.register(
            "locator_sync_rounds",
            "Record-locator sync rounds run by this instance, by source and result",
            self.rounds.clone(),
        );
        registry.register(
            "locator_fallbacks",
            "Resolutions for which the record locator knew no source holding the person, by fallback",
            self.fallbacks.clone(),
        );
        registry.register(
            "locator_sources_asked",
            "Sources asked whether they know the person, per resolution that consulted the record locator",
            self.sources_asked.clone(),
        );
        registry.register(
            "locator_full_lookups",
            "Full look-ups asked for (every source asked, the record locator ruling nothing out), made or refused",
            self.full_lookups.clone(),
        );
    }
}

/// 0.1 ms .. ~3 s: a commit waits for the disk, so it takes longer than a request's own
/// work and less than the request timeout.
fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Metrics {
    /// A fresh set of metrics in their own registry.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("concord");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let source_calls = Family::<SourceCallLabels, Counter>::default();
        let source_duration = Family::<SourceLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let source_faults = Family::<FaultLabels, Counter>::default();
        let breaker_state = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register(
            "source_calls",
            "Calls to source systems",
            source_calls.clone(),
        );
        registry.register(
            "source_call_duration_seconds",
            "Latency of calls to source systems",
            source_duration.clone(),
        );
        registry.register(
            "source_faults",
            "Faults found in source answers (resources dropped or truncated)",
            source_faults.clone(),
        );
        registry.register(
            "source_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        let connections_open = Gauge::default();
        let connections_refused = Family::<ConnectionLabels, Counter>::default();
        let connections_closed = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections refused at once because a cap was reached",
            connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections the gateway closed: timeouts, eviction, shutdown",
            connections_closed.clone(),
        );
        let change_listener = Gauge::default();
        let change_notices = Family::<NoticeLabels, Counter>::default();
        let fleet_instances = Gauge::default();
        let fleet_policy_sets = Gauge::default();
        registry.register(
            "change_listener_state",
            "The listener for changes made through other instances: 0 not needed (SQLite), 1 down (links and sharing choices read from the store on every request), 2 listening",
            change_listener.clone(),
        );
        registry.register(
            "change_notices",
            "Change notices heard from other instances, by kind",
            change_notices.clone(),
        );
        registry.register(
            "fleet_instances",
            "Gateway instances on this store heard from within the fleet window",
            fleet_instances.clone(),
        );
        registry.register(
            "fleet_policy_sets",
            "Distinct policy sets the fleet's instances enforce (more than 1: they disagree)",
            fleet_policy_sets.clone(),
        );
        let locator = LocatorMetrics::new();
        locator.register(&mut registry);
        let audit_commit_seconds = commit_histogram();
        // 1 .. 512 (the writer's largest batch).
        let audit_commit_records = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "audit_commit_duration_seconds",
            "How long each commit of audit records to the store took, the disk's flush included; every audited request waits for one",
            audit_commit_seconds.clone(),
        );
        registry.register(
            "audit_commit_records",
            "Audit records per commit to the store: concurrent requests share a commit",
            audit_commit_records.clone(),
        );
        Arc::new(Metrics {
            registry,
            http_requests,
            http_duration,
            source_calls,
            source_duration,
            source_faults,
            breaker_state,
            connections_open,
            connections_refused,
            connections_closed,
            source_health: source_health::SourceHealthLog::default(),
            change_listener,
            change_notices,
            fleet_instances,
            fleet_policy_sets,
            locator,
            audit_commit_seconds,
            audit_commit_records,
        })
    }

    /// Counts a connection refused over a cap.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ConnectionLabels { reason })
            .inc();
    }

    /// Counts a connection the gateway closed.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ConnectionLabels { reason })
            .inc();
    }

    /// Records one call to a source.
    pub fn source_call(
        &self,
        source: &str,
        operation: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        self.source_calls
            .get_or_create(&SourceCallLabels {
                source: source.to_owned(),
                operation,
                result,
            })
            .inc();
        self.source_duration
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        let failure = (result != "ok").then_some(result);
        self.source_health.call(source, operation, failure);
    }

    /// Records faults in a source's answer.
    pub fn source_fault(&self, source: &str, kind: &'static str, count: u64) {
        if count > 0 {
            self.source_faults
                .get_or_create(&FaultLabels {
                    source: source.to_owned(),
                    kind,
                })
                .inc_by(count);
            self.source_health.fault(source, kind, count);
        }
    }

    /// Records that one resource of a source was checked against the profiles.
    pub fn conformance_checked(&self, source: &str, conformed: bool) {
        self.source_health.checked(source, conformed);
    }

    /// What is known of a source since the process started (for the IG console).
    pub fn source_health(&self, source: &str) -> SourceHealth {
        self.source_health.of(source)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
