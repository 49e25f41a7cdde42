//! The audit log over HTTP: one record per request, written before the answer; no record, no
//! disclosure; the chain verifies after concurrent requests.

use reqwest::StatusCode;
use serde_json::Value;

use concord::audit::{AuditKey, Body};
use concord::store::Store;

use crate::read_path::{specs, three_sources};
use crate::support::app::{AUDIT_KEY, TestApp, matches};
use crate::support::data::ANN;

async fn store(app: &TestApp) -> Store {
    let url = format!("sqlite://{}", app.dir().join("data/concord.db").display());
    Store::connect(&url, 1).await.expect("the gateway's store")
}

pub(crate) async fn bodies(app: &TestApp) -> Vec<Body> {
    use futures_util::TryStreamExt;
    let store = store(app).await;
    let rows: Vec<concord::audit::Row> = store.audit_rows().try_collect().await.expect("rows");
    rows.iter()
        .map(|r| serde_json::from_str(&r.record.body).expect("a body"))
        .collect()
}

fn key() -> AuditKey {
    AuditKey::new(std::fs::read(AUDIT_KEY).expect("key").trim_ascii()).expect("key")
}

/// The store's chains, verified (the test fails if they do not verify).
async fn verified(app: &TestApp) -> concord::audit::Verified {
    concord::audit::verify(&store(app).await, &key())
        .await
        .expect("readable")
        .expect("the chains verify")
}

/// Runs `concord audit verify` on the gateway's own config: success and what it printed.
async fn verify_cli(app: &TestApp) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["audit", "verify", "--config"])
        .arg(app.dir().join("concord.toml"))
        .output()
        .await
        .expect("run concord");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn exec(app: &TestApp, sql: &str) {
    let Store::Sqlite(pool) = store(app).await else {
        panic!("sqlite")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .expect(sql);
}

#[tokio::test]
async fn every_request_is_recorded_with_who_whose_what_and_why() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK);
    let sent = matches(&all.body).len();
    let refused = app.get_raw(&format!("Patient/{id}"), &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let missing = app.get("Observation/gp.nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let records = bodies(&app).await;
    assert_eq!(records.len(), 4, "one record per request: {records:#?}");
    let everything = records
        .iter()
        .find(|b| b.route == "/fhir/Patient/{id}/$everything")
        .expect("the $everything record");
    assert_eq!(everything.target, format!("/fhir/Patient/{id}/$everything"));
    assert_eq!(everything.person.as_deref(), Some(id.as_str()));
    assert_eq!(everything.user.as_deref(), Some("dr-test"));
    assert_eq!(everything.org.as_deref(), Some("A81001"));
    assert_eq!(everything.caller, "staff");
    assert_eq!(everything.purpose.as_deref(), Some("TREAT"));
    assert_eq!(
        (everything.status, everything.outcome.as_str()),
        (200, "success")
    );
    // The merged Patient stands for each source's Patient: one disclosure per source record.
    assert_eq!(everything.disclosed.len(), sent - 1 + 3, "{everything:#?}");
    assert!(
        everything
            .disclosed
            .iter()
            .all(|d| d.agreement == "test-read-path" && d.rule == "everything")
    );
    assert!(
        everything
            .disclosed
            .iter()
            .any(|d| d.reference == "Observation/gp.o1")
    );
    let sources: Vec<(&str, &str)> = everything
        .sources
        .iter()
        .map(|s| (s.source.as_str(), s.outcome.as_str()))
        .collect();
    assert_eq!(
        sources,
        [("community", "ok"), ("gp", "ok"), ("social", "ok")]
    );
    assert_eq!(everything.policy_hash.len(), 64);
    assert!(
        everything
            .client_address
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert!(!everything.request_id.is_empty());

    let unauthenticated = records.iter().find(|b| b.status == 401).expect("the 401");
    assert_eq!(unauthenticated.caller, "unauthenticated");
    assert_eq!(unauthenticated.outcome, "refused");
    assert!(unauthenticated.disclosed.is_empty());
    assert!(
        records
            .iter()
            .any(|b| b.status == 404 && b.disclosed.is_empty())
    );

    let verified = verified(&app).await;
    assert_eq!(verified.records, 4);
    // The command an IG lead runs says the same.
    let (ok, text) = verify_cli(&app).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("verified: 4 record(s) in 1 chain(s)"),
        "{text}"
    );
    // And it names the record someone edited.
    exec(&app, "UPDATE audit_records SET body = replace(body, '\"status\":404', '\"status\":200') WHERE seq = 3").await;
    let (ok, text) = verify_cli(&app).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("at position 3: its content was modified"),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_is_disclosed_when_the_record_cannot_be_written() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    exec(
        &app,
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(FAIL, 'audit store unwritable'); END",
    )
    .await;
    let a = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.body["resourceType"], "OperationOutcome");
    let text = a.body.to_string();
    assert!(
        !text.contains("Smith") && !text.contains(ANN),
        "nothing of the record: {text}"
    );
    let (status, ready) = app.get_root("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let ready: Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(ready["audit"]["ok"], false);

    exec(&app, "DROP TRIGGER refuse").await;
    let a = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(app.get_root("/readyz").await.0, StatusCode::OK);
    let verified = verified(&app).await;
    assert_eq!(
        verified.records, 2,
        "the refused request left no record and no gap"
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_one_record_and_the_chain_holds() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    let paths: Vec<String> = (0..40)
        .map(|i| format!("Patient/{id}/$everything?_count={}", i + 1))
        .collect();
    let answers = futures_util::future::join_all(paths.iter().map(|p| app.get(p))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    let records = bodies(&app).await;
    assert_eq!(records.len(), 41);
    for path in &paths {
        let n = records
            .iter()
            .filter(|b| b.target == format!("/fhir/{path}"))
            .count();
        assert_eq!(n, 1, "{path}");
    }
    let verified = verified(&app).await;
    assert_eq!(verified.records, 41);
}
