//! Operational endpoints and the CapabilityStatement.

use reqwest::StatusCode;

use crate::read_path::{specs, three_sources};
use crate::support::app::TestApp;
use crate::support::data::ANN;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    assert_eq!(app.get_root("/healthz").await.0, StatusCode::OK);
    let (status, body) = app.get_root("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["backend"], "sqlite");
    assert_eq!(ready["sources"].as_array().map(Vec::len), Some(3));
    assert_eq!(ready["sources"][0]["breaker"], "closed");

    let id = app.patient_id(ANN).await;
    app.get(&format!("Patient/{id}/$everything")).await;
    let (status, metrics) = app.get_root("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "concord_http_requests_total{route=\"/fhir/Patient/{id}/$everything\",method=\"GET\",status=\"200\"} 1",
        "concord_http_request_duration_seconds_bucket",
        "concord_source_calls_total{source=\"gp\",operation=\"find_patient\",result=\"ok\"}",
        "concord_source_call_duration_seconds_count{source=\"social\"}",
        "concord_source_breaker_state{source=\"community\"} 0",
    ] {
        assert!(metrics.contains(name), "missing `{name}` in\n{metrics}");
    }
    assert!(!metrics.contains(ANN), "no NHS numbers in metrics");
    assert!(!metrics.contains(&id), "no patient ids in metrics");
}

#[tokio::test]
async fn capability_statement_lists_what_works() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let cap = app.get("metadata").await;
    assert_eq!(cap.status, StatusCode::OK);
    assert_eq!(cap.body["resourceType"], "CapabilityStatement");
    assert_eq!(cap.body["fhirVersion"], "4.0.1");
    let resources = cap.body["rest"][0]["resource"]
        .as_array()
        .expect("resources");
    let obs = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .expect("Observation");
    let params: Vec<&str> = obs["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in [
        "patient",
        "subject",
        "date",
        "code",
        "category",
        "status",
        "_lastUpdated",
    ] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    let condition = resources
        .iter()
        .find(|r| r["type"] == "Condition")
        .expect("Condition");
    let cparams: Vec<&str> = condition["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        !cparams.contains(&"date"),
        "Condition has no `date` in FHIR R4, and none here"
    );
    // Every advertised type really answers a search.
    let id = app.patient_id(ANN).await;
    for r in resources {
        let t = r["type"].as_str().expect("type");
        let path = if t == "Patient" {
            format!("Patient/{id}")
        } else {
            format!("{t}?patient={id}")
        };
        let a = app.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{t}: {}", a.body);
    }
}

#[tokio::test]
async fn metrics_can_be_put_behind_a_token() {
    let (gp, community, social) = three_sources().await;
    let app = crate::support::app::TestApp::start_with(
        specs(&gp, &community, &social),
        crate::support::app::StoreChoice::Sqlite,
        "metrics_require_token = true",
    )
    .await;
    let (status, body) = app.get_root("/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let with_token = app
        .client
        .get(format!("{}/metrics", app.origin))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(with_token.status(), StatusCode::OK);
    assert!(
        with_token
            .text()
            .await
            .expect("body")
            .contains("concord_http_requests_total")
    );
    // Health and readiness stay open for load balancers.
    assert_eq!(app.get_root("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get_root("/readyz").await.0, StatusCode::OK);
}

/// `concord policy check`: the shipped agreements pass; a broken one fails, naming file,
/// line and field, with a non-zero exit.
#[test]
fn policy_check_reports_errors_with_file_line_and_field() {
    let run = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(["policy", "check"])
            .arg(dir)
            .output()
            .expect("run concord")
    };
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let ok = run(&shipped);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains("5 agreement(s)"), "{out}");

    let dir = tempfile::tempdir().expect("dir");
    let text = std::fs::read_to_string(shipped.join("dsa-northshire-direct-care.toml"))
        .expect("read")
        .replace("\"RY4\"]\nrecipients", "\"RY-4\"]\nrecipients");
    std::fs::write(dir.path().join("dsa.toml"), text).expect("write");
    let bad = run(dir.path());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{out}");
    assert!(
        out.contains("dsa.toml:18: parties.disclosers[1]: `RY-4` is not an ODS code"),
        "{out}"
    );
}
