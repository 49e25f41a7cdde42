//! The audit log over HTTP: one record per request, written before the answer; no record, no
//! disclosure; the chain verifies after concurrent requests.

use reqwest::StatusCode;
use serde_json::Value;

use concord::audit::{AuditKey, Body};
use concord::store::Store;

use crate::read_path::{specs, three_sources};
use crate::support::app::{AUDIT_KEY, StoreChoice, Target, TestApp, matches};
use crate::support::data::ANN;

async fn store(app: &TestApp) -> Store {
    let url = format!("sqlite://{}", app.dir().join("data/concord.db").display());
    Store::connect(&url, 1).await.expect("the gateway's store")
}

pub(crate) async fn bodies(app: &TestApp) -> Vec<Body> {
    bodies_in(&store(app).await).await
}

/// Every record's body in a store, chain by chain in order.
async fn bodies_in(store: &Store) -> Vec<Body> {
    use futures_util::TryStreamExt;
    let rows: Vec<concord::audit::Record> = store.audit_rows().try_collect().await.expect("rows");
    rows.iter()
        .map(|r| serde_json::from_str(&r.body).expect("a body"))
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
    let (ok, out, _) = app.concord(&["audit", "verify"]).await;
    (ok, out)
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
            .all(|d| &*d.agreement == "test-read-path" && &*d.rule == "everything")
    );
    assert!(
        everything
            .disclosed
            .iter()
            .any(|d| &*d.reference == "Observation/gp.o1")
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
    // Refused before anything was resolved, it is still about the person the URL names.
    assert_eq!(unauthenticated.person.as_deref(), Some(id.as_str()));
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

const REFUSE: &str = "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(FAIL, 'audit store unwritable'); END";

fn spool_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(app.dir().join("data/audit-spool"))
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let (status, text) = app.readiness().await;
    (status, serde_json::from_str(&text).expect("json"))
}

#[tokio::test]
async fn nothing_is_disclosed_when_neither_the_store_nor_the_spool_takes_the_record() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    // The spool cannot be made (a file is in its way), and the store refuses.
    std::fs::write(app.dir().join("data/audit-spool"), b"in the way").expect("file");
    exec(&app, REFUSE).await;
    let a = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.body["resourceType"], "OperationOutcome");
    let text = a.body.to_string();
    assert!(
        !text.contains("Smith") && !text.contains(ANN),
        "nothing of the record: {text}"
    );
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["audit"]["ok"], false);

    // Repaired: readiness comes back by itself, before any request proves it (a load
    // balancer sends none to an unready instance).
    exec(&app, "DROP TRIGGER refuse").await;
    assert_eq!(app.get_root("/readyz").await.0, StatusCode::OK);
    let a = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(a.status, StatusCode::OK);
    let verified = verified(&app).await;
    assert_eq!(
        verified.records, 2,
        "the refused request left no record and no gap"
    );
}

#[tokio::test]
async fn requests_go_on_through_the_spool_while_the_store_refuses() {
    let (gp, community, social) = three_sources().await;
    // Twelve `$everything`s at once, each asking three sources per type: on a loaded machine
    // the test defaults (1 s per source, 1.5 s per request) would turn some answers partial,
    // which is not what this test is about.
    let mut sources = specs(&gp, &community, &social);
    for source in &mut sources {
        if let Target::Fhir { extra, .. } = &mut source.target {
            extra.push_str("timeout_ms = 15000\n");
        }
    }
    let app = TestApp::start_with(sources, StoreChoice::Sqlite, "request_timeout_ms = 20000").await;
    let id = app.patient_id(ANN).await;
    exec(&app, REFUSE).await;
    let paths: Vec<String> = (0..12)
        .map(|i| format!("Patient/{id}/$everything?_count={}", i + 1))
        .collect();
    let answers = futures_util::future::join_all(paths.iter().map(|p| app.get(p))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(!matches(&a.body).is_empty(), "the record is disclosed");
    }
    assert_eq!(bodies(&app).await.len(), 1, "the store has none of them");
    assert_eq!(spool_files(&app).len(), 1);
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, StatusCode::OK, "spooling is not an outage: {ready}");
    assert_eq!(ready["audit"]["spooled"], 12, "{ready}");

    exec(&app, "DROP TRIGGER refuse").await;
    let last = app.get(&format!("Patient/{id}")).await;
    assert_eq!(last.status, StatusCode::OK);
    let records = bodies(&app).await;
    assert_eq!(records.len(), 14, "every spooled record is in the store");
    for path in &paths {
        let n = records
            .iter()
            .filter(|b| b.target == format!("/fhir/{path}"))
            .count();
        assert_eq!(n, 1, "exactly once: {path}");
    }
    assert_eq!(verified(&app).await.records, 14);
    assert!(spool_files(&app).is_empty(), "the spool is gone");
    assert_eq!(readyz(&app).await.1["audit"]["spooled"], 0);
}

#[tokio::test]
async fn a_dropped_postgres_connection_mid_append_loses_no_record() {
    use crate::support::app::postgres;
    let Some(db) = postgres().await else {
        return;
    };
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start_with(
        specs(&gp, &community, &social),
        StoreChoice::Postgres(db.url().to_owned()),
        "",
    )
    .await;
    let id = app.patient_id(ANN).await;
    let admin = sqlx::PgPool::connect(db.url()).await.expect("admin");
    for sql in [
        "CREATE FUNCTION slow_audit() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER slow_audit BEFORE INSERT ON audit_records FOR EACH STATEMENT EXECUTE FUNCTION slow_audit()",
    ] {
        sqlx::query(sql).execute(&admin).await.expect(sql);
    }
    let path = format!("Patient/{id}/$everything");
    let request = app.get(&path);
    let cut = async {
        // Catch the audit INSERT in flight and drop its connection.
        for _ in 0..200 {
            let pid: Option<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND query LIKE 'INSERT INTO audit_records%'",
            )
            .fetch_optional(&admin)
            .await
            .expect("activity");
            if let Some(pid) = pid {
                sqlx::query("DROP TRIGGER slow_audit ON audit_records")
                    .execute(&admin)
                    .await
                    .expect("drop trigger");
                let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&admin)
                    .await
                    .expect("terminate");
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        false
    };
    let (answer, cut) = tokio::join!(request, cut);
    assert!(cut, "the audit insert was seen and its connection dropped");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(!matches(&answer.body).is_empty());

    let after = app.get(&format!("Patient/{id}")).await;
    assert_eq!(after.status, StatusCode::OK);
    let store = Store::connect(db.url(), 1).await.expect("store");
    let targets: Vec<String> = bodies_in(&store)
        .await
        .into_iter()
        .map(|b| b.target)
        .collect();
    assert_eq!(
        targets
            .iter()
            .filter(|t| **t == format!("/fhir/{path}"))
            .count(),
        1,
        "{targets:?}"
    );
    assert_eq!(targets.len(), 3, "{targets:?}");
    let verified = concord::audit::verify(&store, &key())
        .await
        .expect("readable")
        .expect("verifies");
    assert_eq!(verified.records, 3);
    assert!(spool_files(&app).is_empty());
    drop(admin);
    db.drop().await;
}

/// `concord serve` is killed while it spools; the next start moves every spooled record into
/// the store.
#[cfg(unix)]
#[tokio::test]
async fn a_gateway_killed_while_it_spools_loses_nothing() {
    use crate::ops::{binary_config, copy_shipped_policies, free_port, serve};
    let dir = tempfile::tempdir().expect("dir");
    copy_shipped_policies(&dir.path().join("policies"));
    let bin = env!("CARGO_BIN_EXE_concord");
    let start = |port: u16| {
        let config = binary_config(dir.path(), port);
        (serve(&config), config)
    };
    let client = reqwest::Client::new();
    let port = free_port();
    let (mut child, config) = start(port);
    ready(&client, port).await;
    let token = dev_token(&config).await;
    let search = |port: u16, n: usize| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            client
                .get(format!(
                    "http://127.0.0.1:{port}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990465630&_count={n}"
                ))
                .bearer_auth(token)
                .send()
                .await
                .expect("answer")
                .status()
        }
    };
    assert_eq!(search(port, 1).await, StatusCode::OK);
    let db = format!("sqlite://{}", dir.path().join("concord.db").display());
    let store = Store::connect(&db, 1).await.expect("store");
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    sqlx::query(REFUSE).execute(pool).await.expect("trigger");
    for n in 2..=6 {
        assert_eq!(
            search(port, n).await,
            StatusCode::OK,
            "answered through the spool"
        );
    }
    let spool = dir.path().join("data/audit-spool");
    let files: Vec<_> = std::fs::read_dir(&spool).expect("spool").collect();
    assert_eq!(files.len(), 1);
    child.start_kill().expect("kill -9");
    child.wait().await.expect("dead");
    sqlx::query("DROP TRIGGER refuse")
        .execute(pool)
        .await
        .expect("drop");

    let port = free_port();
    let (mut child, _) = start(port);
    ready(&client, port).await;
    for _ in 0..200 {
        if std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_dir(&spool).expect("spool").count(),
        0,
        "replayed"
    );
    let targets: Vec<String> = bodies_in(&store)
        .await
        .into_iter()
        .map(|b| b.target)
        .collect();
    for n in 1..=6 {
        let wanted = format!("_count={n}");
        assert_eq!(
            targets.iter().filter(|t| t.ends_with(&wanted)).count(),
            1,
            "{wanted}: {targets:?}"
        );
    }
    let out = tokio::process::Command::new(bin)
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("concord.toml"))
        .output()
        .await
        .expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("verified: 6 record(s) in 1 chain(s)"),
        "{text}"
    );
    child.kill().await.expect("stop");
}

/// The gateway's `/readyz` answer once it is up (the test fails if it does not come up).
async fn ready(client: &reqwest::Client, port: u16) -> Value {
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            return serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).expect("json");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the gateway did not come up");
}

/// A demo social worker's token from `concord dev-token` (of the council, LA001).
pub(crate) async fn dev_token(config: &std::path::Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args([
            "dev-token",
            "--role",
            "social-worker",
            "--org",
            "LA001",
            "--config",
        ])
        .arg(config)
        .output()
        .await
        .expect("dev-token");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The durability promise: a record is committed before the first byte of its answer leaves.
/// Sixteen clients keep the gateway busy; the moment one of them has a 200's head, the
/// gateway is killed with SIGKILL. Every request any client saw answered 200 has its record
/// in the store (found by the request id the answer carried), the chain verifies, and the
/// next gateway projects them all for search.
#[tokio::test]
async fn a_gateway_killed_right_after_a_200_has_already_recorded_it() {
    use crate::ops::{binary_config, copy_shipped_policies, free_port, serve};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().expect("dir");
    copy_shipped_policies(&dir.path().join("policies"));
    let port = free_port();
    let config = binary_config(dir.path(), port);
    let child = Arc::new(Mutex::new(serve(&config)));
    let client = reqwest::Client::new();
    ready(&client, port).await;
    let token = dev_token(&config).await;
    let url = format!(
        "http://127.0.0.1:{port}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990465630"
    );
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (client, token, url) = (client.clone(), token.clone(), url.clone());
            let (answered, child) = (answered.clone(), child.clone());
            tokio::spawn(async move {
                // Until the gateway is gone: each 200's request id, then the kill.
                while let Ok(r) = client.get(&url).bearer_auth(&token).send().await {
                    if r.status() != StatusCode::OK {
                        continue;
                    }
                    let id = r
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok());
                    let id = id.expect("every answer carries its request id").to_owned();
                    answered.lock().expect("ids").push(id);
                    let _ = child.lock().expect("child").start_kill();
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let mut child = Arc::try_unwrap(child)
        .expect("the clients are done")
        .into_inner()
        .expect("child");
    child.wait().await.expect("killed");
    let answered = answered.lock().expect("ids").clone();
    assert!(!answered.is_empty(), "at least one 200 before the kill");

    let db = format!("sqlite://{}", dir.path().join("concord.db").display());
    let store = Store::connect(&db, 1).await.expect("store");
    let recorded: std::collections::HashSet<String> = bodies_in(&store)
        .await
        .into_iter()
        .map(|b| b.request_id)
        .collect();
    for id in &answered {
        assert!(
            recorded.contains(id),
            "request {id} was answered 200 but not recorded"
        );
    }
    assert!(
        concord::audit::verify(&store, &key())
            .await
            .expect("readable")
            .is_ok(),
        "the chain verifies after the kill"
    );
    // Whatever the killed gateway had not projected for search, the next one does.
    let port = free_port();
    let mut next = serve(&binary_config(dir.path(), port));
    ready(&client, port).await;
    let mut projected = 0;
    for _ in 0..100 {
        projected = store.audit_count(None, None).await.expect("count");
        if usize::try_from(projected).ok() >= Some(recorded.len()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        usize::try_from(projected).ok() >= Some(recorded.len()),
        "{projected} of {} records searchable",
        recorded.len()
    );
    next.start_kill().expect("kill");
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
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
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

#[tokio::test]
async fn audit_verify_names_a_tail_cut_off_after_its_head_was_signed() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    for _ in 0..3 {
        assert_eq!(
            app.get(&format!("Patient/{id}")).await.status,
            StatusCode::OK
        );
    }
    // The test config signs the head every second (waited for up to 20 s).
    let mut signed = Value::Null;
    for _ in 0..200 {
        signed = readyz(&app).await.1["audit"]["signed_head"].clone();
        if signed == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(signed, 3, "the head was signed");
    let (ok, text) = verify_cli(&app).await;
    assert!(ok, "{text}");
    assert!(text.contains("4 record(s) in 1 chain(s)"), "{text}");

    // Someone with write access to the database removes the last two records and every
    // signed head it keeps: the witness file still has the head.
    exec(&app, "DELETE FROM audit_records WHERE seq >= 2").await;
    exec(&app, "DELETE FROM audit_heads").await;
    let (ok, text) = verify_cli(&app).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains("at position 2: missing: the chain ends at position 1")
            && text.contains("vouches for position 3"),
        "{text}"
    );
}

async fn export_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    app.concord(&[&["audit", "export"], args].concat()).await
}

#[tokio::test]
async fn audit_export_streams_records_as_ndjson_and_csv() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let id = app.patient_id(ANN).await;
    assert_eq!(
        app.get(&format!("Patient/{id}/$everything")).await.status,
        StatusCode::OK
    );
    let reason = "=cmd|' /C calc'!A0, \"fall\"\nin clinic";
    let reason_header = reason.replace('\n', " ");
    let refused = app
        .get_with(
            &format!("Patient/{id}"),
            &[("X-Break-Glass-Reason", reason_header.as_str())],
        )
        .await;
    assert_ne!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);

    let (ok, ndjson, stderr) = export_cli(&app, &[]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("exported 3 audit record(s)"), "{stderr}");
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[1]["record"]["route"],
        "/fhir/Patient/{id}/$everything"
    );
    assert_eq!(lines[1]["seq"], 1);
    assert_eq!(lines[1]["hash"].as_str().map(str::len), Some(64));
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["recorded"].as_str() <= w[1]["recorded"].as_str()),
        "oldest first"
    );

    let (ok, csv, stderr) = export_cli(&app, &["--format", "csv"]).await;
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 4, "a header and three records: {csv}");
    assert!(rows[0].starts_with("recorded,chain,seq,outcome,status"));
    // The reason is one cell, quoted, and cannot run as a formula.
    let quoted = format!("\"'{}\"", reason_header.replace('"', "\"\""));
    assert!(rows[3].contains(&quoted), "{}", rows[3]);

    // A span: nothing before the first record, everything from a day before.
    let (ok, none, _) = export_cli(&app, &["--until", "2000-01-01"]).await;
    assert!(ok);
    assert!(none.is_empty());
    let (ok, all, _) = export_cli(&app, &["--since", "2000-01-01T00:00:00Z"]).await;
    assert!(ok);
    assert_eq!(all.lines().count(), 3);
    let (ok, _, stderr) = export_cli(&app, &["--since", "last tuesday"]).await;
    assert!(!ok);
    assert!(stderr.contains("--since `last tuesday`"), "{stderr}");
    let (ok, _, stderr) =
        export_cli(&app, &["--since", "2026-02-01", "--until", "2026-01-01"]).await;
    assert!(!ok);
    assert!(stderr.contains("before --until"), "{stderr}");
}
