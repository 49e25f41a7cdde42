//! The repository's own demo: `concord.toml` over the NDJSON exports in `examples/demo/`, as
//! the README walks through it.

use reqwest::StatusCode;

use concord::config::Config;

use crate::support::app::{entries, matches};

/// Known to all three providers; the GP only; the GP and social care with a safeguarding
/// flag and a carer (see examples/demo/README.md).
const EVERYWHERE: &str = "9990465630";
const GP_ONLY: &str = "9996656063";
const FLAGGED: &str = "9992846496";

async fn demo() -> (
    String,
    reqwest::Client,
    tempfile::TempDir,
    tokio::task::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/concord.toml"
    )))
    .expect("the demo config is valid");
    config.store.url = format!("sqlite://{}/demo.db", dir.path().display());
    if let Some(audit) = config.audit.as_mut() {
        audit.spool_dir = dir.path().join("audit-spool");
        audit.witness_file = Some(dir.path().join("audit-witness.ndjson"));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    config.server.public_base_url = Some(format!("http://{addr}/fhir"));
    let state = concord::server::build_state(&config)
        .await
        .expect("demo starts");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, concord::server::app(state)).await;
    });
    (
        format!("http://{addr}/fhir"),
        reqwest::Client::new(),
        dir,
        server,
    )
}

/// A clinician's token from `concord dev-token`'s signer, with the demo config.
fn demo_token() -> String {
    let config = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/concord.toml"
    )))
    .expect("demo config");
    crate::support::app::dev_token(&config)
}

async fn get(client: &reqwest::Client, url: String) -> serde_json::Value {
    let r = client
        .get(url)
        .bearer_auth(demo_token())
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::OK);
    serde_json::from_slice(&r.bytes().await.expect("body")).expect("json")
}

#[tokio::test]
async fn the_readme_walk_through_works_on_the_demo() {
    let (base, client, _dir, server) = demo().await;
    let find =
        |nhs: &str| format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");

    let everywhere = get(&client, find(EVERYWHERE)).await;
    let patient = &entries(&everywhere, "Patient")[0];
    assert_eq!(
        patient["link"].as_array().map(Vec::len),
        Some(3),
        "linked to all three providers"
    );
    let id = patient["id"].as_str().expect("id");
    let all = get(&client, format!("{base}/Patient/{id}/$everything")).await;
    let orgs: std::collections::BTreeSet<String> = matches(&all)
        .iter()
        .filter_map(|r| r["meta"]["tag"][0]["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        orgs.into_iter().collect::<Vec<_>>(),
        vec!["A81001", "LA001", "RY4"]
    );
    let obs = get(&client, format!("{base}/Observation?patient={id}&_count=1")).await;
    if let Some(reference) = matches(&obs)[0]["encounter"]["reference"].as_str() {
        let enc = get(&client, format!("{base}/{reference}")).await;
        assert_eq!(enc["resourceType"], "Encounter");
    }

    let gp_only = get(&client, find(GP_ONLY)).await;
    assert_eq!(
        entries(&gp_only, "Patient")[0]["meta"]["tag"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let flagged = get(&client, find(FLAGGED)).await;
    let id = entries(&flagged, "Patient")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let all = get(&client, format!("{base}/Patient/{id}/$everything")).await;
    let types: Vec<String> = matches(&all)
        .iter()
        .filter_map(|r| r["resourceType"].as_str().map(str::to_owned))
        .collect();
    assert!(types.iter().any(|t| t == "Flag"), "{types:?}");
    assert!(types.iter().any(|t| t == "RelatedPerson"), "{types:?}");
    server.abort();
}

/// The demo's deliberate faults (examples/demo/README.md): community Encounters whose status
/// is `completed`, flagged by the demo gateway.
#[tokio::test]
async fn the_demo_flags_its_deliberate_faults() {
    let demo_dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo"));
    let encounters =
        std::fs::read_to_string(demo_dir.join("community/Encounter.ndjson")).expect("encounters");
    let faulty: serde_json::Value = encounters
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|e| e["status"] == "completed")
        .expect("the demo has a faulty Encounter");
    let patient_local = faulty["subject"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .expect("subject")
        .to_owned();
    let patients =
        std::fs::read_to_string(demo_dir.join("community/Patient.ndjson")).expect("patients");
    let nhs = patients
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|p| p["id"] == patient_local.as_str())
        .and_then(|p| {
            p["identifier"].as_array().and_then(|ids| {
                ids.iter()
                    .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
                    .and_then(|i| i["value"].as_str().map(str::to_owned))
            })
        })
        .expect("the person's NHS number");

    let (base, client, _dir, server) = demo().await;
    let found = get(
        &client,
        format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
    )
    .await;
    let id = entries(&found, "Patient")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let all = get(&client, format!("{base}/Patient/{id}/$everything")).await;
    let gateway_id = format!("community.{}", faulty["id"].as_str().expect("id"));
    let flagged = matches(&all)
        .into_iter()
        .find(|r| r["resourceType"] == "Encounter" && r["id"] == gateway_id.as_str())
        .expect("the faulty Encounter is disclosed");
    assert!(
        flagged["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "nonconformant")),
        "{flagged}"
    );
    let text = all.to_string();
    assert!(
        text.contains(&format!(
            "Encounter/{gateway_id} does not conform to its profile: Encounter.status: [binding] `completed` is not one of"
        )),
        "{text}"
    );
    server.abort();
}
