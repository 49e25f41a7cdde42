//! Latency benchmarks of the federated read path, over real sockets on 127.0.0.1:
//!
//! 1. `$everything` for one person across three upstream FHIR servers that each add 20 ms:
//!    the fan-out must be parallel (about 20 ms, not 60 ms).
//! 2. Gateway overhead on a single-source search against a local upstream with no added
//!    latency, measured side by side with calling the upstream directly, request by request.
//!
//! Run with `cargo bench --bench gateway`. Throughput under load is measured separately with
//! a real load generator: `benches/load.sh`. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the integration tests; not every helper is used here"
)]
#[path = "../tests/support/app.rs"]
mod app;
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

use app::{SourceSpec, TestApp};

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use upstream::Upstream;

const NHS: &str = "9990000018";

/// One person's record at one provider: a Patient and `n` each of four common types.
fn record(local: &str, n: usize) -> Vec<Value> {
    let subject = json!({"reference": format!("Patient/{local}")});
    let mut out = vec![json!({
        "resourceType": "Patient", "id": local,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
        "name": [{"family": "Bench", "given": ["Mark"]}], "birthDate": "1950-01-01"
    })];
    for i in 0..n {
        let day = format!("2026-0{}-{:02}", 1 + i % 9, 1 + i % 28);
        out.push(json!({"resourceType": "Observation", "id": format!("{local}-o{i}"), "status": "final", "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"}]},
            "effectiveDateTime": format!("{day}T10:00:00Z"), "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}));
        out.push(json!({"resourceType": "Condition", "id": format!("{local}-c{i}"), "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]}, "onsetDateTime": day}));
        out.push(json!({"resourceType": "Encounter", "id": format!("{local}-e{i}"), "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "period": {"start": format!("{day}T09:00:00Z")}}));
        out.push(json!({"resourceType": "MedicationStatement", "id": format!("{local}-m{i}"), "status": "active", "subject": subject,
            "medicationCodeableConcept": {"text": "Amlodipine 5mg tablets"}, "effectiveDateTime": day}));
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(label: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let (p50, p90, p99) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
    );
    println!(
        "{label:<58} n={:<5} median {p50:>8.3} ms   p90 {p90:>8.3} ms   p99 {p99:>8.3} ms",
        ms.len()
    );
    (p50, p99)
}

async fn timed_get(client: &reqwest::Client, url: &str, token: Option<&str>) -> f64 {
    let started = Instant::now();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("answers");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let _ = response.bytes().await.expect("body");
    started.elapsed().as_secs_f64() * 1000.0
}

async fn everything_across_three_slow_sources() {
    let mut ups = Vec::new();
    for (i, local) in ["g1", "c1", "s1"].into_iter().enumerate() {
        let up = Upstream::start(record(local, 6 + i * 2)).await;
        ups.push(up);
    }
    let specs = |everything_op: bool| {
        ["gp", "community", "social"]
            .into_iter()
            .zip(["A81001", "RY4", "LA001"])
            .zip(&ups)
            .map(|((id, ods), up)| {
                let spec = SourceSpec::fhir(id, "Bench provider", ods, up.base_url());
                if everything_op {
                    spec.with("everything_operation = true")
                } else {
                    spec
                }
            })
            .collect::<Vec<_>>()
    };
    for up in &ups {
        up.set_latency(Duration::from_millis(20));
    }
    // The floor: one upstream's own $everything, called directly.
    let client = reqwest::Client::new();
    let direct = format!("{}/Patient/g1/$everything", ups[0].base_url());
    let mut samples = Vec::new();
    for _ in 0..100 {
        samples.push(timed_get(&client, &direct, None).await);
    }
    summary(
        "one upstream's $everything called directly (the floor)",
        samples,
    );
    for (label, everything_op, latency) in [
        (
            "per-type searches (15 upstream calls per source)",
            false,
            20,
        ),
        ("upstream $everything (1 call per source)", true, 20),
        ("upstream $everything, no added latency", true, 0),
    ] {
        for up in &ups {
            up.set_latency(Duration::from_millis(latency));
        }
        let app = TestApp::start(specs(everything_op)).await;
        let id = app.patient_id(NHS).await;
        let url = format!("{}/Patient/{id}/$everything", app.base);
        for _ in 0..5 {
            timed_get(&app.client, &url, Some(&app.token)).await;
        }
        let mut samples = Vec::new();
        for _ in 0..200 {
            samples.push(timed_get(&app.client, &url, Some(&app.token)).await);
        }
        summary(&format!("$everything, 3 sources x 20 ms, {label}"), samples);
    }
}

async fn overhead_on_a_single_source_search() {
    let up = Upstream::start(record("g1", 10)).await;
    let app = TestApp::start(vec![SourceSpec::fhir(
        "gp",
        "Bench provider",
        "A81001",
        up.base_url(),
    )])
    .await;
    let id = app.patient_id(NHS).await;
    let via_gateway = format!("{}/Observation?patient={id}", app.base);
    let direct = format!("{}/Observation?patient=g1", up.base_url());
    let client = reqwest::Client::new();
    for _ in 0..50 {
        timed_get(&client, &direct, None).await;
        timed_get(&client, &via_gateway, Some(&app.token)).await;
    }
    let (mut d, mut g, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3000 {
        let a = timed_get(&client, &direct, None).await;
        let b = timed_get(&client, &via_gateway, Some(&app.token)).await;
        d.push(a);
        g.push(b);
        added.push(b - a);
    }
    let (dm, _) = summary("Observation search, upstream called directly", d);
    let (gm, _) = summary("Observation search, through the gateway", g);
    summary("added by the gateway (per pair: gateway - direct)", added);
    println!("{:<58} {:.3} ms", "difference of medians", gm - dm);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("concord gateway benchmarks (release build, 127.0.0.1, sequential requests)");
        everything_across_three_slow_sources().await;
        overhead_on_a_single_source_search().await;
    });
}
