//! Issue 18, hazard H-016: writes left without an outcome are listed and settled
//! by reading their source (`concord audit writes --unsettled [--settle --by NAME]`).
//!
//! A gateway that stops between sending a write and recording its outcome leaves an intent
//! with nothing after it. The tests make such intents as the gateway does (the door decides
//! the write, the intent is appended to the gateway's own chain, the door sends it or not),
//! and never record the outcome: the gateway "died" there.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{Visitor, console_toml, sign_in};
use crate::support::app::{Policies, SourceSpec, StoreChoice, TestApp, postgres};
use crate::support::data::{ANN, patient};
use crate::support::oidc::OidcProvider;
use crate::support::upstream::{Mode, Upstream};
use concord::disclose::{Change, PLAN_EXTENSION};

/// The care team writes plans and goals at the GP.
fn policies() -> Policies {
    Policies::Files(vec![(
        "shared-care.toml".into(),
        "[agreement]\nid = \"test-shared-care\"\ntitle = \"Shared care\"\nversion = \"1\"\nstatus = \"active\"\n\
         legal_basis = [\"test\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"tests\"\n\n\
         [parties]\ndisclosers = [\"A81001\"]\nrecipients = [\"A81001\", \"RY4\"]\n\n\
         [[rule]]\nid = \"read\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"nurse\", \"clinician\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"care-team-writes\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"nurse\"]\n\
         resources = [\"CarePlan\", \"Goal\"]\ninteractions = [\"create\", \"update\"]\n"
            .into(),
    )])
}

fn nurse(app: &TestApp) -> String {
    app.token_with(&[
        ("org", json!("RY4")),
        ("role", json!("nurse")),
        ("sub", json!("nurse-1")),
        ("scope", json!("user/*.rs user/CarePlan.cu user/Goal.cu")),
    ])
}

fn goal(person: &str, text: &str) -> Value {
    json!({
        "resourceType": "Goal", "lifecycleStatus": "active",
        "description": {"text": text},
        "subject": {"reference": format!("Patient/{person}")},
        "extension": [{"url": PLAN_EXTENSION, "valueReference": {"reference": "CarePlan/gp.plan-1"}}]
    })
}

fn plan(person: &str, title: &str) -> Value {
    json!({
        "resourceType": "CarePlan", "id": "gp.plan-1", "status": "active", "intent": "plan",
        "title": title, "subject": {"reference": format!("Patient/{person}")}
    })
}

/// Decides a write through the door and commits its intent to the gateway's chain under
/// `request_id`, as the gateway's write handler does; sends it to the source when `send`.
/// Its outcome is never recorded.
async fn die_after_intent(
    app: &TestApp,
    token: &str,
    request_id: &str,
    write: (&'static str, Change<'_>, Value),
    send: bool,
) {
    die_after_intent_at(app, token, request_id, write, send, 0).await;
}

/// [`die_after_intent`], the intent made `ago_secs` seconds ago (the gateway died then).
async fn die_after_intent_at(
    app: &TestApp,
    token: &str,
    request_id: &str,
    (resource_type, change, body): (&'static str, Change<'_>, Value),
    send: bool,
    ago_secs: i64,
) {
    let state = &app.state;
    let principal = state.verifier.verify(token).expect("a valid token");
    let prepared = state
        .door
        .prepare_write(&principal, resource_type, change, body)
        .await
        .expect("the door permits the write");
    let facts = prepared.intent();
    let (method, route, target) = match change {
        Change::Create { .. } => (
            "POST",
            "/fhir/{resource_type}",
            format!("/fhir/{resource_type}"),
        ),
        Change::Update { id, .. } => (
            "PUT",
            "/fhir/{resource_type}/{id}",
            format!("/fhir/{resource_type}/{id}"),
        ),
    };
    let intent = concord::audit::Body {
        recorded_us: jiff::Timestamp::now().as_microsecond() - ago_secs * 1_000_000,
        request_id: request_id.to_owned(),
        user: Some(principal.user.clone()),
        org: principal.org.clone(),
        role: principal.role.clone(),
        caller: "staff".into(),
        method: method.into(),
        route: route.into(),
        target,
        purpose: Some(principal.purpose_of_use.clone()),
        person: facts.person.map(|p| p.to_string()),
        sources: facts.sources,
        policy_hash: facts.policy_hash.expect("the set that decided"),
        outcome: "pending".into(),
        status: 102,
        write: facts.write,
        ..concord::audit::Body::default()
    };
    state.audit.append(&intent).await.expect("intent committed");
    if send {
        state
            .door
            .commit_write(prepared)
            .await
            .expect("the source takes the write");
    }
}

/// The listed lines of `audit writes`: (request id, what the source shows).
fn listed(out: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = out
        .lines()
        .filter_map(|line| {
            let mut parts = line.split("  ");
            let _when = parts.next()?;
            let request = parts.next()?.to_owned();
            let finding = parts.nth(3)?.split(':').next()?.to_owned();
            request.starts_with("req-").then_some((request, finding))
        })
        .collect();
    rows.sort();
    rows
}

/// A GP whose system takes plans and goals, a gateway in front, and five writes left without
/// an outcome beside one that has its outcome: listed with what the GP holds, settled where
/// reading tells, the rest left for a person; the chain still verifies.
async fn writes_left_without_an_outcome_are_settled(store: StoreChoice) {
    let gp = Upstream::start(vec![
        patient("g-ann", ANN, "Able", "01632 960001", "Riverside"),
        json!({
            "resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
            "meta": {"versionId": "1"}, "title": "Diabetes plan",
            "subject": {"reference": "Patient/g-ann"}
        }),
    ])
    .await;
    let app = TestApp::start_audited(
        vec![
            SourceSpec::fhir("gp", "Riverside GP", "A81001", gp.base_url())
                .with("writes = [\"CarePlan\", \"Goal\"]"),
        ],
        store,
        "",
        policies(),
        "region_roles = [\"icb-ig\"]",
        "",
    )
    .await;
    let ann = app.patient_id(ANN).await;
    let token = nurse(&app);

    // A write that ends as it should: its outcome follows its intent.
    let answered = app
        .client
        .post(format!("{}/Goal", app.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .header("X-Request-Id", "req-answered")
        .body(goal(&ann, "Walk to the shop").to_string())
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(answered.status(), StatusCode::CREATED);

    let create = |text: &str| {
        (
            "Goal",
            Change::Create {
                if_none_exist: None,
            },
            goal(&ann, text),
        )
    };
    let update = |read: &'static str, title: &str| {
        (
            "CarePlan",
            Change::Update {
                id: "gp.plan-1",
                if_match: Some(read),
            },
            plan(&ann, title),
        )
    };
    // The GP took it; the gateway died before recording so.
    die_after_intent(
        &app,
        &token,
        "req-a-create-taken",
        create("Check feet daily"),
        true,
    )
    .await;
    // The gateway died before sending it.
    die_after_intent(
        &app,
        &token,
        "req-b-create-lost",
        create("Swim weekly"),
        false,
    )
    .await;
    // Two updates from version 1: the first never sent, the second taken (now version 2).
    die_after_intent(
        &app,
        &token,
        "req-c-update-overtaken",
        update("1", "Plan (lost edit)"),
        false,
    )
    .await;
    die_after_intent(
        &app,
        &token,
        "req-d-update-taken",
        update("1", "Plan, reviewed"),
        true,
    )
    .await;
    // An update from version 2, never sent.
    die_after_intent(
        &app,
        &token,
        "req-e-update-lost",
        update("2", "Plan, second look"),
        false,
    )
    .await;
    assert_eq!(
        gp.resource("CarePlan", "plan-1").expect("plan")["title"],
        "Plan, reviewed"
    );
    // The GP does not answer in time: the outcome says so, and whether the goal is there is
    // not known either.
    gp.set_mode(Mode::Hang);
    let timed_out = app
        .client
        .post(format!("{}/Goal", app.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/fhir+json")
        .header("X-Request-Id", "req-f-create-timed-out")
        .body(goal(&ann, "Garden in spring").to_string())
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);

    // The GP's system is down: every write is listed, none can be settled.
    gp.set_mode(Mode::Status(503));
    let (ok, out, err) = app
        .concord(&[
            "audit",
            "writes",
            "--unsettled",
            "--older-than",
            "0",
            "--settle",
            "--by",
            "ig-lead-1",
        ])
        .await;
    assert!(!ok, "unsettled writes are an error: {out}");
    assert!(err.contains("6 write(s) left unsettled"), "{err}");
    let all = listed(&out);
    assert_eq!(all.len(), 6, "{out}");
    assert!(all.iter().all(|(_, f)| f == "unreachable"), "{out}");
    assert!(!out.contains("settled: recorded"), "{out}");

    // Up again: what reading the GP shows is settled; the overtaken update is left for a
    // person (the plan moved on, and is not what that request sent).
    gp.set_mode(Mode::Normal);
    let (ok, out, err) = app
        .concord(&["audit", "writes", "--unsettled", "--older-than", "0"])
        .await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("settle them with --settle --by NAME"), "{err}");
    let expected = vec![
        ("req-a-create-taken".to_owned(), "present".to_owned()),
        ("req-b-create-lost".to_owned(), "absent".to_owned()),
        ("req-c-update-overtaken".to_owned(), "unclear".to_owned()),
        ("req-d-update-taken".to_owned(), "present".to_owned()),
        ("req-e-update-lost".to_owned(), "absent".to_owned()),
        ("req-f-create-timed-out".to_owned(), "absent".to_owned()),
    ];
    assert_eq!(listed(&out), expected, "{out}");
    assert!(
        !out.contains("Able") && !out.contains(ANN) && !out.contains("Swim"),
        "no personal data: {out}"
    );
    let (ok, out, err) = app
        .concord(&[
            "audit",
            "writes",
            "--unsettled",
            "--older-than",
            "0",
            "--settle",
            "--by",
            "ig-lead-1",
        ])
        .await;
    assert!(!ok, "{out}{err}");
    assert!(err.contains("1 write(s) left unsettled"), "{err}");
    assert_eq!(out.matches("settled: recorded as").count(), 5, "{out}");
    let (_, out, _) = app
        .concord(&["audit", "writes", "--unsettled", "--older-than", "0"])
        .await;
    assert_eq!(
        listed(&out),
        vec![("req-c-update-overtaken".to_owned(), "unclear".to_owned())],
        "{out}"
    );
    // A younger intent may still be on its way: not listed yet.
    let (ok, out, err) = app.concord(&["audit", "writes", "--unsettled"]).await;
    assert!(ok, "{out}{err}");
    assert!(listed(&out).is_empty(), "{out}");

    // The settlements are in the chain, found later and saying so; the chain verifies.
    let lead = app.token_with(&[
        ("org", json!("X24")),
        ("role", json!("icb-ig")),
        ("purpose_of_use", json!("HOPERAT")),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    let events = app
        .client
        .get(format!("{}/AuditEvent?patient={ann}&_count=100", app.base))
        .bearer_auth(&lead)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(events.status(), StatusCode::OK);
    let text = events.text().await.expect("body");
    assert_eq!(text.matches("write settled").count(), 5, "{text}");
    let (ok, out, err) = app.concord(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn writes_left_without_an_outcome_are_settled_on_sqlite() {
    writes_left_without_an_outcome_are_settled(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn writes_left_without_an_outcome_are_settled_on_postgres() {
    let Some(db) = postgres().await else {
        return;
    };
    writes_left_without_an_outcome_are_settled(StoreChoice::Postgres(db.url().to_owned())).await;
    db.drop().await;
}

/// The IG console's health page counts the writes whose outcome is not known, once they are
/// older than a write can take, until they are settled.
#[tokio::test]
async fn the_health_page_counts_writes_whose_outcome_is_not_known() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let gp = Upstream::start(vec![
        patient("g-ann", ANN, "Able", "01632 960001", "Riverside"),
        json!({
            "resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
            "meta": {"versionId": "1"}, "title": "Diabetes plan",
            "subject": {"reference": "Patient/g-ann"}
        }),
    ])
    .await;
    let app = TestApp::start_audited(
        vec![
            SourceSpec::fhir("gp", "Riverside GP", "A81001", gp.base_url())
                .with("writes = [\"CarePlan\", \"Goal\"]"),
        ],
        StoreChoice::Sqlite,
        "",
        policies(),
        "",
        &console_toml(&idp),
    )
    .await;
    let ann = app.patient_id(ANN).await;
    let token = nurse(&app);
    let health = format!("{}/console/health", app.origin);
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let count = |body: &str| {
        let at = body.find("<p id=\"unsettled-writes\">").expect("the count");
        body[at..body[at..].find("</p>").map_or(body.len(), |e| at + e)].to_owned()
    };
    let page = v.get(&health).await;
    assert!(
        count(&page.body).contains("None in the last 7 days"),
        "{}",
        page.body
    );

    // Eleven minutes ago the gateway died after an intent; a moment ago, after another (a
    // write that may still be on its way, for all the page knows).
    let create = |text: &str| {
        (
            "Goal",
            Change::Create {
                if_none_exist: None,
            },
            goal(&ann, text),
        )
    };
    die_after_intent_at(
        &app,
        &token,
        "req-g-old",
        create("Sleep well"),
        false,
        11 * 60,
    )
    .await;
    die_after_intent(&app, &token, "req-h-young", create("Eat well"), false).await;
    app.state.audit.settle().await;
    let page = v.get(&health).await;
    let shown = count(&page.body);
    assert!(
        shown.contains("<strong>1</strong> in the last 7 days"),
        "{shown}"
    );
    assert!(
        shown.contains("concord audit writes --unsettled"),
        "{shown}"
    );

    let (ok, out, err) = app
        .concord(&[
            "audit",
            "writes",
            "--unsettled",
            "--older-than",
            "0",
            "--settle",
            "--by",
            "ig-lead-1",
        ])
        .await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches("settled: recorded as").count(), 2, "{out}");
    let page = v.get(&health).await;
    assert!(
        count(&page.body).contains("None in the last 7 days"),
        "{}",
        page.body
    );
}
