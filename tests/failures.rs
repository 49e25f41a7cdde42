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
async fn a_hanging_source_is_cut_and_named() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    social.set_mode(Mode::Hang);
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK);
    let why = outcomes(&all.body);
    assert!(
        why.iter()
            .any(|w| w.contains("(social) did not answer in time")),
        "{why:?}"
    );
    assert!(ids(&all.body).contains(&"community.w1".to_owned()));
    // Hanging while the person is being found, too: found in the others, the hang named.
    let fresh = TestApp::start(specs(&gp, &community, &social)).await;
    let found = fresh
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    assert_eq!(found.body["total"], 1);
    assert!(
        outcomes(&found.body)
            .iter()
            .any(|w| w.contains("(social) did not answer in time"))
    );
}

#[tokio::test]
async fn a_search_that_is_not_there_is_a_failure_not_an_empty_result() {
    let (gp, community, social) = three_sources().await;
    // A base URL with a wrong path: every search answers 404.
    let mut sources = specs(&gp, &community, &social);
    sources[1] = SourceSpec::fhir(
        "community",
        "Northshire Community Health",
        "RY4",
        format!("{}/wrong", community.base_url()),
    );
    let app = TestApp::start(sources).await;
    let found = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    let why = outcomes(&found.body);
    assert!(
        why.iter()
            .any(|w| w.contains("(community) could not be read")),
        "a 404 to a search is reported: {why:?}"
    );
}

#[tokio::test]
async fn a_type_the_upstream_does_not_support_is_left_out_not_the_whole_source() {
    let (gp, community, social) = three_sources().await;
    community.set_unsupported_types(&["Flag", "EpisodeOfCare"]);
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert!(
        ids(&all.body).contains(&"community.w1".to_owned()),
        "{:?}",
        ids(&all.body)
    );
    assert!(outcomes(&all.body).is_empty(), "{:?}", outcomes(&all.body));
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(metrics.contains("kind=\"type_not_supported\""), "{metrics}");
}

#[tokio::test]
async fn a_corrected_nhs_number_stops_showing_records_under_the_old_person() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let ann = app.patient_id(ANN).await;
    let before = app.get(&format!("Patient/{ann}/$everything")).await;
    assert!(ids(&before.body).contains(&"community.w1".to_owned()));
    // Community services find c-77 was not Ann after all: they give it another NHS number.
    community.add_resource(data::patient(
        "c-77",
        data::NOBODY,
        "Smith",
        "07700 900123",
        "Riverside",
    ));
    let after = app.get(&format!("Patient/{ann}/$everything")).await;
    let got = ids(&after.body);
    assert!(
        !got.iter().any(|i| i.starts_with("community.")),
        "c-77's records are no longer shown as Ann's: {got:?}"
    );
    assert!(got.contains(&"gp.o1".to_owned()));
    // The next request looks Ann up again at community services, which no longer know her.
    let again = app.get(&format!("Patient/{ann}")).await;
    assert_eq!(
        again.body["link"].as_array().map(Vec::len),
        Some(2),
        "{}",
        again.body
    );
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
    let (status, ready) = app.readiness().await;
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
