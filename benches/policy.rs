//! What enforcing data-sharing agreements costs, measured two ways in one run:
//!
//! 1. The decision itself, over 50 generated agreements of 10 rules each (a fixed-seed
//!    SplitMix64, so every run reads the same files) and a label map of 20 mappings:
//!    (a) `PolicySet::for_caller`, the plan made once per request; (b) `CallerPolicy::decide`,
//!    once per resource, for permitted and withheld resources separately; (c) one request's
//!    worth of both (a plan and 21 decisions); (d) `LabelMap::labels_of` on one Condition.
//!    Timed in batches (the clock is read once per batch, the time divided by its size); the
//!    medians and p99s are of those per-call averages, not of single calls. (a) to (c) are
//!    timed again over the same files with a FHIRPath `where` condition on half the rules,
//!    when the checker accepts them; when it refuses them, the output says that case is not
//!    measured and why.
//! 2. The gateway's throughput with agreements on and with a permit-all set, side by side:
//!    two gateways in this process on 127.0.0.1 over the same NDJSON source (one person, 21
//!    resources), one enforcing the 50 generated agreements plus one that permits the
//!    benchmark's caller, one a single agreement that permits everything. Both run every
//!    request as the same fixed principal (no token verified), so the difference is the
//!    agreements. Driven by wrk (`-t1 -c32`), alternating A and B three times; without wrk
//!    on the PATH, by an in-process closed loop instead (said in the output).
//!
//! Run with `cargo bench --bench policy`; `LOAD_SECONDS` (default 10) sets each wrk run's
//! length. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

#[path = "policy/end_to_end.rs"]
mod end_to_end;
#[path = "policy/generated.rs"]
mod generated;
#[path = "common/load.rs"]
mod load;
#[path = "common/rng.rs"]
mod rng;

use generated::{date_from, load, ods_pool, served_types, write_generated};
use rng::SplitMix64;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use jiff::civil::Date;
use serde_json::{Value, json};

use concord::policy::PolicySet;
use concord::policy::engine::{Acting, Caller, CallerPolicy, Consent, Item};

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 0xC0C0_A11D_2026_1125;
const AGREEMENTS: usize = 50;
const RULES: usize = 10;
/// The benchmark gateway's one source, and the benchmark caller's organisation.
const SOURCE_ODS: &str = "A81001";
const NHS: &str = "9990000018";
/// Resources in the benchmark person's record (the Patient included).
const RECORD: usize = 21;

const ROLES: &[&str] = &[
    "clinician",
    "nurse",
    "paramedic",
    "pharmacist",
    "social-worker",
    "midwife",
    "care-coordinator",
    "receptionist",
];
const STAFF_PURPOSES: &[&str] = &["TREAT", "TREAT", "TREAT", "CAREMGT", "COC", "ETREAT"];
const RELATIONSHIPS: &[&str] = &[
    "SON", "DAU", "SPS", "WIFE", "HUSB", "FAMMEMB", "NBOR", "FRND",
];
/// Labels a resource may carry in the decision benchmark, as drawn (mostly none).
const LABEL_SETS: &[&[&str]] = &[
    &[],
    &[],
    &[],
    &[],
    &[],
    &[],
    &[],
    &[],
    &["PSY"],
    &["HIV"],
    &["SEX", "STD"],
    &["SAFEGUARDING"],
    &["MH", "SUD"],
];

// ---------------------------------------------------------------------------------------------
// Timing.

struct Stats {
    median: f64,
    p99: f64,
    mean: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `op` on inputs 0, 1, 2, … in `batches` timed batches of `size` after one untimed
/// batch; ns per call of each batch.
fn measure(batches: usize, size: usize, mut op: impl FnMut(usize)) -> Stats {
    let mut i = 0;
    for _ in 0..size {
        op(i);
        i += 1;
    }
    let mut per_call = Vec::with_capacity(batches);
    let mut total = 0.0;
    for _ in 0..batches {
        let started = Instant::now();
        for _ in 0..size {
            op(i);
            i += 1;
        }
        let ns = started.elapsed().as_nanos() as f64;
        total += ns;
        per_call.push(ns / size as f64);
    }
    per_call.sort_by(f64::total_cmp);
    Stats {
        median: percentile(&per_call, 0.5),
        p99: percentile(&per_call, 0.99),
        mean: total / (batches * size) as f64,
    }
}

/// `812 ns` or `3.41 µs`.
fn duration(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

fn row(label: &str, batch: usize, stats: &Stats) {
    println!(
        "{label:<50} {batch:>6} {:>10} {:>10} {:>10} {:>12.0}",
        duration(stats.median),
        duration(stats.p99),
        duration(stats.mean),
        1e9 / stats.median
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Decisions.

/// A random caller: mostly staff of some organisation of the pool; some people and carers.
fn random_caller<'a>(rng: &mut SplitMix64, ods: &'a [String]) -> Caller<'a> {
    let kind = rng.below(20);
    if kind == 0 {
        return Caller {
            org: None,
            role: None,
            purpose: "PATRQT",
            emergency: false,
            acting: Acting::Person,
        };
    }
    if kind == 1 {
        return Caller {
            org: None,
            role: None,
            purpose: "FAMRQT",
            emergency: false,
            acting: Acting::Carer(rng.pick(RELATIONSHIPS)),
        };
    }
    let emergency = rng.chance(0.05);
    Caller {
        org: Some(rng.pick_ref(ods).as_str()),
        role: Some(rng.pick(ROLES)),
        purpose: if emergency {
            "TREAT"
        } else {
            rng.pick(STAFF_PURPOSES)
        },
        emergency,
        acting: Acting::Staff,
    }
}

/// The rules `for_caller` keeps for `caller`, counted independently of the engine (its list
/// is private): shows how much work each `decide` has.
fn applicable_rules(set: &PolicySet, caller: &Caller<'_>, today: Date) -> usize {
    use concord::policy::Audience;
    set.agreements
        .iter()
        .filter(|a| a.in_force(today))
        .filter(|a| match (a.access, caller.acting) {
            (Audience::Staff, Acting::Staff) => caller
                .org
                .is_some_and(|o| a.recipients.iter().any(|r| r == o)),
            (Audience::Patient, Acting::Person | Acting::Carer(_)) => true,
            _ => false,
        })
        .flat_map(|a| a.rules.iter().map(move |r| (a, r)))
        .filter(|(a, r)| match (a.access, caller.acting) {
            (Audience::Staff, _) => caller.role.is_some_and(|x| r.roles.iter().any(|y| y == x)),
            (Audience::Patient, Acting::Carer(rel)) => r.relationships.iter().any(|y| y == rel),
            (Audience::Patient, _) => r.relationships.is_empty(),
        })
        .filter(|(_, r)| {
            r.purpose_of_use.iter().any(|p| p == caller.purpose)
                || (caller.emergency && r.purpose_of_use.iter().any(|p| p == "ETREAT"))
        })
        .count()
}

/// One resource of each type a rule may name, as a provider's system might hold it: what the
/// decision benchmark's items carry for FHIRPath conditions.
fn sample_resources() -> Vec<(&'static str, Value)> {
    served_types()
        .into_iter()
        .map(|ty| {
            let mut resource = json!({
                "resourceType": ty, "id": format!("{}-1", ty.to_lowercase()),
                "meta": {"lastUpdated": "2026-10-03T12:23:00Z"},
            });
            if ty != "Patient" {
                resource["status"] = json!(if ty == "Observation" { "final" } else { "active" });
                resource["code"] = json!({"coding": [
                    {"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}
                ]});
                resource["subject"] = json!({"reference": "Patient/cc49a8e8-c9f6-461c-9714-f665c80d89e1"});
            }
            (ty, resource)
        })
        .collect()
}

/// A resource for `caller`: from an organisation that discloses to the caller's in some
/// agreement, as often as not (otherwise nearly everything would be withheld at once), of a
/// type some rule there names.
fn random_item<'a>(
    rng: &mut SplitMix64,
    set: &PolicySet,
    caller: &Caller<'_>,
    ods: &'a [String],
    samples: &'a [(&'static str, Value)],
    consents: &'a [Consent],
) -> Item<'a> {
    let related: Vec<&concord::policy::Agreement> = set
        .agreements
        .iter()
        .filter(|a| match caller.org {
            Some(org) => a.recipients.iter().any(|r| r == org),
            None => a.recipients.is_empty(),
        })
        .collect();
    let (source, sample) = if !related.is_empty() && rng.chance(0.6) {
        let agreement = rng.pick(&related);
        let discloser = rng.pick_ref(&agreement.disclosers);
        let source = ods
            .iter()
            .position(|o| o == discloser)
            .expect("disclosers come from the pool");
        let named = &rng.pick_ref(&agreement.rules).resources;
        let sample = match rng.pick_ref(named).as_str() {
            "*" => rng.below(samples.len()),
            t => samples
                .iter()
                .position(|(ty, _)| *ty == t)
                .expect("a served type"),
        };
        (source, sample)
    } else {
        (rng.below(ods.len()), rng.below(samples.len()))
    };
    let (resource_type, resource) = &samples[sample];
    Item {
        source_org: &ods[source],
        resource_type,
        labels: rng.pick(LABEL_SETS),
        resource: Some(resource),
        care_relationship: rng.chance(0.7),
        consent: &consents[usize::from(rng.chance(0.05))],
    }
}

/// A Condition as a GP system exports it; `sensitive` gives it a depression code (PSY).
fn condition(sensitive: bool) -> Value {
    let (snomed, display, icd) = if sensitive {
        ("35489007", "Depressive disorder", "F32.1")
    } else {
        ("38341003", "Hypertensive disorder", "I10")
    };
    json!({
        "resourceType": "Condition",
        "id": "0f2377a7-20ea-46a9-adef-555936edd0f5",
        "meta": {"lastUpdated": "2026-09-03T15:27:00Z"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active", "display": "Active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed", "display": "Confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]}],
        "severity": {"coding": [{"system": "http://snomed.info/sct", "code": "6736007", "display": "Moderate"}]},
        "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": snomed, "display": display},
            {"system": "http://hl7.org/fhir/sid/icd-10", "code": icd}
        ], "text": display},
        "subject": {"reference": "Patient/cc49a8e8-c9f6-461c-9714-f665c80d89e1"},
        "encounter": {"reference": "Encounter/9129b3c5-f7df-4896-a90e-56f3cc0a3fe0"},
        "onsetDateTime": "2019-04-11",
        "recordedDate": "2019-04-11T10:20:00+01:00",
        "recorder": {"identifier": {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "G8133438"}, "display": "Dr A Smith"},
        "evidence": [{"code": [{"coding": [{"system": "http://snomed.info/sct", "code": "271649006", "display": "Systolic blood pressure"}]}]}],
        "note": [{"text": "Reviewed at annual check."}]
    })
}

/// The callers and resources every set is timed on, drawn once.
struct Workload<'a> {
    /// Random callers, including those no rule applies to.
    all_callers: Vec<Caller<'a>>,
    /// Those some rule applies to: the gateway answers 403 to the others before any decision.
    callers: Vec<Caller<'a>>,
    /// (caller, resource) pairs, by index into `callers`.
    pairs: Vec<(usize, Item<'a>)>,
    /// One request each: a caller and the 21 resources of a record.
    requests: Vec<(usize, Vec<Item<'a>>)>,
}

fn workload<'a>(
    set: &PolicySet,
    ods: &'a [String],
    samples: &'a [(&'static str, Value)],
    consents: &'a [Consent],
    today: Date,
) -> Workload<'a> {
    let mut rng = SplitMix64(SEED ^ 0x0DEC_1DE5);
    let all_callers: Vec<Caller<'a>> = (0..4_000).map(|_| random_caller(&mut rng, ods)).collect();
    let mut counts: Vec<usize> = all_callers
        .iter()
        .map(|c| applicable_rules(set, c, today))
        .collect();
    let callers: Vec<Caller<'a>> = all_callers
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(c, _)| *c)
        .collect();
    counts.retain(|n| *n > 0);
    counts.sort_unstable();
    println!(
        "random callers: {} of {} have some rule (the rest get 403 before any decision); \
         rules kept per such caller: median {}, max {}",
        callers.len(),
        all_callers.len(),
        counts[counts.len() / 2],
        counts[counts.len() - 1]
    );
    let pairs = (0..40_000)
        .map(|k| {
            let c = k % callers.len();
            (
                c,
                random_item(&mut rng, set, &callers[c], ods, samples, consents),
            )
        })
        .collect();
    let requests = (0..2_000)
        .map(|k| {
            let c = k % callers.len();
            let items = (0..RECORD)
                .map(|_| random_item(&mut rng, set, &callers[c], ods, samples, consents))
                .collect();
            (c, items)
        })
        .collect();
    Workload {
        all_callers,
        callers,
        pairs,
        requests,
    }
}

/// Times planning and deciding over `set`; the median of `decide` on the mixed draw.
fn time_set(set: &PolicySet, work: &Workload<'_>, tag: &str, today: Date) -> f64 {
    let policies: Vec<CallerPolicy<'_>> = work
        .callers
        .iter()
        .map(|c| set.for_caller(c, today))
        .collect();
    for (c, p) in work.callers.iter().zip(&policies) {
        assert!(!p.is_empty(), "the engine and the count agree: {c:?}");
    }
    let (permitted, withheld): (Vec<_>, Vec<_>) = work
        .pairs
        .iter()
        .partition(|(c, item)| policies[*c].decide(item).is_some());
    assert!(
        permitted.len() >= 1_000 && withheld.len() >= 1_000,
        "enough of each: {} permitted, {} withheld",
        permitted.len(),
        withheld.len()
    );
    println!(
        "-- {}: of {} resources drawn for those callers, {} permitted, {} withheld",
        if tag.is_empty() {
            "without FHIRPath conditions"
        } else {
            "with FHIRPath conditions [where]"
        },
        work.pairs.len(),
        permitted.len(),
        withheld.len()
    );
    let plan = measure(400, 100, |i| {
        let caller = &work.all_callers[i % work.all_callers.len()];
        black_box(set.for_caller(black_box(caller), today));
    });
    row(
        &format!("(a) for_caller, once per request{tag}"),
        100,
        &plan,
    );
    let mixed: Vec<&(usize, Item<'_>)> = work.pairs.iter().collect();
    let mut median = 0.0;
    for (label, pairs) in [
        ("permitted", &permitted),
        ("withheld", &withheld),
        ("as drawn", &mixed),
    ] {
        let stats = measure(400, 1_000, |i| {
            let (c, item) = pairs[i % pairs.len()];
            black_box(policies[*c].decide(black_box(item)));
        });
        row(&format!("(b) decide, {label}{tag}"), 1_000, &stats);
        median = stats.median;
    }
    let request = measure(400, 20, |i| {
        let (c, items) = &work.requests[i % work.requests.len()];
        let policy = set.for_caller(black_box(&work.callers[*c]), today);
        for item in items {
            black_box(policy.decide(black_box(item)));
        }
    });
    row(
        &format!("(c) for_caller + {RECORD} decides{tag}"),
        20,
        &request,
    );
    median
}

fn decisions(dir: &Path, today: Date) {
    let ods = ods_pool(&mut SplitMix64(SEED));
    let generated = dir.join("generated");
    write_generated(&generated, &ods, today, false);
    let started = Instant::now();
    let set = load(&generated, today);
    let load_time = started.elapsed();
    let rules: usize = set.agreements.iter().map(|a| a.rules.len()).sum();
    let in_force = set.agreements.iter().filter(|a| a.in_force(today)).count();
    println!(
        "\n1. deciding, {} agreements ({in_force} in force) of {RULES} rules ({rules} rules), {} label mappings; \
         loaded and checked in {:.1} ms, {} warning(s)",
        set.agreements.len(),
        set.labels.mappings.len(),
        load_time.as_secs_f64() * 1e3,
        set.warnings.len()
    );
    let samples = sample_resources();
    let consents = [
        Consent::default(),
        Consent {
            not_from: vec![ods[1].clone(), ods[2].clone()],
            not_to: vec![ods[3].clone()],
        },
    ];
    let work = workload(&set, &ods, &samples, &consents, today);

    // The same files, half the rules with a FHIRPath condition; measured only when this
    // version of the gateway accepts them.
    let conditional = dir.join("generated-where");
    write_generated(&conditional, &ods, today, true);
    let with_where = PolicySet::load(&conditional, today);
    if let Ok(w) = &with_where {
        let conditioned = w
            .agreements
            .iter()
            .flat_map(|a| &a.rules)
            .filter(|r| r.where_.is_some())
            .count();
        println!(
            "with FHIRPath: the same set with a `where` condition on {conditioned} of its {rules} rules"
        );
    }

    println!(
        "\n{:<50} {:>6} {:>10} {:>10} {:>10} {:>12}",
        "operation (time per call)", "batch", "median", "p99", "mean", "per second"
    );
    let plain = time_set(&set, &work, "", today);
    let conditioned = with_where
        .as_ref()
        .ok()
        .map(|w| time_set(w, &work, " [where]", today));

    for (label, sensitive) in [
        ("(d) labels_of, Condition, no sensitive code", false),
        ("(d) labels_of, Condition coded as depression", true),
    ] {
        let resource = condition(sensitive);
        let labels = set.labels.labels_of(&resource);
        assert_eq!(labels.is_empty(), !sensitive, "labels found: {labels:?}");
        let stats = measure(400, 100, |_| {
            black_box(set.labels.labels_of(black_box(&resource)));
        });
        row(label, 100, &stats);
    }

    let verdict = |median: f64| if median < 2_000.0 { "under" } else { "OVER" };
    println!(
        "decide without FHIRPath, median {}: {} the 2 µs per resource aimed at",
        duration(plain),
        verdict(plain)
    );
    match (conditioned, &with_where) {
        (Some(median), _) => println!(
            "decide with FHIRPath conditions, median {}: {} 2 µs",
            duration(median),
            verdict(median)
        ),
        (None, Err(errors)) => println!(
            "with FHIRPath conditions: NOT MEASURED. This version of the gateway does not \
             evaluate FHIRPath: the checker refuses the rules with `where` ({} error(s), the first: {})",
            errors.0.len(),
            errors
                .0
                .first()
                .map_or_else(String::new, ToString::to_string)
        ),
        (None, Ok(_)) => unreachable!("a set that loads is measured"),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let today = concord::policy::live::today();
    println!("concord policy benchmarks (release build, 127.0.0.1), today {today}");
    decisions(dir.path(), today);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(end_to_end::throughput(dir.path(), today));
}
