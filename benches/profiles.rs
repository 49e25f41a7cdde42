//! What checking resources against `fhir-profiles/` costs:
//!
//! 1. Loading and compiling the profiles directory (once, at start-up).
//! 2. Resources checked per second on one core, over every resource of the demo's three
//!    exports (the demo mix: 4,914 resources of 11 types), in rounds; the median and the
//!    slowest round are printed, with the figure per type.
//! 3. The cost for one person's whole record (every demo resource that points at the person,
//!    from all three providers), which is what a request pays when its sources are FHIR
//!    servers (resources from NDJSON exports are checked once and the result kept).
//!
//! Run with `cargo bench --bench profiles`. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use concord::profiles::Profiles;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 15;

fn demo_resources(root: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for provider in ["gp", "community", "socialcare"] {
        let dir = root.join(provider);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("demo provider")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        files.sort();
        for file in files {
            for line in std::fs::read_to_string(&file).expect("ndjson").lines() {
                let value: Value = serde_json::from_str(line).expect("json");
                out.push((provider.to_owned(), value));
            }
        }
    }
    out
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let profiles = Profiles::load(&root.join("fhir-profiles")).expect("profiles");
    let loaded = started.elapsed();
    let resources = demo_resources(&root.join("examples/demo"));
    println!("# Profile checking benchmark (1 thread)\n");
    println!(
        "Loading and compiling `fhir-profiles/`: {:.1} ms ({} profiles)\n",
        loaded.as_secs_f64() * 1e3,
        profiles.profiles().len()
    );

    // Warm up, and count what the demo holds.
    let mut nonconformant = 0;
    for (_, r) in &resources {
        if !profiles.check(r).is_empty() {
            nonconformant += 1;
        }
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for (_, r) in &resources {
            black_box(profiles.check(black_box(r)));
        }
        rounds.push(t.elapsed());
    }
    rounds.sort_unstable();
    let median = rounds[ROUNDS / 2];
    let slowest = rounds[ROUNDS - 1];
    println!(
        "The demo mix: {} resources ({nonconformant} with problems), {ROUNDS} rounds\n",
        resources.len()
    );
    println!("| | resources/s | per resource |");
    println!("| --- | ---: | ---: |");
    println!(
        "| median round | **{:.0}** | {:.2} µs |",
        per_second(resources.len(), median),
        median.as_secs_f64() * 1e6 / resources.len() as f64
    );
    println!(
        "| slowest round | {:.0} | {:.2} µs |",
        per_second(resources.len(), slowest),
        slowest.as_secs_f64() * 1e6 / resources.len() as f64
    );

    // Per type, one pass each after the rounds.
    let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for (_, r) in &resources {
        let kind = r["resourceType"].as_str().unwrap_or_default().to_owned();
        by_type.entry(kind).or_default().push(r);
    }
    println!("\n| type | resources | µs per resource (median of {ROUNDS}) |");
    println!("| --- | ---: | ---: |");
    for (kind, list) in &by_type {
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for r in list {
                black_box(profiles.check(black_box(r)));
            }
            times.push(t.elapsed());
        }
        times.sort_unstable();
        println!(
            "| {kind} | {} | {:.2} |",
            list.len(),
            times[ROUNDS / 2].as_secs_f64() * 1e6 / list.len() as f64
        );
    }

    // One person's whole record across the three providers.
    let subject_of = |r: &Value| {
        ["subject", "patient"]
            .iter()
            .find_map(|k| r[*k]["reference"].as_str().map(str::to_owned))
    };
    let mut records: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for (provider, r) in &resources {
        let key = if r["resourceType"] == "Patient" {
            r["identifier"]
                .as_array()
                .and_then(|ids| {
                    ids.iter()
                        .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
                })
                .and_then(|i| i["value"].as_str())
                .map(|n| format!("nhs:{n}"))
        } else {
            subject_of(r).map(|s| format!("{provider}:{s}"))
        };
        if let Some(k) = key {
            records.entry(k).or_default().push(r);
        }
    }
    // The person of the README walk-through: known to all three providers.
    let nhs = "9990465630";
    let mut record: Vec<&Value> = Vec::new();
    for (provider, r) in &resources {
        if r["resourceType"] == "Patient"
            && r.to_string().contains(nhs)
            && let Some(id) = r["id"].as_str()
        {
            record.push(r);
            if let Some(rest) = records.get(&format!("{provider}:Patient/{id}")) {
                record.extend(rest.iter().copied());
            }
        }
    }
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        for r in &record {
            black_box(profiles.check(black_box(r)));
        }
        times.push(t.elapsed());
    }
    times.sort_unstable();
    println!(
        "\nOne person's whole record ({nhs}, {} resources from 3 providers): median {:.1} µs, p99 {:.1} µs to check (1,000 runs)",
        record.len(),
        times[500].as_secs_f64() * 1e6,
        times[990].as_secs_f64() * 1e6
    );
}
