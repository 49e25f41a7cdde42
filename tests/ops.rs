//! Operational endpoints and the CapabilityStatement.

use reqwest::StatusCode;

use crate::read_path::{specs, three_sources};
use crate::support::app::{TestApp, metric_sample};
use crate::support::data::ANN;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    assert_eq!(app.get_root("/healthz").await.0, StatusCode::OK);
    // The open endpoint says ready or not, and nothing else.
    let (status, body) = app.get_root("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ready"}"#);
    // The detail is for operators: no token is 401, a token without the scope 403.
    assert_eq!(
        app.get_root("/readyz/detail").await.0,
        StatusCode::UNAUTHORIZED
    );
    let plain = app
        .client
        .get(format!("{}/readyz/detail", app.origin))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(plain.status(), StatusCode::FORBIDDEN);
    let (status, body) = app.readiness().await;
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

    // Every record the log holds was counted in a commit, each commit once, with its time.
    app.state.audit.settle().await;
    let kept = app
        .state
        .door
        .federation()
        .store()
        .audit_count(None, None)
        .await
        .expect("the log counts");
    assert!(kept >= 2, "the search and `$everything` were recorded");
    let sample = |name: &str| -> f64 {
        metric_sample(&metrics, name).unwrap_or_else(|| panic!("missing `{name}` in\n{metrics}"))
    };
    assert_eq!(sample("concord_audit_commit_records_sum"), kept as f64);
    let commits = sample("concord_audit_commit_records_count");
    assert!(
        commits >= 1.0 && commits <= kept as f64,
        "{commits} commits"
    );
    assert_eq!(
        sample("concord_audit_commit_duration_seconds_count"),
        commits
    );
    assert!(sample("concord_audit_commit_duration_seconds_sum") > 0.0);
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
    // Every advertised type really answers a search (the audit log, an IG lead's).
    let id = app.patient_id(ANN).await;
    let ig_lead = format!(
        "Bearer {}",
        app.token_with(&[("role", serde_json::json!("ig-lead"))])
    );
    for r in resources {
        let t = r["type"].as_str().expect("type");
        let path = if t == "Patient" {
            format!("Patient/{id}")
        } else {
            format!("{t}?patient={id}")
        };
        let a = if t == "AuditEvent" {
            app.get_raw(&path, &[("Authorization", ig_lead.as_str())])
                .await
        } else {
            app.get(&path).await
        };
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
    assert!(out.contains("6 agreement(s)"), "{out}");

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

/// Writes a config for the real binary: no sources, the demo key, and `policies`.
pub(crate) fn binary_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/keys");
    let social = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/socialcare");
    let audit_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-audit.key"
    );
    let profiles = concat!(env!("CARGO_MANIFEST_DIR"), "/fhir-profiles");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"sqlite://concord.db\"\n\n\
         [policy]\ndir = \"policies\"\nreload_check_secs = 0\n\n[profiles]\ndir = \"{profiles}\"\n\n\
         [audit]\nkey_file = \"{audit_key}\"\n\n[auth]\nissuer = \"https://concord.demo.invalid\"\naudience = \"concord\"\ndev_signing_key = \"{keys}/demo-signing-key.pem\"\n\n\
         [[auth.key]]\nkid = \"concord-demo\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{keys}/demo-signing-key.pub.pem\"\n\n\
         [[source]]\nid = \"socialcare\"\nname = \"Social care\"\nods = \"LA001\"\nkind = \"ndjson\"\npath = \"{social}\"\n"
    );
    let path = dir.join("concord.toml");
    std::fs::write(&path, config).expect("config");
    path
}

pub(crate) fn copy_shipped_policies(to: &std::path::Path) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(to).expect("policy dir");
    for entry in std::fs::read_dir(shipped).expect("policies/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// Starts `concord serve --config {config}`, its output discarded, killed when dropped.
pub(crate) fn serve(config: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("concord starts")
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// `concord serve` refuses to start on a policy set with an error, saying where.
#[tokio::test]
async fn serve_refuses_an_invalid_policy_set() {
    let dir = tempfile::tempdir().expect("dir");
    let config = binary_config(dir.path(), free_port());
    copy_shipped_policies(&dir.path().join("policies"));
    let file = dir.path().join("policies/patient-access.toml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replace("\"PATRQT\"", "\"PATIENT\"")).expect("break");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(["serve", "--config"])
            .arg(&config)
            .output(),
    )
    .await
    .expect("serve stops by itself")
    .expect("run concord");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("patient-access.toml:")
            && stderr.contains("`PATIENT` is not an HL7 v3 PurposeOfUse code"),
        "{stderr}"
    );
}

/// `SIGHUP` reloads the set; a broken set is reported and the last good one stays.
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_policy_set() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = binary_config(dir.path(), port);
    let policies = dir.path().join("policies");
    copy_shipped_policies(&policies);
    let mut child = serve(&config);
    let client = reqwest::Client::new();
    let operator = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args([
            "dev-token",
            "--scope",
            "user/*.rs concord.operator",
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("dev-token");
    let operator = String::from_utf8_lossy(&operator.stdout).trim().to_owned();
    let readyz = || async {
        let r = client
            .get(format!("http://127.0.0.1:{port}/readyz/detail"))
            .bearer_auth(&operator)
            .send()
            .await
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&r.bytes().await.ok()?).ok()
    };
    let mut first = None;
    for _ in 0..200 {
        if let Some(r) = readyz().await {
            first = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = first.expect("the gateway came up");
    let pid = child.id().expect("pid").to_string();
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let wait_for = |check: fn(&serde_json::Value, &serde_json::Value) -> bool| {
        let first = first.clone();
        async move {
            for _ in 0..100 {
                if let Some(r) = readyz().await
                    && check(&r, &first)
                {
                    return r;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("no reload seen");
        }
    };

    // Files change, but without a check interval nothing happens until SIGHUP.
    std::fs::remove_file(policies.join("dsa-northshire-social-care-records.toml")).expect("rm");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let same = readyz().await.expect("ready");
    assert_eq!(same["policy"]["hash"], first["policy"]["hash"]);
    hangup();
    let reloaded = wait_for(|r, first| r["policy"]["hash"] != first["policy"]["hash"]).await;
    assert_eq!(reloaded["policy"]["agreements"], 5);

    std::fs::write(policies.join("broken.toml"), "[agreement]\nid = \"x\"\n").expect("write");
    hangup();
    let failed = wait_for(|r, _| !r["policy"]["reload_error"].is_null()).await;
    assert!(
        failed["policy"]["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("broken.toml")),
        "{failed}"
    );
    assert_eq!(
        failed["policy"]["hash"], reloaded["policy"]["hash"],
        "the last good set stays"
    );
    assert_eq!(failed["status"], "ready");
    child.kill().await.expect("stop");
}
