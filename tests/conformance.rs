//! Every resource a source returns is checked against its profile (`fhir-profiles/`); per
//! source, `conformance` says what happens to one that does not conform: `flag` (disclosed,
//! tagged, each problem named in the Bundle's OperationOutcome), `drop` (withheld and
//! counted) or `off` (not checked).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::read_path::specs;
use crate::support::app::{TestApp, matches, outcome_issues};
use crate::support::data::{self, ANN};
use crate::support::upstream::Upstream;

const TAG_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/conformance";

/// The three test providers; the GP also holds an Observation of Ann's whose status is not
/// an R4 status, and its `conformance` is `mode`.
async fn world(mode: &str) -> (TestApp, String, [Upstream; 3]) {
    let mut gp_data = data::gp();
    let mut bad = data::observation("o9", "g-ann", "27113001", "2026-02-02");
    bad["status"] = json!("done");
    gp_data.push(bad);
    let gp = Upstream::start(gp_data).await;
    let community = Upstream::start(data::community()).await;
    let social = Upstream::start(data::social()).await;
    let mut sources = specs(&gp, &community, &social);
    let first = sources.remove(0).with(&format!("conformance = \"{mode}\""));
    sources.insert(0, first);
    let app = TestApp::start(sources).await;
    let id = app.patient_id(ANN).await;
    (app, id, [gp, community, social])
}

fn resource<'a>(bundle: &'a [Value], reference: &str) -> Option<&'a Value> {
    bundle.iter().find(|r| {
        format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or_default(),
            r["id"].as_str().unwrap_or_default()
        ) == reference
    })
}

fn tagged(r: &Value) -> bool {
    r["meta"]["tag"].as_array().is_some_and(|tags| {
        tags.iter()
            .any(|t| t["system"] == TAG_SYSTEM && t["code"] == "nonconformant")
    })
}

/// Issues of the Bundle's OperationOutcomes that name a conformance problem.
fn conformance_issues(bundle: &Value) -> Vec<Value> {
    outcome_issues(bundle)
        .into_iter()
        .filter(|i| {
            i["diagnostics"]
                .as_str()
                .is_some_and(|d| d.contains("does not conform to its profile"))
        })
        .collect()
}

#[tokio::test]
async fn flag_discloses_the_resource_tagged_and_names_the_element_and_rule() {
    let (app, id, _up) = world("flag").await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK);
    let found = matches(&all.body);
    let bad = resource(&found, "Observation/gp.o9").expect("disclosed");
    assert!(tagged(bad), "{bad}");
    let good = resource(&found, "Observation/gp.o1").expect("disclosed");
    assert!(!tagged(good), "a conforming resource is not tagged: {good}");
    let issues = conformance_issues(&all.body);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0]["severity"], "warning");
    assert_eq!(issues[0]["expression"], json!(["Observation.status"]));
    let text = issues[0]["diagnostics"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Observation/gp.o9 does not conform to its profile: Observation.status: [binding] `done` is not one of"),
        "{text}"
    );
    // A read of it carries the tag too.
    let read = app.get("Observation/gp.o9").await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(tagged(&read.body), "{}", read.body);
    // The page without it has no conformance notice.
    let page = app
        .get(&format!("Observation?patient={id}&code=271649006"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(conformance_issues(&page.body).is_empty());
}

#[tokio::test]
async fn drop_withholds_the_resource_and_counts_it() {
    let (app, id, _up) = world("drop").await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK);
    let found = matches(&all.body);
    assert!(resource(&found, "Observation/gp.o9").is_none());
    assert!(resource(&found, "Observation/gp.o1").is_some());
    let text = all.body.to_string();
    assert!(
        text.contains("returned 1 record(s) that are not about this person, are not valid FHIR, or do not conform to their profiles"),
        "{text}"
    );
    assert!(conformance_issues(&all.body).is_empty());
    assert_eq!(
        app.get("Observation/gp.o9").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn off_passes_the_resource_on_unchecked_and_metadata_lists_the_profiles() {
    let (app, id, _up) = world("off").await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    let found = matches(&all.body);
    let bad = resource(&found, "Observation/gp.o9").expect("disclosed");
    assert!(!tagged(bad));
    assert!(conformance_issues(&all.body).is_empty());

    let metadata = app.get("metadata").await;
    let types = metadata.body["rest"][0]["resource"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let patient = types
        .iter()
        .find(|t| t["type"] == "Patient")
        .expect("Patient");
    assert_eq!(
        patient["supportedProfile"],
        json!(["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"])
    );
    let observation = types
        .iter()
        .find(|t| t["type"] == "Observation")
        .expect("Observation");
    assert!(observation["supportedProfile"].is_array());
}

async fn source_check(app: &TestApp, source: &str) -> (bool, String, String) {
    app.concord(&["source", "check", "--sample", "50", "--source", source])
        .await
}

#[tokio::test]
async fn source_check_reports_how_well_a_fhir_source_conforms() {
    let (app, _id, _up) = world("flag").await;
    let (ok, out, err) = source_check(&app, "gp").await;
    assert!(!ok, "one Observation does not conform: {out}");
    assert!(
        out.starts_with(
            "source gp (Riverside Medical Practice, A81001): up to 50 resource(s) per type"
        ),
        "{out}"
    );
    assert!(out.contains("| Observation | 4 | 3 | 75.0% |"), "{out}");
    assert!(out.contains("| Patient | 2 | 2 | 100.0% |"), "{out}");
    assert!(out.contains("1 × Observation.status [binding]"), "{out}");
    assert!(
        err.contains("1 of 9 sampled resource(s) do not conform"),
        "{err}"
    );

    let (ok, out, err) = source_check(&app, "social").await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("| all | 2 | 2 | 100.0% |"), "{out}");

    let (ok, _, err) = source_check(&app, "elsewhere").await;
    assert!(!ok);
    assert!(
        err.contains("no source `elsewhere` in the config (sources: gp, community, social)"),
        "{err}"
    );
}
