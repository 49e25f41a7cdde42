//! What authentication costs, measured two ways in one run:
//!
//! 1. Verifying one bearer token, per algorithm (RS256 with a 2048-bit key, ES256, EdDSA):
//!    the first sight of a token (signature checked, claims read) and a repeat (found in the
//!    verified-token cache by its SHA-256).
//! 2. The gateway's throughput with authentication on and off, side by side: two listeners
//!    on 127.0.0.1 over the same gateway state (one NDJSON source), one verifying the token
//!    on every request and one running every request as a fixed principal. Driven by wrk
//!    (fixed duration and connection count), alternating on and off three times; without wrk
//!    on the PATH, by an in-process closed loop instead (said in the output).
//!
//! Run with `cargo bench --bench auth`; `LOAD_SECONDS` (default 10) sets each wrk run's
//! length. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

#[path = "common/load.rs"]
mod load;

use std::path::Path;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use concord::config::Config;
use concord::server::tls::{Listener, serve};

/// The same allocator as the `concord` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://idp.bench.invalid";
const AUDIENCE: &str = "concord-bench";
const NHS: &str = "9990000018";
const TOKENS_PER_ALGORITHM: usize = 2_000;
const CACHED_VERIFICATIONS: usize = 100_000;

struct Key {
    name: &'static str,
    kid: &'static str,
    algorithm: Algorithm,
    signing: EncodingKey,
}

/// Makes the three keys, writing each public key beside the config.
fn keys(dir: &Path) -> Vec<Key> {
    let specs: [(&str, &str, Algorithm, &rcgen::SignatureAlgorithm); 3] = [
        (
            "RS256 (2048-bit)",
            "rs",
            Algorithm::RS256,
            &rcgen::PKCS_RSA_SHA256,
        ),
        (
            "ES256 (P-256)",
            "es",
            Algorithm::ES256,
            &rcgen::PKCS_ECDSA_P256_SHA256,
        ),
        (
            "EdDSA (Ed25519)",
            "ed",
            Algorithm::EdDSA,
            &rcgen::PKCS_ED25519,
        ),
    ];
    specs
        .into_iter()
        .map(|(name, kid, algorithm, rcgen_alg)| {
            let pair = rcgen::KeyPair::generate_for(rcgen_alg).expect("key");
            std::fs::write(dir.join(format!("{kid}.pub.pem")), pair.public_key_pem())
                .expect("write key");
            let pem = pair.serialize_pem();
            let signing = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
                _ => EncodingKey::from_ed_pem(pem.as_bytes()),
            }
            .expect("signing key");
            Key {
                name,
                kid,
                algorithm,
                signing,
            }
        })
        .collect()
}

fn token(key: &Key, jti: usize) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
        "sub": "dr-bench", "name": "Dr Bench", "org": "A81001", "role": "clinician",
        "scope": "user/*.rs", "jti": format!("bench-{jti}"),
    });
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.into());
    jsonwebtoken::encode(&header, &claims, &key.signing).expect("sign")
}

/// One person's record at one provider, as NDJSON files by type.
fn write_record(dir: &Path) {
    let subject = json!({"reference": "Patient/g1"});
    let mut files: Vec<(&str, Vec<Value>)> = vec![(
        "Patient",
        vec![json!({"resourceType": "Patient", "id": "g1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
            "name": [{"family": "Bench", "given": ["Mark"]}], "birthDate": "1950-01-01"})],
    )];
    let mut obs = Vec::new();
    let mut conditions = Vec::new();
    for i in 0..10 {
        obs.push(json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final", "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001", "display": "Body weight"}]},
            "effectiveDateTime": format!("2026-0{}-01T10:00:00Z", 1 + i % 9),
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}));
        conditions.push(json!({"resourceType": "Condition", "id": format!("c{i}"), "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]},
            "onsetDateTime": "2020-01-01"}));
    }
    files.push(("Observation", obs));
    files.push(("Condition", conditions));
    for (ty, resources) in files {
        let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
        std::fs::write(dir.join(format!("{ty}.ndjson")), lines.join("\n") + "\n")
            .expect("write ndjson");
    }
}

fn config(dir: &Path) -> Config {
    let data = dir.join("gp");
    std::fs::create_dir_all(&data).expect("dir");
    write_record(&data);
    let audit_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-audit.key"
    );
    // Every disclosure needs an agreement: one that lets the benchmark's clinician see the
    // whole record, so that what is measured is authentication.
    std::fs::create_dir_all(dir.join("policies")).expect("policy dir");
    std::fs::write(
        dir.join("policies/bench.toml"),
        "[agreement]\nid = \"bench\"\ntitle = \"Benchmark\"\nversion = \"1\"\nstatus = \"active\"\n\
         legal_basis = [\"benchmark\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"bench\"\n\n\
         [parties]\ndisclosers = [\"A81001\"]\nrecipients = [\"A81001\"]\n\n\
         [[rule]]\nid = \"all\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n",
    )
    .expect("write agreement");
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[store]\nurl = \"sqlite://concord.db\"\n\n[log]\nlevel = \"error\"\n\n\
         [audit]\nkey_file = \"{audit_key}\"\n\n[auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
    );
    for (kid, algorithm) in [("rs", "RS256"), ("es", "ES256"), ("ed", "EdDSA")] {
        toml.push_str(&format!(
            "\n[[auth.key]]\nkid = \"{kid}\"\nalgorithm = \"{algorithm}\"\npublic_key_file = \"{kid}.pub.pem\"\n"
        ));
    }
    toml.push_str(
        "\n[[source]]\nid = \"gp\"\nname = \"Bench GP\"\nods = \"A81001\"\nkind = \"ndjson\"\npath = \"gp\"\n",
    );
    let path = dir.join("concord.toml");
    std::fs::write(&path, toml).expect("write config");
    Config::load(&path).expect("valid config")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn verification_cost(config: &Config, keys: &[Key]) {
    println!(
        "\n1. verifying one token (µs per verification; {TOKENS_PER_ALGORITHM} distinct tokens, then {CACHED_VERIFICATIONS} repeats of one)"
    );
    println!(
        "{:<20} {:>12} {:>12} {:>12} {:>16}",
        "algorithm", "first median", "first p99", "first mean", "repeat (cached)"
    );
    let auth = config.auth.as_ref().expect("auth");
    for key in keys {
        // A fresh verifier per algorithm: every first sight is a real signature check.
        let verifier = concord::auth::Verifier::from_config(auth).expect("verifier");
        let tokens: Vec<String> = (0..TOKENS_PER_ALGORITHM).map(|i| token(key, i)).collect();
        let mut first = Vec::with_capacity(tokens.len());
        let all = Instant::now();
        for t in &tokens {
            let started = Instant::now();
            verifier.verify(t).expect("valid token");
            first.push(started.elapsed().as_secs_f64() * 1e6);
        }
        let mean = all.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64;
        first.sort_by(f64::total_cmp);
        let started = Instant::now();
        for _ in 0..CACHED_VERIFICATIONS {
            verifier.verify(&tokens[0]).expect("valid token");
        }
        let cached = started.elapsed().as_secs_f64() * 1e6 / CACHED_VERIFICATIONS as f64;
        println!(
            "{:<20} {:>12.1} {:>12.1} {:>12.1} {:>16.2}",
            key.name,
            percentile(&first, 0.5),
            percentile(&first, 0.99),
            mean,
            cached
        );
    }
}

/// More distinct tokens than the verified-token cache holds, so that rotating through them
/// in order never finds one still cached: every request pays a signature check.
const ROTATED_TOKENS: usize = 60_000;

/// Writes `ROTATED_TOKENS` EdDSA tokens never used before (`round` keeps each round's apart,
/// so none is still cached from an earlier run) and a wrk script that sends them in turn.
fn rotation_script(dir: &Path, key: &Key, path: &str, round: usize) -> std::path::PathBuf {
    let first = (round + 1) * 1_000_000;
    let tokens: Vec<String> = (first..first + ROTATED_TOKENS)
        .map(|i| token(key, i))
        .collect();
    let list = dir.join("tokens.txt");
    std::fs::write(&list, tokens.join("\n") + "\n").expect("write tokens");
    let script = dir.join("rotate.lua");
    std::fs::write(
        &script,
        format!(
            "local tokens = {{}}\nfor line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\n\
             local i = 0\nrequest = function()\n  i = i % #tokens + 1\n  \
             return wrk.format(\"GET\", \"{path}\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\nend\n",
            list.display()
        ),
    )
    .expect("write script");
    script
}

async fn throughput(dir: &Path, config: &Config, keys: &[Key]) {
    let state = concord::server::build_state(config)
        .await
        .expect("gateway starts");
    let bearer = token(&keys[2], 1_000_000);
    let principal = state.verifier.verify(&bearer).expect("principal");
    let mut bases = Vec::new();
    for app in [
        concord::server::app(state.clone()),
        concord::testing::app_with_fixed_principal(state.clone(), principal),
    ] {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        bases.push(format!("http://{}/fhir", tcp.local_addr().expect("addr")));
        let listener = Listener::new(tcp, None).expect("listener");
        tokio::spawn(serve(listener, app, std::future::pending()));
    }
    let client = reqwest::Client::new();
    let answer = client
        .get(format!(
            "{}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS}",
            bases[0]
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .expect("search")
        .bytes()
        .await
        .expect("body");
    let found: Value = serde_json::from_slice(&answer).expect("json");
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let urls: Vec<String> = bases
        .iter()
        .map(|b| format!("{b}/Patient/{id}/$everything"))
        .collect();
    let has_wrk = load::has_wrk();
    let seconds = load::seconds();
    println!(
        "\n2. throughput, $everything of one person (21 resources) from an NDJSON source, {}",
        if has_wrk {
            format!("wrk -t1 -c32 -d{seconds}s per run")
        } else {
            "wrk not found: in-process closed loop, 32 clients x 20,000 requests".into()
        }
    );
    println!(
        "{:<6} {:<38} {:>12} {:>10} {:>10}",
        "round", "authentication", "requests/s", "median", "p99"
    );
    let path = urls[0].split_once("/fhir").map_or("", |(_, p)| p);
    let path = format!("/fhir{path}");
    let mut sums = [0.0, 0.0, 0.0];
    for round in 1..=3 {
        let rotate = has_wrk.then(|| rotation_script(dir, &keys[2], &path, round));
        let mut runs = vec![
            ("on, one token (verified-token cache)", &urls[0], None),
            ("off (fixed principal)", &urls[1], None),
        ];
        if let Some(script) = &rotate {
            runs.push((
                "on, a new EdDSA token every request",
                &urls[0],
                Some(script.as_path()),
            ));
        }
        for (i, (label, url, script)) in runs.into_iter().enumerate() {
            let load = if has_wrk {
                let extra: Vec<std::ffi::OsString> = match script {
                    Some(script) => vec!["-s".into(), script.into()],
                    None => vec![
                        "-H".into(),
                        format!("Authorization: Bearer {bearer}").into(),
                    ],
                };
                load::wrk(url, &extra, seconds).await
            } else {
                load::closed_loop(url, Some(&bearer), 20_000).await
            };
            sums[i] += load.rps;
            println!(
                "{round:<6} {label:<38} {:>12.0} {:>10} {:>10}",
                load.rps, load.p50, load.p99
            );
        }
    }
    println!(
        "mean of 3: on {:.0} req/s, off {:.0} req/s (on = {:.1}% of off)",
        sums[0] / 3.0,
        sums[1] / 3.0,
        100.0 * sums[0] / sums[1]
    );
    if has_wrk {
        println!(
            "mean of 3: a new token every request {:.0} req/s ({:.1}% of off)",
            sums[2] / 3.0,
            100.0 * sums[2] / sums[1]
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let config = config(dir.path());
    println!("concord authentication benchmarks (release build, 127.0.0.1)");
    verification_cost(&config, &keys);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(throughput(dir.path(), &config, &keys));
}
