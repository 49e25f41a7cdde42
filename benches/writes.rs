//! What a write through the gateway adds over writing to the upstream directly (issue 18),
//! over real sockets on 127.0.0.1, sequential requests, release build.
//!
//! One upstream FHIR server (the test upstream of `tests/support/upstream.rs`: it versions
//! what it holds and honours `If-Match`) holds a person and their GP's CarePlan and takes
//! writes of plans and goals. The gateway in front of it checks each write against
//! `fhir-profiles/`, decides it under an agreement, maps its references to the GP's ids and
//! records its intent and then its outcome in the audit chain, each durably, before it
//! answers. Two writes, each `WRITES` times (default 500, at most 5,000), the direct call and
//! the gateway's alternating, pair by pair:
//!
//! 1. create a Goal that belongs to the GP's plan (`POST /Goal`);
//! 2. update the plan with the version last read (`PUT /CarePlan/{id}` with `If-Match`); the
//!    gateway reads the plan at the GP first, to check the version and the person.
//!
//! On SQLite (a file in a temp dir, `synchronous=FULL`) and, when `CONCORD_TEST_DATABASE_URL`
//! is set, on PostgreSQL. Run with `cargo bench --bench writes`; figures are recorded in
//! `benches/README.md`.

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

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use app::{Policies, SourceSpec, StoreChoice, TestApp};
use upstream::Upstream;

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NHS: &str = "9990000018";
const PLAN_EXTENSION: &str = concord::disclose::PLAN_EXTENSION;

/// Pairs per write: `WRITES`, 500 by default, at most 5,000 (the upstream keeps every
/// resource it is sent in one list).
fn pairs() -> usize {
    std::env::var("WRITES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
        .clamp(10, 5_000)
}

/// The care team's agreement: GP staff read the record and write plans, goals and alerts.
fn policies() -> Policies {
    Policies::Files(vec![(
        "bench-writes.toml".into(),
        "[agreement]\nid = \"bench-writes\"\ntitle = \"Write benchmark\"\nversion = \"1\"\nstatus = \"active\"\n\
         legal_basis = [\"bench\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"bench\"\n\n\
         [parties]\ndisclosers = [\"A81001\"]\nrecipients = [\"A81001\"]\n\n\
         [[rule]]\nid = \"read\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"nurse\", \"clinician\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"care-team-writes\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"nurse\"]\n\
         resources = [\"CarePlan\", \"Goal\", \"Flag\"]\ninteractions = [\"create\", \"update\"]\n"
            .into(),
    )])
}

/// What the GP holds: the person and their plan.
fn gp_record() -> Vec<Value> {
    vec![
        json!({
            "resourceType": "Patient", "id": "g1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
            "name": [{"family": "Bench", "given": ["Mark"]}], "gender": "male",
            "birthDate": "1950-01-01"
        }),
        json!({
            "resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
            "meta": {"versionId": "1"}, "title": "Diabetes plan",
            "subject": {"reference": "Patient/g1"}
        }),
    ]
}

/// A goal of the plan, as the GP's ids or the gateway's name them.
fn goal(patient: &str, plan: &str, i: usize) -> Value {
    json!({
        "resourceType": "Goal", "lifecycleStatus": "active",
        "description": {"text": format!("Walk {i} minutes a day")},
        "subject": {"reference": format!("Patient/{patient}")},
        "extension": [{"url": PLAN_EXTENSION, "valueReference": {"reference": plan}}]
    })
}

/// The plan, as the GP's ids or the gateway's name them.
fn plan(id: &str, patient: &str, i: usize) -> Value {
    json!({
        "resourceType": "CarePlan", "id": id, "status": "active", "intent": "plan",
        "title": format!("Diabetes plan, review {i}"),
        "subject": {"reference": format!("Patient/{patient}")}
    })
}

/// Sends one write and returns its time (ms) and the new version from its `ETag`.
async fn timed_write(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: &Value,
    if_match: Option<u64>,
) -> (f64, u64) {
    let bytes = body.to_string();
    let started = Instant::now();
    let mut request = client
        .request(method, url)
        .header("Content-Type", "application/fhir+json")
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(v) = if_match {
        request = request.header("If-Match", format!("W/\"{v}\""));
    }
    let response = request.send().await.expect("answers");
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{url}: {status} {text}"
    );
    let version = etag
        .as_deref()
        .and_then(|t| t.trim_start_matches("W/").trim_matches('"').parse().ok())
        .expect("an ETag with the new version");
    (ms, version)
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
        "{label:<52} n={:<5} median {p50:>8.3} ms   p90 {p90:>8.3} ms   p99 {p99:>8.3} ms",
        ms.len()
    );
    (p50, p99)
}

/// The two writes, direct and through the gateway, alternating, on one store.
async fn writes_on(store_label: &str, store: StoreChoice) {
    let up = Upstream::start(gp_record()).await;
    let app = TestApp::start_audited(
        vec![
            SourceSpec::fhir("gp", "Bench GP", "A81001", up.base_url())
                .with("writes = [\"CarePlan\", \"Goal\", \"Flag\"]"),
        ],
        store,
        "",
        policies(),
        "",
        "",
    )
    .await;
    let token = app.token_with(&[
        ("org", json!("A81001")),
        ("role", json!("nurse")),
        ("sub", json!("nurse-1")),
        (
            "scope",
            json!("user/*.rs user/CarePlan.cu user/Goal.cu user/Flag.cu"),
        ),
    ]);
    let person = app.patient_id(NHS).await;
    let client = reqwest::Client::new();
    let n = pairs();
    let direct_goal = format!("{}/Goal", up.base_url());
    let gateway_goal = format!("{}/Goal", app.base);
    let direct_plan = format!("{}/CarePlan/plan-1", up.base_url());
    let gateway_plan = format!("{}/CarePlan/gp.plan-1", app.base);
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;

    println!("-- {store_label}: {n} pairs per write, direct then gateway in each pair");
    let mut version = 1;
    // Warm-up: connections, the person's links, the agreements' reach.
    for i in 0..20 {
        timed_write(
            &client,
            post.clone(),
            &direct_goal,
            None,
            &goal("g1", "CarePlan/plan-1", i),
            None,
        )
        .await;
        let g = goal(&person, "CarePlan/gp.plan-1", i);
        timed_write(&client, post.clone(), &gateway_goal, Some(&token), &g, None).await;
        (_, version) = timed_write(
            &client,
            put.clone(),
            &direct_plan,
            None,
            &plan("plan-1", "g1", i),
            Some(version),
        )
        .await;
        let p = plan("gp.plan-1", &person, i);
        (_, version) = timed_write(
            &client,
            put.clone(),
            &gateway_plan,
            Some(&token),
            &p,
            Some(version),
        )
        .await;
    }

    let (mut d, mut g, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let (a, _) = timed_write(
            &client,
            post.clone(),
            &direct_goal,
            None,
            &goal("g1", "CarePlan/plan-1", i),
            None,
        )
        .await;
        let body = goal(&person, "CarePlan/gp.plan-1", i);
        let (b, _) = timed_write(
            &client,
            post.clone(),
            &gateway_goal,
            Some(&token),
            &body,
            None,
        )
        .await;
        d.push(a);
        g.push(b);
        added.push(b - a);
    }
    let (dm, dp) = summary("create Goal, upstream directly", d);
    let (gm, gp) = summary("create Goal, through the gateway", g);
    summary("added by the gateway (per pair: gateway - direct)", added);
    println!(
        "{:<52} median {:+.3} ms   p99 {:+.3} ms",
        "difference (gateway - direct)",
        gm - dm,
        gp - dp
    );

    let (mut d, mut g, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let (a, v) = timed_write(
            &client,
            put.clone(),
            &direct_plan,
            None,
            &plan("plan-1", "g1", i),
            Some(version),
        )
        .await;
        let body = plan("gp.plan-1", &person, i);
        let (b, v) = timed_write(
            &client,
            put.clone(),
            &gateway_plan,
            Some(&token),
            &body,
            Some(v),
        )
        .await;
        version = v;
        d.push(a);
        g.push(b);
        added.push(b - a);
    }
    let (dm, dp) = summary("update CarePlan (If-Match), upstream directly", d);
    let (gm, gp) = summary("update CarePlan (If-Match), through the gateway", g);
    summary("added by the gateway (per pair: gateway - direct)", added);
    println!(
        "{:<52} median {:+.3} ms   p99 {:+.3} ms",
        "difference (gateway - direct)",
        gm - dm,
        gp - dp
    );
    assert_eq!(
        up.writes().iter().filter(|w| w.status >= 300).count(),
        0,
        "every write was taken"
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "concord write benchmarks (release build, 127.0.0.1, sequential requests, audit intent + outcome durable)"
        );
        writes_on("SQLite", StoreChoice::Sqlite).await;
        match app::postgres().await {
            Some(db) => {
                writes_on("PostgreSQL", StoreChoice::Postgres(db.url().to_owned())).await;
                db.drop().await;
            }
            None => println!("-- PostgreSQL: skipped (CONCORD_TEST_DATABASE_URL is not set)"),
        }
    });
}
