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

#[path = "common/load.rs"]
mod load;
#[path = "common/rng.rs"]
mod rng;

use rng::SplitMix64;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::civil::Date;
use serde_json::{Value, json};

use concord::auth::Principal;
use concord::auth::scopes::Scopes;
use concord::config::Config;
use concord::policy::PolicySet;
use concord::policy::engine::{Acting, Caller, CallerPolicy, Consent, Item};
use concord::server::tls::{Listener, serve};

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: u64 = 0xC0C0_A11D_2026_1125;
const AGREEMENTS: usize = 50;
const RULES: usize = 10;
const ODS_POOL: usize = 30;
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
const EXCLUDABLE: &[&str] = &[
    "SEX",
    "HIV",
    "ETH",
    "PSY",
    "SUD",
    "SDV",
    "MH",
    "SAFEGUARDING",
];
const REDACTABLE: &[&str] = &[
    "note",
    "performer.display",
    "reasonCode",
    "reasonReference",
    "recorder.display",
];
const AREAS: &[&str] = &[
    "direct-care",
    "urgent-care",
    "social-care",
    "mental-health",
    "pharmacy",
    "hospice",
    "maternity",
    "child-health",
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
// The generated policy set.

/// `["a", "b"]`.
fn toml_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// 30 ODS codes, `A81001` (the benchmark source) first: GP practices and trusts alike written
/// as a letter and five digits.
fn ods_pool(rng: &mut SplitMix64) -> Vec<String> {
    let mut pool = vec![SOURCE_ODS.to_owned()];
    while pool.len() < ODS_POOL {
        let letter = (b'A' + rng.below(26) as u8) as char;
        let code = format!("{letter}{:05}", rng.below(100_000));
        if !pool.contains(&code) {
            pool.push(code);
        }
    }
    pool
}

/// The resource types a rule may name: every type the gateway serves, and Patient.
fn served_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = concord::fhir::search::TYPES
        .iter()
        .map(|t| t.name)
        .collect();
    types.push("Patient");
    types
}

fn date_from(today: Date, days: i64) -> Date {
    today.saturating_add(jiff::Span::new().days(days))
}

/// FHIRPath conditions a rule may carry; each holds for most resources.
const CONDITIONS: &[&str] = &[
    "status.exists() implies status != 'entered-in-error'",
    "meta.security.where(code = 'R').empty()",
    "code.coding.where(system = 'http://snomed.info/sct').exists() or code.empty()",
    "verificationStatus.empty() or verificationStatus.coding.code != 'refuted'",
];

/// One generated agreement file: (name, text). Of the 50, 4 are patient-access agreements
/// and 6 are not in force (suspended, draft, or lapsed). With `conditions`, half the rules
/// (drawn from that generator, so the rest of the file is the same as without) also carry a
/// FHIRPath `where` condition.
fn agreement(
    rng: &mut SplitMix64,
    mut conditions: Option<&mut SplitMix64>,
    n: usize,
    ods: &[String],
    today: Date,
) -> (String, String) {
    let types = served_types();
    let area = AREAS[n % AREAS.len()];
    let id = format!("dsa-{area}-{n:02}");
    let patient = n % 12 == 11;
    let (status, valid_until) = match n % 25 {
        7 => ("suspended", date_from(today, 700)),
        13 => ("draft", date_from(today, 700)),
        19 => ("active", date_from(today, -30)),
        _ => ("active", date_from(today, 700)),
    };
    let mut text = format!(
        "# Generated for the policy benchmark: {area}, agreement {n}.\n\
         [agreement]\nid = \"{id}\"\ntitle = \"Generated {area} agreement {n}\"\nversion = \"1.{}.0\"\n\
         status = \"{status}\"\n{}legal_basis = [\"UK GDPR 6(1)(e)\", \"UK GDPR 9(2)(h)\"]\n\
         valid_from = \"{}\"\nvalid_until = \"{valid_until}\"\nreview_by = \"{}\"\n\
         owner = \"Benchmark ICB Information Governance\"\n\n[parties]\ndisclosers = {}\n",
        rng.below(4),
        if patient {
            "access = \"patient\"\n"
        } else {
            ""
        },
        date_from(today, -400),
        date_from(today, 180),
        toml_list(&rng.sample(ods, 2, 6)),
    );
    if !patient {
        text.push_str(&format!(
            "recipients = {}\n",
            toml_list(&rng.sample(ods, 2, 6))
        ));
    }
    for r in 0..RULES {
        text.push_str(&format!("\n[[rule]]\nid = \"rule-{r:02}\"\n"));
        if patient {
            if r % 2 == 0 {
                text.push_str("purpose_of_use = [\"PATRQT\"]\n");
            } else {
                let purposes = rng.sample(&["FAMRQT", "PWATRNY"], 1, 2);
                text.push_str(&format!(
                    "purpose_of_use = {}\nrelationships = {}\n",
                    toml_list(&purposes),
                    toml_list(&rng.sample(RELATIONSHIPS, 1, 4))
                ));
            }
        } else {
            let mut purposes = rng.sample(STAFF_PURPOSES, 1, 2);
            purposes.dedup();
            text.push_str(&format!(
                "purpose_of_use = {}\nroles = {}\n",
                toml_list(&purposes),
                toml_list(&rng.sample(ROLES, 1, 3))
            ));
        }
        let resources = if rng.chance(0.08) {
            vec!["*"]
        } else {
            rng.sample(&types, 1, 6)
        };
        text.push_str(&format!("resources = {}\n", toml_list(&resources)));
        if rng.chance(0.5) {
            text.push_str(&format!(
                "exclude_labels = {}\n",
                toml_list(&rng.sample(EXCLUDABLE, 1, 4))
            ));
        }
        if !patient && rng.chance(0.5) {
            text.push_str("requires_care_relationship = true\n");
        }
        if rng.chance(0.2) {
            text.push_str(&format!(
                "redact = {}\n",
                toml_list(&rng.sample(REDACTABLE, 1, 2))
            ));
        }
        if let Some(c) = conditions.as_deref_mut()
            && c.chance(0.5)
        {
            text.push_str(&format!("where = \"{}\"\n", c.pick(CONDITIONS)));
        }
    }
    (format!("{id}.toml"), text)
}

/// 20 mappings from SNOMED CT and ICD-10 codes to labels.
const LABELS_TOML: &str = r#"# Generated for the policy benchmark: 20 mappings.
local_labels = ["SAFEGUARDING"]

[[map]]
label = "HIV"
system = "http://snomed.info/sct"
codes = ["86406008", "165816005", "62479008"]

[[map]]
label = "HIV"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["B20-B24"]

[[map]]
label = "SEX"
system = "http://snomed.info/sct"
codes = ["8098009", "105629000"]

[[map]]
label = "STD"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["A50-A64"]

[[map]]
label = "PSY"
system = "http://snomed.info/sct"
codes = ["35489007", "58214004", "13746004"]

[[map]]
label = "PSY"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F20-F39"]

[[map]]
label = "PSY"
system = "http://hl7.org/fhir/sid/icd-10-uk"
ranges = ["F20-F39"]

[[map]]
label = "MH"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F40-F48"]

[[map]]
label = "MH"
system = "http://snomed.info/sct"
codes = ["197480006", "21897009"]

[[map]]
label = "SUD"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F10-F19"]

[[map]]
label = "SUD"
system = "http://snomed.info/sct"
codes = ["7200002", "66590003", "75544000", "494041000000102"]

[[map]]
label = "COGN"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F00-F09"]

[[map]]
label = "SDV"
system = "http://snomed.info/sct"
codes = ["95930005", "371788001"]

[[map]]
label = "ETH"
system = "http://snomed.info/sct"
codes = ["186005001", "185984009"]

[[map]]
label = "SICKLE"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["D57-D57"]

[[map]]
label = "GDIS"
system = "http://snomed.info/sct"
codes = ["93461009"]

[[map]]
label = "TBOO"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["Z30-Z30"]

[[map]]
label = "EMOTDIS"
system = "http://snomed.info/sct"
codes = ["66347000"]

[[map]]
label = "SAFEGUARDING"
system = "http://snomed.info/sct"
codes = ["713025008"]

[[map]]
label = "SAFEGUARDING"
system = "http://terminology.hl7.org/CodeSystem/flag-category"
codes = ["safety"]
"#;

/// Writes the 50 agreements and the label map into `dir`: the same files for the same seed,
/// with FHIRPath conditions on half the rules when `conditions`.
fn write_generated(dir: &Path, ods: &[String], today: Date, conditions: bool) {
    let mut rng = SplitMix64(SEED ^ 0xA5A5);
    let mut condition_rng = SplitMix64(SEED ^ 0x5A5A);
    std::fs::create_dir_all(dir).expect("policy dir");
    for n in 0..AGREEMENTS {
        let (name, text) = agreement(
            &mut rng,
            conditions.then_some(&mut condition_rng),
            n,
            ods,
            today,
        );
        std::fs::write(dir.join(name), text).expect("write agreement");
    }
    std::fs::write(dir.join("labels.toml"), LABELS_TOML).expect("write labels");
}

fn load(dir: &Path, today: Date) -> PolicySet {
    PolicySet::load(dir, today).unwrap_or_else(|e| panic!("the generated set must load: {e}"))
}

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
    use concord::policy::Access;
    set.agreements
        .iter()
        .filter(|a| a.in_force(today))
        .filter(|a| match (a.access, caller.acting) {
            (Access::Staff, Acting::Staff) => caller
                .org
                .is_some_and(|o| a.recipients.iter().any(|r| r == o)),
            (Access::Patient, Acting::Person | Acting::Carer(_)) => true,
            _ => false,
        })
        .flat_map(|a| a.rules.iter().map(move |r| (a, r)))
        .filter(|(a, r)| match (a.access, caller.acting) {
            (Access::Staff, _) => caller.role.is_some_and(|x| r.roles.iter().any(|y| y == x)),
            (Access::Patient, Acting::Carer(rel)) => r.relationships.iter().any(|y| y == rel),
            (Access::Patient, _) => r.relationships.is_empty(),
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

// ---------------------------------------------------------------------------------------------
// 2. End to end.

/// One person's record at one provider, as NDJSON files by type: the Patient and 20
/// resources of seven types, none with a code the label map knows.
fn write_record(dir: &Path) {
    std::fs::create_dir_all(dir).expect("record dir");
    let subject = json!({"reference": "Patient/g1"});
    let snomed = |code: &str, display: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]});
    let mut files: Vec<(&str, Vec<Value>)> = vec![(
        "Patient",
        vec![json!({"resourceType": "Patient", "id": "g1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
            "name": [{"family": "Bench", "given": ["Mark"]}], "gender": "male", "birthDate": "1950-01-01"})],
    )];
    let observations = (0..5)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final", "subject": subject,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": snomed("27113001", "Body weight"),
            "effectiveDateTime": format!("2026-0{}-01T10:00:00Z", 1 + i),
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
        })
        .collect();
    files.push(("Observation", observations));
    let conditions = [
        ("38341003", "Hypertensive disorder"),
        ("44054006", "Diabetes mellitus type 2"),
        ("195967001", "Asthma"),
        ("709044004", "Chronic kidney disease"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (code, display))| {
        json!({"resourceType": "Condition", "id": format!("c{i}"), "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": snomed(code, display), "onsetDateTime": format!("201{i}-01-01")})
    })
    .collect();
    files.push(("Condition", conditions));
    let medicines = (0..3)
        .map(|i| {
            json!({"resourceType": "MedicationStatement", "id": format!("m{i}"), "status": "active", "subject": subject,
            "medicationCodeableConcept": snomed("318475005", "Amlodipine 5mg tablets"),
            "effectivePeriod": {"start": format!("202{i}-02-01")}, "dosage": [{"text": "One tablet daily"}]})
        })
        .collect();
    files.push(("MedicationStatement", medicines));
    let allergies = (0..2)
        .map(|i| {
            json!({"resourceType": "AllergyIntolerance", "id": format!("a{i}"), "patient": subject,
            "code": snomed("91936005", "Allergy to penicillin"), "recordedDate": format!("201{i}-05-01")})
        })
        .collect();
    files.push(("AllergyIntolerance", allergies));
    let immunisations = (0..2)
        .map(|i| {
            json!({"resourceType": "Immunization", "id": format!("i{i}"), "status": "completed", "patient": subject,
            "vaccineCode": snomed("1181000221105", "Influenza vaccine"),
            "occurrenceDateTime": format!("202{i}-10-20")})
        })
        .collect();
    files.push(("Immunization", immunisations));
    let encounters = (0..2)
        .map(|i| {
            json!({"resourceType": "Encounter", "id": format!("e{i}"), "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [snomed("185202000", "Seen in GP's surgery")],
            "period": {"start": format!("202{i}-03-03T11:50:00Z"), "end": format!("202{i}-03-03T11:59:00Z")}})
        })
        .collect();
    files.push(("Encounter", encounters));
    let procedures = (0..2)
        .map(|i| {
            json!({"resourceType": "Procedure", "id": format!("p{i}"), "status": "completed", "subject": subject,
            "code": snomed("80146002", "Appendectomy"), "performedDateTime": format!("201{i}-07-07")})
        })
        .collect();
    files.push(("Procedure", procedures));
    let mut total = 0;
    for (ty, resources) in files {
        total += resources.len();
        let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
        std::fs::write(dir.join(format!("{ty}.ndjson")), lines.join("\n") + "\n")
            .expect("write ndjson");
    }
    assert_eq!(total, RECORD);
}

/// The agreement that lets the benchmark's caller (a clinician of `A81001`, TREAT) see the
/// record: with a care relationship, every type. Its id sorts after every generated one, so
/// each decision first tries every other rule kept for the caller.
fn caller_agreement(today: Date) -> String {
    format!(
        "[agreement]\nid = \"zz-bench-direct-care\"\ntitle = \"Benchmark caller's direct care\"\n\
         version = \"1.0.0\"\nstatus = \"active\"\nlegal_basis = [\"UK GDPR 6(1)(e)\"]\n\
         valid_from = \"{}\"\nvalid_until = \"{}\"\nowner = \"Benchmark\"\n\n\
         [parties]\ndisclosers = [\"{SOURCE_ODS}\"]\nrecipients = [\"{SOURCE_ODS}\"]\n\n\
         [[rule]]\nid = \"direct-care\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\n\
         resources = [\"*\"]\nrequires_care_relationship = true\n",
        date_from(today, -400),
        date_from(today, 700)
    )
}

/// The permit-all set: one agreement, the source's organisation to itself, every type.
fn permit_all(today: Date) -> String {
    format!(
        "[agreement]\nid = \"permit-all\"\ntitle = \"Everything\"\nversion = \"1.0.0\"\n\
         status = \"active\"\nlegal_basis = [\"benchmark\"]\nvalid_from = \"{}\"\n\
         valid_until = \"{}\"\nowner = \"Benchmark\"\n\n\
         [parties]\ndisclosers = [\"{SOURCE_ODS}\"]\nrecipients = [\"{SOURCE_ODS}\"]\n\n\
         [[rule]]\nid = \"everything\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\n\
         resources = [\"*\"]\n",
        date_from(today, -400),
        date_from(today, 700)
    )
}

/// A gateway config in `dir` over the record in `data`, enforcing the agreements in
/// `policies`.
fn config(dir: &Path, data: &Path, policies: &Path) -> Config {
    std::fs::create_dir_all(dir).expect("gateway dir");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    std::fs::write(dir.join("bench.pub.pem"), pair.public_key_pem()).expect("write key");
    let audit_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-audit.key"
    );
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[store]\nurl = \"sqlite://concord.db\"\n\n\
         [log]\nlevel = \"error\"\n\n[policy]\ndir = \"{}\"\nreload_check_secs = 0\n\n\
         [audit]\nkey_file = \"{audit_key}\"\n\n[auth]\nissuer = \"https://idp.bench.invalid\"\naudience = \"concord-bench\"\n\n\
         [[auth.key]]\nkid = \"bench\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"bench.pub.pem\"\n\n\
         [[source]]\nid = \"gp\"\nname = \"Bench GP\"\nods = \"{SOURCE_ODS}\"\nkind = \"ndjson\"\npath = \"{}\"\n",
        policies.display(),
        data.display()
    );
    let path = dir.join("concord.toml");
    std::fs::write(&path, toml).expect("write config");
    Config::load(&path).expect("valid config")
}

/// The benchmark's caller, as a verified token would give it.
fn principal() -> Principal {
    Principal {
        user: "dr-bench".into(),
        name: Some("Dr Bench".into()),
        org: Some(SOURCE_ODS.into()),
        role: Some("clinician".into()),
        purpose_of_use: "TREAT".into(),
        scopes: Scopes::parse("user/*.rs"),
        patient: None,
        client_certificate: None,
        break_glass: None,
    }
}

/// Starts a gateway over `config` running every request as the benchmark's caller; the URL of
/// the person's `$everything`, checked to hold the whole record.
async fn start(config: &Config) -> String {
    let state = concord::server::build_state(config)
        .await
        .expect("gateway starts");
    let app = concord::testing::app_with_fixed_principal(state, principal());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/fhir", tcp.local_addr().expect("addr"));
    let listener = Listener::new(tcp, None).expect("listener");
    tokio::spawn(serve(listener, app, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let answer = client.get(&url).send().await.expect("answer");
            assert!(answer.status().is_success(), "{url}: {}", answer.status());
            let bytes = answer.bytes().await.expect("body");
            serde_json::from_slice::<Value>(&bytes).expect("json")
        }
    };
    let found = get(format!(
        "{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS}"
    ))
    .await;
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the person is found")
        .to_owned();
    let url = format!("{base}/Patient/{id}/$everything");
    let bundle = get(url.clone()).await;
    let entries = bundle["entry"].as_array().map_or(&[][..], Vec::as_slice);
    let resources = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
        .count();
    assert_eq!(
        (resources, entries.len()),
        (RECORD, RECORD),
        "the whole record and nothing withheld: {bundle}"
    );
    url
}

async fn throughput(dir: &Path, today: Date) {
    let data = dir.join("gp");
    write_record(&data);
    let enforced: PathBuf = dir.join("policies-a");
    std::fs::create_dir_all(&enforced).expect("dir");
    for entry in std::fs::read_dir(dir.join("generated")).expect("generated set") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name");
        std::fs::copy(&path, enforced.join(name)).expect("copy policy");
    }
    std::fs::write(
        enforced.join("zz-bench-direct-care.toml"),
        caller_agreement(today),
    )
    .expect("write agreement");
    let open = dir.join("policies-b");
    std::fs::create_dir_all(&open).expect("dir");
    std::fs::write(open.join("permit-all.toml"), permit_all(today)).expect("write agreement");
    let set = load(&enforced, today);
    let caller = concord::policy::engine::Caller {
        org: Some(SOURCE_ODS),
        role: Some("clinician"),
        purpose: "TREAT",
        emergency: false,
        acting: Acting::Staff,
    };
    let kept = applicable_rules(&set, &caller, today);

    let urls = [
        start(&config(&dir.join("a"), &data, &enforced)).await,
        start(&config(&dir.join("b"), &data, &open)).await,
    ];
    let has_wrk = load::has_wrk();
    let seconds = load::seconds();
    println!(
        "\n2. throughput, $everything of one person ({RECORD} resources, all disclosed by both) from \
         an NDJSON source, every request as one fixed principal (no token verified), {}",
        if has_wrk {
            format!("wrk -t1 -c32 -d{seconds}s per run")
        } else {
            "wrk not found: in-process closed loop, 32 clients x 20,000 requests".into()
        }
    );
    println!(
        "A: {} agreements ({AGREEMENTS} generated + the caller's, sorted last), {kept} rules kept \
         for the caller; B: one permit-all agreement",
        set.agreements.len()
    );
    println!(
        "{:<6} {:<40} {:>12} {:>10} {:>10}",
        "round", "agreements", "requests/s", "median", "p99"
    );
    let labels = [
        format!("A: {} agreements enforced", set.agreements.len()),
        "B: permit-all".to_owned(),
    ];
    let mut sums = [0.0, 0.0];
    for round in 1..=3 {
        for (i, url) in urls.iter().enumerate() {
            let load = if has_wrk {
                load::wrk(url, &[], seconds).await
            } else {
                load::closed_loop(url, None, 20_000).await
            };
            sums[i] += load.rps;
            println!(
                "{round:<6} {:<40} {:>12.0} {:>10} {:>10}",
                labels[i], load.rps, load.p50, load.p99
            );
        }
    }
    println!(
        "mean of 3: A (agreements) {:.0} req/s, B (permit-all) {:.0} req/s (A = {:.1}% of B)",
        sums[0] / 3.0,
        sums[1] / 3.0,
        100.0 * sums[0] / sums[1]
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
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
    runtime.block_on(throughput(dir.path(), today));
}
