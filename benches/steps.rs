//! One `$everything` of a demo person broken into its steps, each timed on its own, beside the
//! whole request measured end to end over a real socket: where a request's time goes, so that
//! the effect of each later optimisation shows in the step it touches.
//!
//! The gateway is the real demo: `concord.toml` rewritten as `benches/load.sh` does (a fresh
//! SQLite database in a temp dir, absolute paths to `examples/`, `policies/` and
//! `fhir-profiles/`, log level warn), started in-process with `concord::server::build_state`
//! and `concord::server::app` on 127.0.0.1, the three NDJSON providers of `examples/demo/` as
//! its sources. The person is the first NHS number of `examples/demo/gp/Patient.ndjson` that
//! the community and social-care exports hold too; the caller is a `concord dev-token`
//! clinician of the GP practice (A81001, TREAT, `user/*.rs`).
//!
//! The steps, in the order a request takes them, are the gateway's own code called one at a
//! time (a few of them made public, hidden, for this benchmark: `Door::planned`,
//! `Planned::disclose`, `Door::consent_of`, `server::api::paged`, `server::record_body`,
//! `audit::encode_body`). Steps that a warm request does not repeat (a token's first sight,
//! links read from the store, resources normalised and labelled the first time) are shown
//! apart, for scale. Each step is warmed up, then run `STEPS_N` times (default: a few thousand
//! for cheap steps, fewer for dear ones), each step for at most `STEPS_SECONDS` (default 5) of
//! wall time. Prints medians and p90s in µs and each step's share of the whole request's
//! median; no assertions on time.
//!
//! Run with `cargo bench --bench steps`. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, OriginalUri};
use serde_json::Value;

use concord::audit::{AuditKey, Columns};
use concord::auth::scopes::Interaction;
use concord::auth::{DevToken, Principal};
use concord::config::Config;
use concord::disclose::Ask;
use concord::federation::Federation;
use concord::federation::merge::{MergedPatients, merge_patient};
use concord::fhir::search::TYPES;
use concord::server::query::{SortSpec, TypeSearch, Used};
use concord::server::tls::{Limits, Listener, Peer, serve};
use concord::sources::Fetched;

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Iterations of a step: `STEPS_N` when set, else `default`.
fn iterations(default: usize) -> usize {
    std::env::var("STEPS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// Longest any one step is timed (warm-up included): `STEPS_SECONDS`, 5 by default.
fn step_budget() -> Duration {
    Duration::from_secs_f64(
        std::env::var("STEPS_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Which part of the table a row belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Done by every warm request: counted in the sum of the steps.
    PerRequest,
    /// Part of a step above, shown on its own (not counted again).
    Within,
    /// Done once (a token's first sight, a person's first request), shown for scale.
    FirstSight,
    /// Several of the steps above through their nearest public grouping.
    Group,
    /// The whole request, end to end.
    Whole,
    /// What HTTP alone costs, for the rest.
    Floor,
}

struct Row {
    label: String,
    part: Part,
    n: usize,
    median: f64,
    p90: f64,
}

/// Warms `step` up, then times it up to `n` times (bounded by [`step_budget`]), each time on
/// a fresh input from `setup` (not timed). Returns the row, in µs.
async fn measure<T, O>(
    label: &str,
    part: Part,
    n: usize,
    mut setup: impl AsyncFnMut() -> T,
    mut step: impl AsyncFnMut(T) -> O,
) -> Row {
    let budget = step_budget();
    let started = Instant::now();
    let warm = (n / 10).clamp(3, 200);
    for _ in 0..warm {
        let input = setup().await;
        black_box(step(input).await);
    }
    let mut us = Vec::with_capacity(n);
    while us.len() < n && (us.len() < 20 || started.elapsed() < budget) {
        let input = setup().await;
        let t = Instant::now();
        let out = step(input).await;
        us.push(t.elapsed().as_secs_f64() * 1e6);
        black_box(out);
    }
    us.sort_by(f64::total_cmp);
    let row = Row {
        label: label.to_owned(),
        part,
        n: us.len(),
        median: percentile(&us, 0.5),
        p90: percentile(&us, 0.9),
    };
    eprintln!(
        "  {label}: n={} median {:.2} µs ({:.1} s)",
        row.n,
        row.median,
        started.elapsed().as_secs_f64()
    );
    row
}

/// NHS numbers in a provider's `Patient.ndjson`, in file order.
fn nhs_numbers(provider: &str) -> Vec<String> {
    let path = Path::new(ROOT).join(format!("examples/demo/{provider}/Patient.ndjson"));
    let text = std::fs::read_to_string(&path).expect("demo Patient.ndjson");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|p| {
            p.get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|i| i.get("system").and_then(Value::as_str) == Some(NHS_SYSTEM))
                .filter_map(|i| i.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The first person of the GP export whom the other two providers know too.
fn person_known_to_all_three() -> String {
    let community: HashSet<String> = nhs_numbers("community").into_iter().collect();
    let social: HashSet<String> = nhs_numbers("socialcare").into_iter().collect();
    nhs_numbers("gp")
        .into_iter()
        .find(|n| community.contains(n) && social.contains(n))
        .expect("a demo person known to all three providers")
}

/// The demo `concord.toml`, rewritten as `benches/load.sh` does, in `dir`.
fn demo_config(dir: &Path, port: u16) -> Config {
    let text = std::fs::read_to_string(Path::new(ROOT).join("concord.toml")).expect("concord.toml");
    let mut out = String::new();
    for line in text.lines() {
        let line = if line.starts_with("listen = ") {
            format!("listen = \"127.0.0.1:{port}\"")
        } else if line.starts_with("url = \"sqlite://data/concord.db\"") {
            format!("url = \"sqlite://{}/concord.db\"", dir.display())
        } else if line.starts_with("level = ") {
            "level = \"warn\"".to_owned()
        } else if line.starts_with("dir = \"policies\"") {
            format!("dir = \"{ROOT}/policies\"")
        } else if line.starts_with("dir = \"fhir-profiles\"") {
            format!("dir = \"{ROOT}/fhir-profiles\"")
        } else {
            line.replace("\"examples/", &format!("\"{ROOT}/examples/"))
        };
        out.push_str(&line);
        out.push('\n');
    }
    let path = dir.join("concord.toml");
    std::fs::write(&path, out).expect("write config");
    Config::load(&path).expect("the demo config loads")
}

fn dev_token(config: &Config, ttl_secs: u64) -> String {
    let spec = DevToken {
        user: "demo-user".into(),
        name: "Demo User".into(),
        org: "A81001".into(),
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        patient: None,
        relationship: None,
        scope: "user/*.rs".into(),
        ttl_secs,
    };
    concord::auth::sign_dev_token(config.auth.as_ref().expect("[auth]"), &spec).expect("token")
}

/// The types `$everything` asks for with no `_type`, as the handler works them out.
fn everything_types(principal: &Principal) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = TYPES
        .iter()
        .map(|t| t.name)
        .filter(|t| principal.may(t, Interaction::Read))
        .collect();
    if principal.may("Patient", Interaction::Read) {
        types.push("Patient");
    }
    types
}

fn everything_search(id: &str, count: usize) -> TypeSearch {
    TypeSearch {
        patient: Some(id.to_owned()),
        filters: Vec::new(),
        count,
        sort: SortSpec::everything(),
        cursor: None,
        pretty: false,
        used: Used::default(),
    }
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let config = demo_config(dir.path(), addr.port());
    let state = concord::server::build_state(&config)
        .await
        .expect("the demo gateway starts");
    let listener = Listener::new(tcp, None)
        .expect("listener")
        .with_limits(Limits::from_config(&config.server))
        .with_metrics(state.metrics.clone());
    tokio::spawn(serve(
        listener,
        concord::server::app(state.clone()),
        std::future::pending(),
    ));
    let base = format!("http://{addr}/fhir");
    let token = dev_token(&config, 7200);
    let nhs = person_known_to_all_three();
    let client = reqwest::Client::new();
    let found = client
        .get(format!("{base}/Patient?identifier={NHS_SYSTEM}|{nhs}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("Patient search")
        .bytes()
        .await
        .expect("body");
    let found: Value = serde_json::from_slice(&found).expect("a Bundle");
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the person's gateway id")
        .to_owned();
    let url = format!("{base}/Patient/{id}/$everything");
    let first = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("$everything");
    assert!(
        first.status().is_success(),
        "$everything: {}",
        first.status()
    );
    let bundle_bytes = first.bytes().await.expect("body").len();

    let door = &state.door;
    let federation = door.federation();
    let header = format!("Bearer {token}");
    let principal = state
        .verifier
        .verify_header(Some(&header))
        .expect("the dev token verifies");
    let types = everything_types(&principal);
    let uuid = uuid::Uuid::parse_str(&id).expect("a gateway id is a uuid");
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    let set = door.policies().current();
    let planned = door
        .planned(&set, &principal, &types)
        .expect("the demo agreements give a clinician something");
    let plan = planned.plan();
    let person = federation
        .resolve_id(uuid, &plan, deadline())
        .await
        .expect("resolves")
        .and_then(|r| r.person)
        .expect("the person is known");
    let collected = federation.collect(&person, &plan, deadline()).await;
    let consent = door.consent_of(&person).await.expect("consent");
    let (disclosed, _) = planned.disclose(door, &person, &consent, collected.resources.clone());
    let patients: Vec<_> = disclosed
        .iter()
        .filter(|r| r.resource_type() == "Patient")
        .cloned()
        .collect();
    let links: usize = person.links.values().map(HashSet::len).sum();
    println!(
        "concord: one $everything in steps (release build; demo config and data; 127.0.0.1)\n\
         person NHS {nhs} (gateway id {id}), {links} patient record(s) in {} of 3 providers; \
         {} resources collected, {} disclosed ({} Patient merged into one); Bundle {bundle_bytes} bytes",
        person.links.values().filter(|l| !l.is_empty()).count(),
        collected.resources.len(),
        disclosed.len(),
        patients.len(),
    );
    eprintln!("timing (each step: warm-up, then up to STEPS_N iterations):");

    let mut rows = Vec::new();

    // authenticate
    let cached = format!("Bearer {}", dev_token(&config, 3600));
    rows.push(
        measure(
            "authenticate: token seen before (verified-token cache)",
            Part::PerRequest,
            iterations(20_000),
            async || (),
            async |()| state.verifier.verify_header(Some(&cached)).is_ok(),
        )
        .await,
    );
    let mut fresh = 0_u64;
    rows.push(
        measure(
            "authenticate: token never seen (EdDSA signature, claims)",
            Part::FirstSight,
            iterations(3000),
            async || {
                fresh += 1;
                format!("Bearer {}", dev_token(&config, 3600 + fresh))
            },
            async |h: String| state.verifier.verify_header(Some(&h)).is_ok(),
        )
        .await,
    );

    // plan
    rows.push(
        measure(
            "plan: agreements as they apply to the caller, the plan",
            Part::PerRequest,
            iterations(20_000),
            async || (),
            async |()| {
                let set = door.policies().current();
                door.planned(&set, &principal, &types)
                    .map(|p| p.plan().types.len())
                    .ok()
            },
        )
        .await,
    );

    // resolve
    rows.push(
        measure(
            "resolve: person by gateway id (links cached in memory)",
            Part::PerRequest,
            iterations(20_000),
            async || (),
            async |()| {
                federation
                    .resolve_id(uuid, &plan, deadline())
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.person.is_some())
            },
        )
        .await,
    );
    // A federation over the same sources and store, with nothing in memory yet.
    let profiles = Arc::new(
        concord::profiles::Profiles::load(&config.profiles.dir).expect("fhir-profiles load"),
    );
    let fresh_federation = || {
        Federation::new(
            federation.sources().to_vec(),
            federation.store().clone(),
            concord::telemetry::Metrics::new(),
            Duration::from_secs(config.store.link_max_age_secs),
            Duration::from_secs(config.store.link_cache_secs),
        )
        .with_profiles(profiles.clone())
    };
    rows.push(
        measure(
            "resolve: links not in memory (read from SQLite)",
            Part::FirstSight,
            iterations(3000),
            async || fresh_federation(),
            async |f: Federation| {
                f.resolve_id(uuid, &plan, deadline())
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.person.is_some())
            },
        )
        .await,
    );

    // collect
    rows.push(
        measure(
            "collect: the three NDJSON sources (normalised forms cached)",
            Part::PerRequest,
            iterations(10_000),
            async || (),
            async |()| federation.collect(&person, &plan, deadline()).await,
        )
        .await,
    );
    let mut raw: Vec<Arc<Value>> = Vec::new();
    for source in federation.sources() {
        let info = source.info();
        let asked = plan.types.get(&info.id).map_or(&[][..], Vec::as_slice);
        for local in person.links.get(&info.id).into_iter().flatten() {
            let fetched: Fetched = source.everything(local, asked).await.expect("NDJSON");
            raw.extend(fetched.resources);
        }
    }
    rows.push(
        measure(
            "  of which: the sources' own answers (NDJSON lookups)",
            Part::Within,
            iterations(10_000),
            async || (),
            async |()| {
                let mut n = 0;
                for source in federation.sources() {
                    let info = source.info();
                    let asked = plan.types.get(&info.id).map_or(&[][..], Vec::as_slice);
                    for local in person.links.get(&info.id).into_iter().flatten() {
                        n += source
                            .everything(local, asked)
                            .await
                            .map_or(0, |f| f.resources.len());
                    }
                }
                n
            },
        )
        .await,
    );
    rows.push(
        measure(
            "collect: first sight (profile check, normalise, label, keep)",
            Part::FirstSight,
            iterations(2000),
            async || fresh_federation(),
            async |f: Federation| f.collect(&person, &plan, deadline()).await,
        )
        .await,
    );
    rows.push(
        measure(
            "  of which: profile check of every resource",
            Part::FirstSight,
            iterations(3000),
            async || (),
            async |()| raw.iter().map(|r| profiles.check(r).len()).sum::<usize>(),
        )
        .await,
    );
    rows.push(
        measure(
            "  of which: label every resource (label map)",
            Part::FirstSight,
            iterations(10_000),
            async || (),
            async |()| {
                raw.iter()
                    .map(|r| set.labels.labels_of(r).len())
                    .sum::<usize>()
            },
        )
        .await,
    );

    // consent
    rows.push(
        measure(
            "consent: the person's sharing choices (cached briefly)",
            Part::PerRequest,
            iterations(20_000),
            async || (),
            async |()| door.consent_of(&person).await.is_ok(),
        )
        .await,
    );

    // decide + redact
    rows.push(
        measure(
            "decide + redact: a policy decision per resource",
            Part::PerRequest,
            iterations(10_000),
            async || collected.resources.clone(),
            async |resources| planned.disclose(door, &person, &consent, resources),
        )
        .await,
    );

    // merge: a warm request finds the Patient merged from these very parts kept
    let kept = MergedPatients::default();
    rows.push(
        measure(
            "merge: the providers' Patients into one (kept from the same parts)",
            Part::PerRequest,
            iterations(10_000),
            async || (),
            async |()| kept.merged(person.id, &patients),
        )
        .await,
    );
    rows.push(
        measure(
            "merge: parts never merged before (three Patients into one)",
            Part::FirstSight,
            iterations(10_000),
            async || (),
            async |()| merge_patient(person.id, &patients),
        )
        .await,
    );

    // page + serialise
    let path = format!("Patient/{id}/$everything");
    let search = everything_search(&id, state.config.max_page_size);
    let ask = Ask::Everything {
        id: &id,
        types: &types,
    };
    rows.push(
        measure(
            "page + serialise: sort, page, Bundle to bytes",
            Part::PerRequest,
            iterations(5000),
            async || door.answer(&principal, ask).await.expect("answer"),
            async |mut answer| {
                let (response, sent) =
                    concord::server::api::paged(&state, &path, &search, &mut answer);
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body");
                (bytes.len(), sent.len())
            },
        )
        .await,
    );

    // audit record
    let audit_config = config.audit.as_ref().expect("[audit]");
    let key = AuditKey::load(
        audit_config.key_file.as_deref(),
        audit_config.key_env.as_deref(),
    )
    .expect("audit key");
    let chain = state.audit.chain().to_owned();
    let request = || {
        let uri: axum::http::Uri = format!("/fhir/{path}").parse().expect("uri");
        let mut request = axum::extract::Request::builder()
            .uri(uri.clone())
            .header(
                concord::server::REQUEST_ID,
                uuid::Uuid::new_v4().to_string(),
            )
            .body(axum::body::Body::empty())
            .expect("request");
        request.extensions_mut().insert(OriginalUri(uri));
        request.extensions_mut().insert(ConnectInfo(Peer {
            addr: "127.0.0.1:40000".parse().expect("addr"),
            client_certificate: None,
        }));
        request
    };
    let mut seq = 0_i64;
    let mut prev = concord::audit::GENESIS.to_owned();
    rows.push(
        measure(
            "audit record: facts, record, canonical encoding, keyed hash",
            Part::PerRequest,
            iterations(5000),
            async || {
                let mut answer = door.answer(&principal, ask).await.expect("answer");
                let (_, sent) = concord::server::api::paged(&state, &path, &search, &mut answer);
                (answer, sent, request())
            },
            async |(answer, sent, request)| {
                let facts = answer.facts(&sent);
                let body =
                    concord::server::record_body(&state, &request, Some(&principal), facts, 200);
                let text = concord::audit::encode_body(&body).expect("encodes");
                let columns = Columns::of(&body);
                let hash = key.hash(&chain, seq, &prev, &text);
                seq += 1;
                prev = hash;
                (text.len(), columns)
            },
        )
        .await,
    );
    let record = {
        let mut answer = door.answer(&principal, ask).await.expect("answer");
        let (_, sent) = concord::server::api::paged(&state, &path, &search, &mut answer);
        concord::server::record_body(
            &state,
            &request(),
            Some(&principal),
            answer.facts(&sent),
            200,
        )
    };
    let record_bytes = concord::audit::encode_body(&record).expect("encodes").len();

    // audit append
    rows.push(
        measure(
            "audit append: durable, SQLite (WAL, synchronous=FULL)",
            Part::PerRequest,
            iterations(3000),
            async || {
                let mut body = record.clone();
                body.request_id = uuid::Uuid::new_v4().to_string();
                body
            },
            async |body| state.audit.append(&body).await.is_ok(),
        )
        .await,
    );

    // groupings and the whole request
    rows.push(
        measure(
            "door.answer as a whole (plan .. merge)",
            Part::Group,
            iterations(10_000),
            async || (),
            async |()| {
                door.answer(&principal, ask)
                    .await
                    .map(|a| a.resources.len())
            },
        )
        .await,
    );
    let router = concord::server::app(state.clone());
    rows.push(
        measure(
            "the router in-process: every layer and the handler, no socket",
            Part::Group,
            iterations(5000),
            async || {
                let mut request = request();
                request.headers_mut().insert(
                    axum::http::header::AUTHORIZATION,
                    header.parse().expect("header value"),
                );
                request
            },
            async |request| {
                use tower::ServiceExt;
                let response = router.clone().oneshot(request).await.expect("answers");
                assert!(response.status().is_success());
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body")
                    .len()
            },
        )
        .await,
    );
    rows.push(
        measure(
            "whole request: GET $everything over HTTP (reqwest)",
            Part::Whole,
            iterations(5000),
            async || (),
            async |()| {
                let response = client
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("answers");
                assert!(response.status().is_success());
                response.bytes().await.expect("body").len()
            },
        )
        .await,
    );

    let healthz = format!("http://{addr}/healthz");
    rows.push(
        measure(
            "floor: GET /healthz over the same client and socket",
            Part::Floor,
            iterations(5000),
            async || (),
            async |()| {
                let response = client.get(&healthz).send().await.expect("answers");
                assert!(response.status().is_success());
                response.bytes().await.expect("body").len()
            },
        )
        .await,
    );

    print_table(&rows, record_bytes);
}

fn print_table(rows: &[Row], record_bytes: usize) {
    let whole = rows
        .iter()
        .find(|r| r.part == Part::Whole)
        .map_or(f64::NAN, |r| r.median);
    let share = |us: f64| format!("{:.1}%", 100.0 * us / whole);
    let print = |label: &str, n: String, median: f64, p90: String| {
        println!(
            "{label:<62} {n:>6} {median:>11.2} {p90:>11} {:>8}",
            share(median)
        );
    };
    let row = |r: &Row| print(&r.label, r.n.to_string(), r.median, format!("{:.2}", r.p90));
    let part = |p: Part| rows.iter().filter(move |r| r.part == p);
    println!(
        "\n{:<62} {:>6} {:>11} {:>11} {:>8}",
        "step", "n", "median µs", "p90 µs", "share"
    );
    println!("every request, in order:");
    rows.iter()
        .filter(|r| matches!(r.part, Part::PerRequest | Part::Within))
        .for_each(row);
    let sum: f64 = part(Part::PerRequest).map(|r| r.median).sum();
    print(
        "sum of these steps' medians (\"of which\" rows not counted)",
        String::new(),
        sum,
        String::new(),
    );
    part(Part::Group).for_each(row);
    part(Part::Whole).for_each(row);
    print(
        "rest: whole request less the sum of the steps",
        String::new(),
        whole - sum,
        String::new(),
    );
    part(Part::Floor).for_each(row);
    println!("once, not repeated by a warm request (for scale):");
    part(Part::FirstSight).for_each(row);
    println!(
        "\nshare: of the whole request's median. The router row sends the same request through \
         every layer (request context, audit, token check, handler) in-process: it less the \
         sum is what the middleware, routing and the handler's parsing add; the whole \
         request less it is the transport (sockets, hyper, the client, the hops between \
         tasks), of which the floor is a request that does none of the gateway's work. The \
         audit record is {record_bytes} bytes (its route is empty here: axum's MatchedPath \
         cannot be made outside a router). Labelling is done while normalising, once per \
         resource of an NDJSON source (kept with the normalised form), so a warm request \
         does not label; sharing choices are cached for [store] consent_cache_ms."
    );
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}
