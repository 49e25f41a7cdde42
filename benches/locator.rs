//! The record locator (issue 17, item 2): 300 upstream FHIR sources (one test server, 300
//! base paths, `tests/support/upstream.rs`) that each add 20 ms to every answer, and 100
//! people each known to three of them (drawn from a fixed seed). The gateway starts on an
//! empty SQLite store with `[locator] enabled`, and the background sync is waited for (the
//! operator's readiness view shows every source synced). Then, for each person in turn, as a
//! client meets someone for the first time:
//!
//! 1. `Patient?identifier=` (the gateway has never seen them: resolution asks the sources),
//! 2. their first `$everything` (their links were learnt a moment before, by step 1),
//!
//! each timed, with the sources asked counted at the upstreams (asked whether they know the
//! person, and asked anything). The same is then run with the locator off (every source is
//! asked), for 20 people.
//!
//! `cargo bench --bench locator`. Figures are in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the integration tests; not every helper is used here"
)]
#[path = "../tests/support/app.rs"]
mod app;
#[path = "common/rng.rs"]
mod rng;
#[allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "shared with the integration tests (whose self-tests are compiled here too); not every helper is used"
)]
#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use app::{Policies, SourceSpec, StoreChoice, TestApp};
use upstream::Upstreams;

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SOURCES: usize = 300;
const PEOPLE: usize = 100;
const PEOPLE_WITHOUT_LOCATOR: usize = 20;
const HOLDERS: usize = 3;
const SEED: u64 = 0x010C_A702_2026_1206;
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Valid NHS numbers (Modulus 11), from `base` on.
fn nhs_numbers(base: u64) -> impl Iterator<Item = String> {
    (base..).filter_map(|base| {
        let sum: u64 = base
            .to_string()
            .bytes()
            .enumerate()
            .map(|(i, d)| u64::from(d - b'0') * (10 - i as u64))
            .sum();
        let check = (11 - sum % 11) % 11;
        (check != 10).then(|| format!("{base}{check}"))
    })
}

fn patient(local: &str, nhs: &str) -> Value {
    json!({"resourceType": "Patient", "id": local,
        "identifier": [{"system": NHS_SYSTEM, "value": nhs}],
        "name": [{"family": "Bench", "given": ["Mark"]}], "birthDate": "1950-01-01"})
}

fn observation(id: &str, local: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "subject": {"reference": format!("Patient/{local}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"}]},
        "effectiveDateTime": "2026-05-01T10:00:00Z",
        "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The region: each source holds 20 people of its own; each of the `PEOPLE` is held (with
/// three Observations) by three distinct sources drawn from the seed.
/// Each base path's name and resources.
type Bases = Vec<(String, Vec<Value>)>;
/// Each person's NHS number and the sources holding them.
type People = Vec<(String, Vec<usize>)>;

fn region() -> (Bases, People) {
    let mut rng = rng::SplitMix64(SEED);
    let mut locals = nhs_numbers(943_000_000);
    let mut bases: Bases = (0..SOURCES)
        .map(|i| {
            let people = (0..20)
                .map(|k| patient(&format!("l{k}"), &locals.next().expect("number")))
                .collect();
            (format!("gp{i:03}"), people)
        })
        .collect();
    let mut people = Vec::new();
    for (p, nhs) in nhs_numbers(948_000_000).take(PEOPLE).enumerate() {
        let mut at: Vec<usize> = Vec::new();
        while at.len() < HOLDERS {
            let i = usize::try_from(rng.next() % SOURCES as u64).expect("index");
            if !at.contains(&i) {
                at.push(i);
            }
        }
        at.sort_unstable();
        for &i in &at {
            let local = format!("p{p}");
            bases[i].1.push(patient(&local, &nhs));
            for o in 0..3 {
                bases[i].1.push(observation(&format!("p{p}-o{o}"), &local));
            }
        }
        people.push((nhs, at));
    }
    (bases, people)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{label:<62} n={:<4} median {:>8.2} ms   p90 {:>8.2} ms   max {:>8.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[ms.len() - 1],
    );
}

fn counts(label: &str, mut n: Vec<usize>) {
    n.sort_unstable();
    let mean = n.iter().sum::<usize>() as f64 / n.len() as f64;
    println!(
        "{label:<62} n={:<4} min {:>4}   median {:>4}   max {:>4}   mean {mean:.2}",
        n.len(),
        n[0],
        n[n.len() / 2],
        n[n.len() - 1],
    );
}

async fn timed(app: &TestApp, path: &str) -> (f64, Value) {
    let started = Instant::now();
    let answer = app.get(path).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(answer.status.is_success(), "{path}: {}", answer.body);
    (ms, answer.body)
}

fn clear(upstreams: &Upstreams) {
    for base in upstreams.bases() {
        base.clear_requests();
    }
}

/// (asked whether they know someone, asked anything), counted at the upstreams.
fn asked(upstreams: &Upstreams) -> (usize, usize) {
    let bases = upstreams.bases();
    let identified = bases
        .iter()
        .filter(|b| {
            b.requests()
                .iter()
                .any(|r| r.starts_with("/fhir/Patient?identifier="))
        })
        .count();
    let any = bases.iter().filter(|b| b.request_count() > 0).count();
    (identified, any)
}

async fn start(upstreams: &Upstreams, locator: bool) -> TestApp {
    let specs = upstreams
        .bases()
        .iter()
        .enumerate()
        .map(|(i, base)| {
            SourceSpec::fhir(
                leak(format!("gp{i:03}")),
                leak(format!("Practice {i}")),
                leak(format!("Y{i:05}")),
                base.base_url(),
            )
            .with("conformance = \"off\"\ntimeout_ms = 5000\neverything_operation = true")
        })
        .collect();
    let extra = if locator {
        "[locator]\nenabled = true\nmax_concurrent_syncs = 32\n"
    } else {
        ""
    };
    TestApp::start_config(
        specs,
        StoreChoice::Sqlite,
        "request_timeout_ms = 10000",
        Policies::ReadPath,
        extra,
    )
    .await
}

async fn wait_synced(app: &TestApp) -> Duration {
    let started = Instant::now();
    loop {
        let (_, body) = app.readiness().await;
        let body: Value = serde_json::from_str(&body).expect("readiness JSON");
        let sources = body["locator"]["sources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if sources.len() == SOURCES && sources.iter().all(|s| s["state"] == "synced") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not synced: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(upstreams: &Upstreams, people: &[(String, Vec<usize>)], locator: bool) {
    let app = start(upstreams, locator).await;
    let label = if locator { "locator on" } else { "locator off" };
    if locator {
        let took = wait_synced(&app).await;
        println!(
            "{label}: background sync of {SOURCES} sources x 20 ms: {:.1} s",
            took.as_secs_f64()
        );
    }
    let (mut search, mut everything, mut both) = (Vec::new(), Vec::new(), Vec::new());
    let (mut identified, mut asked_search, mut asked_everything) =
        (Vec::new(), Vec::new(), Vec::new());
    for (nhs, at) in people {
        clear(upstreams);
        let (s_ms, bundle) = timed(&app, &format!("Patient?identifier={NHS_SYSTEM}|{nhs}")).await;
        let (ident, any) = asked(upstreams);
        identified.push(ident);
        asked_search.push(any);
        let id = bundle["entry"][0]["resource"]["id"]
            .as_str()
            .expect("the person is found")
            .to_owned();
        clear(upstreams);
        let (e_ms, record) = timed(&app, &format!("Patient/{id}/$everything")).await;
        asked_everything.push(asked(upstreams).1);
        let observations = record["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"]["resourceType"] == "Observation")
            .count();
        assert_eq!(observations, 3 * at.len(), "the record is complete");
        search.push(s_ms);
        everything.push(e_ms);
        both.push(s_ms + e_ms);
    }
    summary(
        &format!("{label}: Patient?identifier= (first time: resolution)"),
        search,
    );
    summary(
        &format!("{label}: first $everything (links just learnt)"),
        everything,
    );
    summary(
        &format!("{label}: the two together (first contact, end to end)"),
        both,
    );
    counts(
        &format!("{label}: sources asked whether they know the person"),
        identified,
    );
    counts(
        &format!("{label}: sources asked anything, Patient search"),
        asked_search,
    );
    counts(
        &format!("{label}: sources asked anything, $everything"),
        asked_everything,
    );
    println!("{label}: sources holding each person: {HOLDERS}");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let build = if cfg!(debug_assertions) {
            "DEBUG build: times are not the measure"
        } else {
            "release build"
        };
        println!(
            "concord record locator benchmark ({build}, 127.0.0.1, sequential requests): {SOURCES} sources x 20 ms, {PEOPLE} people each held by {HOLDERS}"
        );
        let (bases, people) = region();
        let upstreams = Upstreams::start(bases).await;
        for base in upstreams.bases() {
            base.set_latency(Duration::from_millis(20));
        }
        run(&upstreams, &people, true).await;
        run(&upstreams, &people[..PEOPLE_WITHOUT_LOCATOR], false).await;
    });
}
