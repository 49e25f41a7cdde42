//! The federated read path when every source behaves.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{SourceSpec, StoreChoice, TestApp, entries, matches, outcomes};
use crate::support::data::{self, ANN, BOB, CAT, NOBODY};
use crate::support::upstream::Upstream;

pub(crate) async fn three_sources() -> (Upstream, Upstream, Upstream) {
    (
        Upstream::start(data::gp()).await,
        Upstream::start(data::community()).await,
        Upstream::start(data::social()).await,
    )
}

pub(crate) fn specs(gp: &Upstream, community: &Upstream, social: &Upstream) -> Vec<SourceSpec> {
    vec![
        SourceSpec::fhir("gp", "Riverside Medical Practice", "A81001", gp.base_url()),
        SourceSpec::fhir(
            "community",
            "Northshire Community Health",
            "RY4",
            community.base_url(),
        ),
        SourceSpec::fhir(
            "social",
            "Northshire Adult Social Care",
            "LA001",
            social.base_url(),
        ),
    ]
}

async fn merged_person_flow(store: StoreChoice) {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start_with(specs(&gp, &community, &social), store, "").await;

    let a = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["content-type"],
        "application/fhir+json; charset=utf-8"
    );
    assert_eq!(a.body["type"], "searchset");
    assert_eq!(a.body["total"], 1);
    let patients = entries(&a.body, "Patient");
    assert_eq!(patients.len(), 1);
    let p = &patients[0];
    let id = p["id"].as_str().expect("id");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "gateway patient id is a uuid: {id}"
    );
    // The NHS number once, traced to all three sources; each source's own MRN.
    let ids = p["identifier"].as_array().expect("identifiers");
    let nhs: Vec<&Value> = ids
        .iter()
        .filter(|i| i["system"] == data::NHS_SYSTEM)
        .collect();
    assert_eq!(nhs.len(), 1);
    assert_eq!(nhs[0]["extension"].as_array().map(Vec::len), Some(3));
    assert_eq!(ids.len(), 4);
    // Two phone numbers (the community one is newer), two addresses (moved), each traced.
    let phones: Vec<&str> = p["telecom"]
        .as_array()
        .expect("telecom")
        .iter()
        .filter_map(|t| t["value"].as_str())
        .collect();
    assert_eq!(phones, vec!["01632 960001", "07700 900123"]);
    let cities: Vec<&str> = p["address"]
        .as_array()
        .expect("address")
        .iter()
        .filter_map(|a| a["city"].as_str())
        .collect();
    assert_eq!(cities, vec!["Riverside", "Millbrook"]);
    for address in p["address"].as_array().expect("address") {
        assert!(
            address["extension"][0]["valueUri"]
                .as_str()
                .is_some_and(|u| u.starts_with("urn:concord:source:"))
        );
    }
    assert_eq!(p["link"].as_array().map(Vec::len), Some(3));
    let orgs: Vec<&str> = p["meta"]["tag"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["code"].as_str())
        .collect();
    assert_eq!(orgs, vec!["A81001", "RY4", "LA001"]);
    assert!(
        outcomes(&a.body).is_empty(),
        "nothing went wrong: {:?}",
        outcomes(&a.body)
    );

    // The same id again: one stable gateway patient id.
    assert_eq!(app.patient_id(ANN).await, id);

    // Read the merged Patient.
    let read = app.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["id"], id);

    // Everything: every source's records, none of anyone else's.
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let resources = matches(&all.body);
    let got: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "CarePlan/social.cp1",
            "Condition/gp.c1",
            "Encounter/community.v1",
            "Encounter/gp.e1",
            "Observation/community.w1",
            "Observation/gp.o1",
            "Observation/gp.o2",
            format!("Patient/{id}").as_str(),
        ]
    );
    assert_eq!(
        got[0],
        format!("Patient/{id}"),
        "the merged Patient comes first"
    );
    assert_eq!(all.body["total"], 8);
    for r in &resources[1..] {
        let source = r["meta"]["source"].as_str().expect("meta.source");
        let prefix = r["id"]
            .as_str()
            .and_then(|i| i.split('.').next())
            .expect("prefix");
        assert_eq!(source, format!("urn:concord:source:{prefix}"));
        assert_eq!(r["meta"]["tag"].as_array().map(Vec::len), Some(1));
        let subject = r
            .get("subject")
            .or_else(|| r.get("patient"))
            .expect("subject");
        assert_eq!(subject["reference"], format!("Patient/{id}"));
    }

    // Upstreams were asked for FHIR JSON, by NHS number and by their own patient ids.
    assert_eq!(
        gp.last_accept_header().as_deref(),
        Some("application/fhir+json")
    );
    assert!(
        gp.requests()
            .iter()
            .any(|r| r
                .contains("identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018")),
        "{:?}",
        gp.requests()
    );
}

#[tokio::test]
async fn a_person_in_all_three_sources_is_merged() {
    merged_person_flow(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn a_person_in_all_three_sources_is_merged_with_postgres() {
    let Some(db) = crate::support::app::postgres().await else {
        return;
    };
    merged_person_flow(StoreChoice::Postgres(db.url().to_owned())).await;
    db.drop().await;
}

#[tokio::test]
async fn a_person_in_one_source_only() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(CAT).await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    let got: Vec<String> = matches(&all.body)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(got, vec![id.clone(), "community.w2".to_owned()]);
    let p = app.get(&format!("Patient/{id}")).await;
    assert_eq!(p.body["meta"]["tag"].as_array().map(Vec::len), Some(1));
    assert_eq!(p.body["name"][0]["family"], "Brown");
    // Bob is at the GP only.
    let bob = app.patient_id(BOB).await;
    let obs = app.get(&format!("Observation?patient={bob}")).await;
    assert_eq!(matches(&obs.body).len(), 1);
}

#[tokio::test]
async fn an_unknown_nhs_number_finds_nobody() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let a = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NOBODY}"
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["total"], 0);
    assert!(matches(&a.body).is_empty(), "{}", a.body);
    assert_eq!(
        outcomes(&a.body),
        [concord::server::api::NOTHING_TO_SHOW],
        "the one notice every empty answer carries"
    );
    // Every source was asked.
    for up in [&gp, &community, &social] {
        assert_eq!(up.request_count(), 1);
    }
}

#[tokio::test]
async fn references_resolve_through_the_gateway() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let obs = app
        .get(&format!(
            "Observation?patient={id}&code=http://snomed.info/sct|27113001&date=2026-02-01"
        ))
        .await;
    let found = matches(&obs.body);
    assert_eq!(found.len(), 1, "{}", obs.body);
    let o = &found[0];
    assert_eq!(o["id"], "gp.o1");
    // encounter -> the GP's Encounter, through the gateway.
    let enc_ref = o["encounter"]["reference"].as_str().expect("encounter ref");
    assert_eq!(enc_ref, "Encounter/gp.e1");
    let enc = app.get(enc_ref).await;
    assert_eq!(enc.status, StatusCode::OK, "{}", enc.body);
    assert_eq!(enc.body["id"], "gp.e1");
    assert_eq!(enc.body["subject"]["reference"], format!("Patient/{id}"));
    // subject -> the merged Patient.
    let subj = app
        .get(o["subject"]["reference"].as_str().expect("subject"))
        .await;
    assert_eq!(subj.status, StatusCode::OK);
    assert_eq!(subj.body["id"], id);
    // Patient.link -> each source's own Patient.
    for link in subj.body["link"].as_array().expect("links") {
        let r = app
            .get(link["other"]["reference"].as_str().expect("ref"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["resourceType"], "Patient");
    }
    // A source's own Patient id names the person in searches too.
    let via_gp = app.get("Observation?patient=gp.g-ann").await;
    assert_eq!(via_gp.body["total"], 3, "{}", via_gp.body);
    // The reference to the GP's Organization is rewritten too, but Organization is not served.
    let enc_org = enc.body["serviceProvider"]["reference"]
        .as_str()
        .expect("org ref");
    assert_eq!(enc_org, "Organization/gp.practice");
    // A read of a resource that exists but is about a person reached by no patient link.
    let read = app.get("Observation/gp.o3").await;
    assert_eq!(
        read.status,
        StatusCode::OK,
        "Bob's record is found by its own patient reference"
    );
    assert_eq!(
        read.body["subject"]["reference"],
        format!("Patient/{}", app.patient_id(BOB).await)
    );
    // Unknown ids and sources are 404.
    for missing in [
        "Observation/gp.nope",
        "Observation/nosuchsource.o1",
        "Observation/noprefix",
        "Patient/00000000-0000-0000-0000-000000000000",
    ] {
        let r = app.get(missing).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
}

#[tokio::test]
async fn type_searches_filter_sort_and_stay_within_the_person() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let ids = |b: &Value| {
        matches(b)
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };

    let newest_first = app.get(&format!("Observation?patient={id}")).await;
    assert_eq!(
        ids(&newest_first.body),
        vec!["community.w1", "gp.o1", "gp.o2"]
    );
    let oldest_first = app
        .get(&format!("Observation?subject=Patient/{id}&_sort=date"))
        .await;
    assert_eq!(
        ids(&oldest_first.body),
        vec!["gp.o2", "gp.o1", "community.w1"]
    );
    let since = app
        .get(&format!(
            "Observation?patient={id}&date=ge2026-01-01&_sort=-date"
        ))
        .await;
    assert_eq!(ids(&since.body), vec!["community.w1", "gp.o1"]);
    let window = app
        .get(&format!(
            "Observation?patient={id}&date=ge2026-01-01&date=lt2026-03-01"
        ))
        .await;
    assert_eq!(ids(&window.body), vec!["gp.o1"]);
    let code = app
        .get(&format!("Observation?patient={id}&code=271649006"))
        .await;
    assert_eq!(ids(&code.body), vec!["gp.o2"]);
    let status = app
        .get(&format!(
            "Observation?patient={id}&status=final&category=vital-signs"
        ))
        .await;
    assert_eq!(ids(&status.body).len(), 3);
    let amended = app
        .get(&format!("Observation?patient={id}&status=amended"))
        .await;
    assert_eq!(amended.body["total"], 0);
    let updated = app
        .get(&format!(
            "Observation?patient={id}&_lastUpdated=ge2026-03-01"
        ))
        .await;
    assert_eq!(ids(&updated.body), vec!["community.w1"]);
    let conditions = app
        .get(&format!("Condition?patient={id}&onset-date=lt2020"))
        .await;
    assert_eq!(ids(&conditions.body), vec!["gp.c1"]);
    let plans = app
        .get(&format!(
            "CarePlan?patient={id}&status=active&date=ge2026-05-01"
        ))
        .await;
    assert_eq!(
        ids(&plans.body),
        vec!["social.cp1"],
        "an open period is ongoing"
    );
}

/// Writes resources as a Bulk Data export: one `{Type}.ndjson` per type.
fn write_export(dir: &std::path::Path, resources: &[Value]) {
    let mut files: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for r in resources {
        let t = r["resourceType"].as_str().expect("type").to_owned();
        let line = files.entry(t).or_default();
        line.push_str(&r.to_string());
        line.push('\n');
    }
    for (t, text) in files {
        std::fs::write(dir.join(format!("{t}.ndjson")), text).expect("write export");
    }
}

#[tokio::test]
async fn ndjson_exports_and_fhir_servers_federate_alike() {
    let export = tempfile::tempdir().expect("tempdir");
    write_export(export.path(), &data::gp());
    let community = Upstream::start(data::community()).await;
    let app = TestApp::start(vec![
        SourceSpec::ndjson(
            "gp",
            "Riverside Medical Practice",
            "A81001",
            export.path().to_owned(),
        ),
        SourceSpec::fhir(
            "community",
            "Northshire Community Health",
            "RY4",
            community.base_url(),
        ),
    ])
    .await;
    let id = app.patient_id(ANN).await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    let mut got: Vec<String> = matches(&all.body)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    got.sort();
    let mut expected = vec![
        "community.v1",
        "community.w1",
        "gp.c1",
        "gp.e1",
        "gp.o1",
        "gp.o2",
        id.as_str(),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // Served again from reused normalised resources: the same answer, byte for byte but for
    // the Bundle's own id and time.
    let again = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(again.body["entry"], all.body["entry"]);
    let pretty = app
        .get(&format!("Patient/{id}/$everything?_pretty=true"))
        .await;
    assert_eq!(pretty.body["entry"], all.body["entry"]);
    let read = app.get("Encounter/gp.e1").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["subject"]["reference"], format!("Patient/{id}"));
}

/// The door is a library: what `Door::answer` gives a caller is what the FHIR API sends
/// them, and its facts name what was disclosed and the policy set that decided. (The IG
/// console and `policy explain` call it so, never the HTTP API.)
#[tokio::test]
async fn the_door_gives_a_library_caller_what_the_fhir_api_sends() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let found = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    let id = entries(&found.body, "Patient")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let over_http = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(over_http.status, StatusCode::OK);
    let mut sent: Vec<String> = over_http.body["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or_default(),
                e["resource"]["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    sent.sort();

    let principal = app
        .state
        .verifier
        .verify(&app.token)
        .expect("the test token");
    let mut types: Vec<&'static str> = concord::fhir::search::TYPES
        .iter()
        .map(|t| t.name)
        .collect();
    types.push("Patient");
    let answer = app
        .state
        .door
        .answer(
            &principal,
            concord::disclose::Ask::Everything {
                id: &id,
                types: &types,
            },
        )
        .await
        .expect("the door answers");
    assert_eq!(
        answer.person.as_ref().map(|p| p.id.to_string()),
        Some(id.clone())
    );
    let mut given: Vec<String> = answer
        .resources
        .iter()
        .map(|r| format!("{}/{}", r.resource_type(), r.id()))
        .collect();
    if answer.patient.is_some() {
        given.push(format!("Patient/{id}"));
    }
    given.sort();
    assert_eq!(
        given, sent,
        "the door and the API disclose the same resources"
    );

    let given: Vec<std::sync::Arc<str>> = given.iter().map(|g| g.as_str().into()).collect();
    let facts = answer.facts(&given);
    assert_eq!(facts.person.map(|p| p.to_string()), Some(id));
    assert_eq!(
        facts.policy_hash.as_deref(),
        Some(app.state.door.policies().current().hash.as_str())
    );
    // Every resource sent has its agreement and rule (the merged Patient stands for each
    // source's Patient, so there are at least as many decisions as resources sent).
    assert!(
        facts.disclosed.len() >= given.len(),
        "{:?}",
        facts.disclosed
    );
    assert!(
        facts
            .disclosed
            .iter()
            .all(|d| !d.agreement.is_empty() && !d.rule.is_empty())
    );
}
