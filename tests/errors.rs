//! Bad input gets an OperationOutcome with the right status, and never reaches a source.

use reqwest::StatusCode;

use crate::read_path::{specs, three_sources};
use crate::support::app::{TestApp, outcomes};
use crate::support::data::ANN;

#[tokio::test]
async fn bad_requests_are_operation_outcomes() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let before = gp.request_count();
    let long = "a".repeat(9000);
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000019".into(),
            StatusCode::BAD_REQUEST,
            "check digit",
        ),
        (
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|99900000".into(),
            StatusCode::BAD_REQUEST,
            "10 digits",
        ),
        (
            "Patient?identifier=https://example.org/mrn|123".into(),
            StatusCode::BAD_REQUEST,
            "only NHS numbers",
        ),
        (
            "Patient?identifier=9990000018&identifier=9990000026".into(),
            StatusCode::BAD_REQUEST,
            "two different",
        ),
        (
            "Patient".into(),
            StatusCode::BAD_REQUEST,
            "needs `identifier",
        ),
        (
            "Observation".into(),
            StatusCode::BAD_REQUEST,
            "must name the person",
        ),
        (
            "AllergyIntolerance?subject=Patient/x".into(),
            StatusCode::BAD_REQUEST,
            "must name the person",
        ),
        (
            format!("Observation?patient={id}&date=yesterday"),
            StatusCode::BAD_REQUEST,
            "not a FHIR date",
        ),
        (
            format!("Observation?patient={id}&date=ap2024"),
            StatusCode::BAD_REQUEST,
            "not supported",
        ),
        (
            format!("Observation?patient={id}&_count=lots"),
            StatusCode::BAD_REQUEST,
            "_count",
        ),
        (
            format!("Observation?patient={id}&_sort=code"),
            StatusCode::BAD_REQUEST,
            "cannot sort",
        ),
        (
            format!("Observation?patient={id}&_cursor=garbage!"),
            StatusCode::BAD_REQUEST,
            "not a cursor",
        ),
        (
            format!("Observation?patient={id}&patient=someone-else"),
            StatusCode::BAD_REQUEST,
            "different patient",
        ),
        (
            "Observation?patient=Group/1".into(),
            StatusCode::BAD_REQUEST,
            "must reference a Patient",
        ),
        (
            format!("Observation?patient={id}&_format=xml"),
            StatusCode::NOT_ACCEPTABLE,
            "only JSON",
        ),
        (
            format!("Patient/{id}/$everything?_type=Spaceship"),
            StatusCode::BAD_REQUEST,
            "_type",
        ),
        (
            "Spaceship?patient=x".into(),
            StatusCode::NOT_FOUND,
            "not served",
        ),
        ("Spaceship/1".into(), StatusCode::NOT_FOUND, "not served"),
        (
            "lowercase?patient=x".into(),
            StatusCode::BAD_REQUEST,
            "resource type",
        ),
        (
            "Observation/bad%20id".into(),
            StatusCode::BAD_REQUEST,
            "valid FHIR id",
        ),
        (
            "Observation/gp..".into(),
            StatusCode::NOT_FOUND,
            "is not known",
        ),
        (
            "Observation/gp.o1/_history/1".into(),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            format!("Observation?patient={long}"),
            StatusCode::URI_TOO_LONG,
            "longer than",
        ),
    ];
    for (path, status, needle) in cases {
        let a = app.get(&path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert_eq!(a.body["resourceType"], "OperationOutcome", "{path}");
        assert_eq!(
            a.headers["content-type"], "application/fhir+json; charset=utf-8",
            "{path}"
        );
        let text = a.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains(needle),
            "{path}: `{text}` should mention `{needle}`"
        );
        assert!(
            !text.contains("999000001"),
            "{path}: an NHS number echoed back"
        );
    }
    assert_eq!(
        gp.request_count(),
        before,
        "bad requests never reach a source"
    );
}

#[tokio::test]
async fn unknown_parameters_follow_prefer_handling() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let lenient = app
        .get(&format!("Observation?patient={id}&colour=blue"))
        .await;
    assert_eq!(lenient.status, StatusCode::OK);
    assert!(
        outcomes(&lenient.body)
            .iter()
            .any(|o| o.contains("`colour`"))
    );
    let self_link = lenient.body["link"][0]["url"].as_str().expect("self");
    assert!(
        !self_link.contains("colour"),
        "self link shows only what was used: {self_link}"
    );
    let strict = app
        .get_with(
            &format!("Observation?patient={id}&colour=blue"),
            &[("Prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, StatusCode::BAD_REQUEST);
    assert!(
        strict.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("colour")
    );
    let strict_patient = app
        .get_with(
            &format!("Patient?identifier={ANN}&colour=blue"),
            &[("Prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict_patient.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn headers_methods_and_bodies() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;

    let xml = app
        .get_with("metadata", &[("Accept", "application/fhir+xml")])
        .await;
    assert_eq!(xml.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(xml.body["resourceType"], "OperationOutcome");
    let any = app
        .get_with("metadata", &[("Accept", "text/html, */*;q=0.1")])
        .await;
    assert_eq!(any.status, StatusCode::OK);

    let echoed = app
        .get_with("metadata", &[("X-Request-Id", "abc-123")])
        .await;
    assert_eq!(echoed.headers["x-request-id"], "abc-123");
    let generated = app.get("metadata").await;
    let rid = generated.headers["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(rid).is_ok(), "{rid}");
    let bad = app
        .get_with("metadata", &[("X-Request-Id", &"x".repeat(300))])
        .await;
    assert_ne!(
        bad.headers["x-request-id"],
        "x".repeat(300).as_str(),
        "an oversized id is replaced"
    );

    let post = app
        .client
        .post(format!("{}/Patient", app.base))
        .bearer_auth(&app.token)
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value =
        serde_json::from_slice(&post.bytes().await.expect("body")).expect("json");
    assert_eq!(body["resourceType"], "OperationOutcome");

    let big = app
        .client
        .post(format!("{}/Patient", app.base))
        .bearer_auth(&app.token)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("answers");
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let unknown = app.get_root("/nothing-here").await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert!(unknown.1.contains("OperationOutcome"));
}
