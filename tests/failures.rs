//! Sources that fail, hang, answer garbage or leak other people's records: the answer still
//! comes back with everyone else's data, and says exactly which source is missing.

use std::time::Duration;

use reqwest::StatusCode;

use crate::read_path::{specs, three_sources};
use crate::support::app::{SourceSpec, TestApp, matches, outcomes};
use crate::support::data::{self, ANN, BOB};
use crate::support::upstream::{Mode, Upstream};

fn ids(bundle: &serde_json::Value) -> Vec<String> {
    matches(bundle)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Each failure mode of the community source, both before the person is known (while
/// finding them) and after (while fetching their records).
#[tokio::test]
async fn a_failing_source_leaves_the_rest_of_the_answer() {
    type Case = (&'static str, fn() -> Mode, Duration);
    let cases: [Case; 5] = [
        ("down", || Mode::Status(500), Duration::ZERO),
        ("unavailable", || Mode::Status(503), Duration::ZERO),
        ("garbage", || Mode::Garbage, Duration::ZERO),
        ("not a bundle", || Mode::WrongJson, Duration::ZERO),
        ("slow", || Mode::Normal, Duration::from_millis(2500)),
    ];
    for (label, mode, latency) in cases {
        for after_resolution in [false, true] {
            let (gp, community, social) = three_sources().await;
            let app = TestApp::start(specs(&gp, &community, &social)).await;
            let id = if after_resolution {
                Some(app.patient_id(ANN).await)
            } else {
                None
            };
            community.set_mode(mode());
            community.set_latency(latency);
            let id = match id {
                Some(id) => id,
                None => {
                    let found = app
                        .get(&format!(
                            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
                        ))
                        .await;
                    assert_eq!(found.status, StatusCode::OK, "{label}");
                    let why = outcomes(&found.body);
                    assert_eq!(why.len(), 1, "{label}: {why:?}");
                    assert!(
                        why[0].contains("Northshire Community Health (community)"),
                        "{label}: {why:?}"
                    );
                    found.body["entry"][0]["resource"]["id"]
                        .as_str()
                        .expect("still found")
                        .to_owned()
                }
            };
            let all = app.get(&format!("Patient/{id}/$everything")).await;
            assert_eq!(all.status, StatusCode::OK, "{label}");
            let got = ids(&all.body);
            assert!(
                got.contains(&"gp.o1".to_owned()) && got.contains(&"social.cp1".to_owned()),
                "{label}: {got:?}"
            );
            assert!(
                !got.iter().any(|i| i.starts_with("community.")),
                "{label}: {got:?}"
            );
            let why = outcomes(&all.body);
            assert_eq!(
                why.len(),
                1,
                "{label} (after resolution: {after_resolution}): {why:?}"
            );
            assert!(
                why[0].contains("Northshire Community Health (community)"),
                "{label}: {why:?}"
            );
            assert!(
                why[0].contains("missing from this result"),
                "{label}: {why:?}"
            );
            // The upstream's own error text never reaches the caller.
            let text = all.body.to_string();
            for leak in ["hello", "not JSON", "HTTP 500", "garbage", "expected value"] {
                assert!(!text.contains(leak), "{label}: leaked `{leak}`");
            }
            let entry = all.body["entry"]
                .as_array()
                .and_then(|e| e.iter().find(|e| e["search"]["mode"] == "outcome"))
                .cloned()
                .expect("outcome entry");
            assert_eq!(
                entry["resource"]["issue"][0]["details"]["coding"][0]["code"],
                "community"
            );
            community.set_latency(Duration::ZERO);
            community.set_mode(Mode::Normal);
        }
    }
}

#[tokio::test]
async fn a_hanging_source_is_cut_at_the_request_deadline() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(
        specs(&gp, &community, &social)
            .into_iter()
            .map(|s| s.with("timeout_ms = 10000"))
            .collect(),
    )
    .await;
    let id = app.patient_id(ANN).await;
    social.set_mode(Mode::Hang);
    let started = std::time::Instant::now();
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the 1.5 s request deadline applies, not the source's 10 s timeout"
    );
    let why = outcomes(&all.body);
    assert!(
        why.iter()
            .any(|w| w.contains("(social) did not answer in time")),
        "{why:?}"
    );
    assert!(ids(&all.body).contains(&"community.w1".to_owned()));
}

#[tokio::test]
async fn a_provider_that_ignores_search_parameters_cannot_leak_other_peoples_records() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    gp.set_mode(Mode::IgnoreSearchParams);
    // Finding Ann: the GP answers with every Patient it has; only Ann's is linked.
    let id = app.patient_id(ANN).await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    let got = ids(&all.body);
    for bob_record in ["gp.o3", "gp.c2", "gp.g-bob"] {
        assert!(
            !got.contains(&bob_record.to_owned()),
            "leaked {bob_record}: {got:?}"
        );
    }
    assert!(got.contains(&"gp.o1".to_owned()));
    let why = outcomes(&all.body);
    assert!(
        why.iter()
            .any(|w| w.contains("(gp) returned") && w.contains("not about this person")),
        "{why:?}"
    );
    // And Bob's merged record has none of Ann's.
    let bob = app.patient_id(BOB).await;
    let bob_all = app.get(&format!("Patient/{bob}/$everything")).await;
    assert_eq!(
        ids(&bob_all.body)
            .iter()
            .filter(|i| i.starts_with("gp."))
            .count(),
        2,
        "{:?}",
        ids(&bob_all.body)
    );
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("concord_source_faults_total{")
                && l.contains("source=\"gp\"")
                && l.contains("foreign_resource")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_source_that_keeps_failing_is_skipped_by_its_breaker() {
    let (gp, community, social) = three_sources().await;
    let mut sources = specs(&gp, &community, &social);
    sources[1] = SourceSpec::fhir(
        "community",
        "Northshire Community Health",
        "RY4",
        community.base_url(),
    )
    .with("breaker_failures = 2\nbreaker_cool_down_secs = 60");
    let app = TestApp::start(sources).await;
    let id = app.patient_id(ANN).await;
    community.set_mode(Mode::Status(502));
    for _ in 0..2 {
        app.get(&format!("Observation?patient={id}")).await;
    }
    let before = community.request_count();
    let all = app.get(&format!("Observation?patient={id}")).await;
    assert_eq!(
        community.request_count(),
        before,
        "an open breaker does not call the source"
    );
    let why = outcomes(&all.body);
    assert!(
        why.iter()
            .any(|w| w.contains("(community) is unavailable after repeated failures")),
        "{why:?}"
    );
    assert_eq!(ids(&all.body), vec!["gp.o1", "gp.o2"]);
    let (status, ready) = app.get_root("/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a source down does not make the gateway unready"
    );
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(ready["sources"][1]["breaker"], "open");
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics.contains("concord_source_breaker_state{source=\"community\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_paging_is_followed_up_to_the_cap() {
    let many: Vec<serde_json::Value> =
        std::iter::once(data::patient("g-ann", ANN, "Smith", "0", "Riverside"))
            .chain((0..9).map(|i| {
                data::observation(
                    &format!("o{i}"),
                    "g-ann",
                    "27113001",
                    &format!("2026-01-0{}", i + 1),
                )
            }))
            .collect();
    let gp = Upstream::start(many).await;
    gp.set_page_size(2);
    let capped = TestApp::start(vec![
        SourceSpec::fhir("gp", "Riverside Medical Practice", "A81001", gp.base_url())
            .with("max_pages = 3"),
    ])
    .await;
    let id = capped.patient_id(ANN).await;
    let obs = capped.get(&format!("Observation?patient={id}")).await;
    assert_eq!(matches(&obs.body).len(), 6, "3 pages of 2");
    assert!(
        outcomes(&obs.body)
            .iter()
            .any(|w| w.contains("holds more records than the gateway fetches")),
        "{:?}",
        outcomes(&obs.body)
    );

    let uncapped = TestApp::start(vec![SourceSpec::fhir(
        "gp",
        "Riverside Medical Practice",
        "A81001",
        gp.base_url(),
    )])
    .await;
    let id = uncapped.patient_id(ANN).await;
    let obs = uncapped.get(&format!("Observation?patient={id}")).await;
    assert_eq!(matches(&obs.body).len(), 9);
    assert!(outcomes(&obs.body).is_empty());
}
