//! Issue 18: the region's own store source (`kind = "store"`), read through the same door as
//! any provider, on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::app::{SourceSpec, StoreChoice, Target, TestApp, entries, postgres};
use crate::support::data::{ANN, patient};
use crate::support::upstream::Upstream;

/// The region's own source, holding what no provider owns.
fn region() -> SourceSpec {
    SourceSpec {
        id: "region",
        name: "Northshire shared care record",
        ods: "QNS",
        target: Target::Store("writes = [\"CarePlan\", \"Goal\", \"Flag\"]".into()),
    }
}

fn care_plan(id: &str, person: &str, version: i64) -> Value {
    json!({
        "resourceType": "CarePlan", "id": id, "status": "active", "intent": "plan",
        "meta": {"versionId": version.to_string(), "lastUpdated": "2026-11-01T09:00:00Z"},
        "title": format!("Shared plan v{version}"),
        "subject": {"reference": format!("Patient/{person}")}
    })
}

/// A CarePlan kept in the store (with its history) is found, linked and read back merged with
/// the GP's record: by `$everything`, `CarePlan?patient=` and by id, newest version only.
async fn a_held_plan_is_read_through_the_door(store: StoreChoice, url: Option<String>) {
    let gp = Upstream::start(vec![patient(
        "g-ann",
        ANN,
        "Able",
        "01632 960001",
        "Riverside",
    )])
    .await;
    let app = TestApp::start_with(
        vec![
            SourceSpec::fhir("gp", "Riverside GP", "A81001", gp.base_url()),
            region(),
        ],
        store,
        "",
    )
    .await;
    let url = url.unwrap_or_else(|| format!("sqlite://{}/data/concord.db", app.dir().display()));
    let db = concord::store::Store::connect(&url, 1)
        .await
        .expect("store");
    let person = db.ensure_person(ANN, 0).await.expect("person");
    let p = person.to_string();
    let key = ("region", "CarePlan", "plan-1");
    for version in [1, 2] {
        let body = care_plan("plan-1", &p, version).to_string();
        let written = db
            .held_write(key, person, version, &body, 0)
            .await
            .expect("write");
        assert_eq!(written, concord::store::HeldWrite::Written(version));
    }
    // A stale version writes nothing.
    let stale = db
        .held_write(key, person, 2, &care_plan("plan-1", &p, 2).to_string(), 0)
        .await
        .expect("write");
    assert_eq!(
        stale,
        concord::store::HeldWrite::Conflict { current: Some(2) }
    );
    assert_eq!(
        db.held_history("region", "CarePlan", "plan-1")
            .await
            .expect("history")
            .len(),
        2
    );

    let id = app.patient_id(ANN).await;
    assert_eq!(id, p, "the store knows the person by their gateway id");
    let all = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let plans = entries(&all.body, "CarePlan");
    assert_eq!(plans.len(), 1, "{}", all.body);
    assert_eq!(plans[0]["id"], "region.plan-1");
    assert_eq!(plans[0]["title"], "Shared plan v2");
    assert_eq!(plans[0]["meta"]["versionId"], "2");
    assert_eq!(plans[0]["meta"]["source"], "urn:concord:source:region");
    assert_eq!(plans[0]["subject"]["reference"], format!("Patient/{id}"));
    let search = app.get(&format!("CarePlan?patient={id}")).await;
    assert_eq!(
        entries(&search.body, "CarePlan").len(),
        1,
        "{}",
        search.body
    );
    let read = app.get("CarePlan/region.plan-1").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["title"], "Shared plan v2");
    let missing = app.get("CarePlan/region.plan-2").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_held_plan_is_read_through_the_door_on_sqlite() {
    a_held_plan_is_read_through_the_door(StoreChoice::Sqlite, None).await;
}

#[tokio::test]
async fn a_held_plan_is_read_through_the_door_on_postgres() {
    let Some(db) = postgres().await else {
        return;
    };
    let url = db.url().to_owned();
    a_held_plan_is_read_through_the_door(StoreChoice::Postgres(url.clone()), Some(url)).await;
}

// ---------------------------------------------------------------------------------------
// Writes through the door: POST and PUT of CarePlan, Goal and Flag.
// ---------------------------------------------------------------------------------------

use crate::support::app::{Policies, SourceSpec as Spec};
use concord::disclose::PLAN_EXTENSION;

/// Agreements for the write tests: the care team (GP, community nurses, the region) reads
/// everything and writes plans, goals and alerts; social workers read only; the person reads
/// their record and adds and updates their own goals.
fn write_policies() -> Policies {
    let head = |id: &str, access: &str| {
        format!(
            "[agreement]\nid = \"{id}\"\ntitle = \"{id}\"\nversion = \"1\"\nstatus = \"active\"\n{access}\
             legal_basis = [\"test\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"tests\"\n\n"
        )
    };
    let staff = format!(
        "{}[parties]\ndisclosers = [\"A81001\", \"RY4\", \"QNS\"]\nrecipients = [\"A81001\", \"RY4\", \"QNS\", \"LA1\"]\n\n\
         [[rule]]\nid = \"read\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\", \"nurse\", \"social-worker\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"care-team-writes\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\", \"nurse\"]\n\
         resources = [\"CarePlan\", \"Goal\", \"Flag\"]\ninteractions = [\"create\", \"update\"]\n",
        head("test-shared-care", "")
    );
    let person = format!(
        "{}[parties]\ndisclosers = [\"A81001\", \"RY4\", \"QNS\"]\n\n\
         [[rule]]\nid = \"own-record\"\npurpose_of_use = [\"PATRQT\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"own-goals\"\npurpose_of_use = [\"PATRQT\"]\nresources = [\"Goal\"]\ninteractions = [\"create\", \"update\"]\n",
        head("test-portal", "access = \"patient\"\n")
    );
    Policies::Files(vec![
        ("shared-care.toml".into(), staff),
        ("portal.toml".into(), person),
    ])
}

/// The region's own source, taking every write that belongs nowhere else.
fn region_default() -> Spec {
    Spec {
        id: "region",
        name: "Northshire shared care record",
        ods: "QNS",
        target: Target::Store(
            "writes = [\"CarePlan\", \"Goal\", \"Flag\"]\nwrite_default = true".into(),
        ),
    }
}

/// Staff of `org` in `role`, who may write plans, goals and alerts by their scopes.
fn staff(app: &TestApp, org: &str, role: &str) -> String {
    app.token_with(&[
        ("org", json!(org)),
        ("role", json!(role)),
        ("sub", json!(format!("{role}-1"))),
        (
            "scope",
            json!("user/*.rs user/CarePlan.cu user/Goal.cu user/Flag.cu"),
        ),
    ])
}

/// The person themselves, through the portal.
fn person(app: &TestApp, nhs: &str) -> String {
    app.token_with(&[
        ("scope", json!("patient/*.rs patient/Goal.cu")),
        ("nhs_number", json!(nhs)),
        ("role", json!("patient")),
        ("purpose_of_use", json!("PATRQT")),
        ("org", Value::Null),
    ])
}

/// An IG lead of the region, who reads the whole audit log.
fn ig_lead(app: &TestApp) -> String {
    app.token_with(&[
        ("org", json!("X24")),
        ("role", json!("icb-ig")),
        ("purpose_of_use", json!("HOPERAT")),
        ("scope", json!("user/AuditEvent.rs")),
    ])
}

struct Sent {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Sends `body` (raw bytes) with `method` to `path` as `token`, with `If-Match` when given.
async fn send_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Vec<u8>,
    if_match: Option<&str>,
) -> Sent {
    let mut request = app
        .client
        .request(method, format!("{}/{path}", app.base))
        .bearer_auth(token)
        .header("Content-Type", "application/fhir+json")
        .body(body);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    let response = request.send().await.expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Sent {
        status,
        headers,
        body: serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    }
}

async fn post(app: &TestApp, token: &str, resource: &Value) -> Sent {
    let t = resource["resourceType"].as_str().expect("type").to_owned();
    send_raw(
        app,
        reqwest::Method::POST,
        &t,
        token,
        resource.to_string().into_bytes(),
        None,
    )
    .await
}

async fn put(app: &TestApp, token: &str, resource: &Value, if_match: Option<&str>) -> Sent {
    let path = format!(
        "{}/{}",
        resource["resourceType"].as_str().expect("type"),
        resource["id"].as_str().expect("id")
    );
    send_raw(
        app,
        reqwest::Method::PUT,
        &path,
        token,
        resource.to_string().into_bytes(),
        if_match,
    )
    .await
}

async fn read_as(app: &TestApp, token: &str, path: &str) -> Sent {
    let response = app
        .client
        .get(format!("{}/{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Sent {
        status,
        headers,
        body,
    }
}

fn etag(sent: &Sent) -> String {
    sent.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned()
}

fn goal(person: &str, text: &str, plan: Option<&str>) -> Value {
    let mut goal = json!({
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": text},
        "subject": {"reference": format!("Patient/{person}")}
    });
    if let Some(plan) = plan {
        goal["extension"] = json!([{"url": PLAN_EXTENSION, "valueReference": {"reference": plan}}]);
    }
    goal
}

fn new_plan(person: &str, title: &str) -> Value {
    json!({
        "resourceType": "CarePlan", "status": "active", "intent": "plan", "title": title,
        "subject": {"reference": format!("Patient/{person}")}
    })
}

/// Every AuditEvent about the person (the IG lead's view), oldest first.
async fn audit_of(app: &TestApp, person: &str) -> Vec<Value> {
    let lead = ig_lead(app);
    let mut events = Vec::new();
    let mut url = format!("AuditEvent?patient={person}&_count=200");
    loop {
        let page = read_as(app, &lead, &url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        events.extend(entries(&page.body, "AuditEvent"));
        let next = page.body["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        match next {
            Some(n) => url = n.trim_start_matches(&format!("{}/", app.base)).to_owned(),
            None => break,
        }
    }
    events.sort_by(|a, b| a["recorded"].as_str().cmp(&b["recorded"].as_str()));
    events
}

/// The write entities of the audit events: (action, stage, outcome code, resource, details).
fn writes_in(events: &[Value]) -> Vec<(String, String, String, String, Value)> {
    events
        .iter()
        .filter_map(|e| {
            let entity = e["entity"].as_array()?.iter().find(|x| {
                x["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("write "))
            })?;
            let detail: serde_json::Map<String, Value> = entity["detail"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| Some((d["type"].as_str()?.to_owned(), d["valueString"].clone())))
                .collect();
            Some((
                e["action"].as_str()?.to_owned(),
                detail.get("stage")?.as_str()?.to_owned(),
                e["outcome"].as_str()?.to_owned(),
                entity["what"]["reference"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                Value::Object(detail),
            ))
        })
        .collect()
}

/// The region writes a plan nobody else owns into its own store, reads it back merged with the
/// GP's record, updates it with the version it read, and a stale version changes nothing.
async fn a_plan_no_provider_owns(store: StoreChoice, url: Option<String>) {
    let gp = Upstream::start(vec![patient(
        "g-ann",
        ANN,
        "Able",
        "01632 960001",
        "Riverside",
    )])
    .await;
    let app = TestApp::start_audited(
        vec![
            Spec::fhir("gp", "Riverside GP", "A81001", gp.base_url()),
            region_default(),
        ],
        store,
        "",
        write_policies(),
        "region_roles = [\"icb-ig\"]",
        "",
    )
    .await;
    let ann = app.patient_id(ANN).await;
    let nurse = staff(&app, "QNS", "nurse");

    let created = post(&app, &nurse, &new_plan(&ann, "Living well at home")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("region."), "{id}");
    assert_eq!(etag(&created), "W/\"1\"");
    let location = created.headers["location"].to_str().expect("location");
    assert!(
        location.ends_with(&format!("/CarePlan/{id}/_history/1")),
        "{location}"
    );

    // Read back through the door, by id and merged with the GP's record.
    let read = read_as(&app, &nurse, &format!("CarePlan/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(etag(&read), "W/\"1\"");
    assert_eq!(read.body["meta"]["versionId"], "1");
    assert_eq!(read.body["title"], "Living well at home");
    assert_eq!(read.body["subject"]["reference"], format!("Patient/{ann}"));
    let all = read_as(&app, &nurse, &format!("Patient/{ann}/$everything")).await;
    assert_eq!(entries(&all.body, "CarePlan").len(), 1, "{}", all.body);
    assert_eq!(entries(&all.body, "Patient").len(), 1, "{}", all.body);

    // A goal of that plan goes to the plan's source, and its reference resolves there.
    let g = post(
        &app,
        &nurse,
        &goal(&ann, "Walk to the shop", Some(&format!("CarePlan/{id}"))),
    )
    .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    let goal_id = g.body["id"].as_str().expect("goal id").to_owned();
    assert!(goal_id.starts_with("region."), "{goal_id}");

    // The update names the goal; it carries the version read.
    let mut plan = read.body.clone();
    plan["goal"] = json!([{"reference": format!("Goal/{goal_id}")}]);
    plan["title"] = json!("Living well at home, walking");
    let updated = put(&app, &nurse, &plan, Some(&etag(&read))).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(etag(&updated), "W/\"2\"");
    // Without If-Match: 428; with the version read before the update: 412, nothing written.
    let bare = put(&app, &nurse, &plan, None).await;
    assert_eq!(
        bare.status,
        StatusCode::PRECONDITION_REQUIRED,
        "{}",
        bare.body
    );
    assert_eq!(bare.body["resourceType"], "OperationOutcome");
    plan["title"] = json!("lost update");
    let stale = put(&app, &nurse, &plan, Some("W/\"1\"")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    let now = read_as(&app, &nurse, &format!("CarePlan/{id}")).await;
    assert_eq!(now.body["title"], "Living well at home, walking");
    assert_eq!(now.body["meta"]["versionId"], "2");
    assert_eq!(now.body["goal"][0]["reference"], format!("Goal/{goal_id}"));
    let url = url.unwrap_or_else(|| format!("sqlite://{}/data/concord.db", app.dir().display()));
    let db = concord::store::Store::connect(&url, 1)
        .await
        .expect("store");
    let local = id.trim_start_matches("region.");
    let history = db
        .held_history("region", "CarePlan", local)
        .await
        .expect("history");
    assert_eq!(history.len(), 2, "the stale write added no version");
    // Held in the store's own ids: the goal by its local id, the person by their gateway id.
    assert!(history[1].body.contains(&format!(
        "\"Goal/{}\"",
        goal_id.trim_start_matches("region.")
    )));
    assert!(!history[1].body.contains("urn:concord:source"));

    // Every write is in the AuditEvent API: intent then outcome, with source, version and hash.
    let events = audit_of(&app, &ann).await;
    let writes = writes_in(&events);
    let outcomes: Vec<(&str, &str, &str)> = writes
        .iter()
        .filter(|w| w.1 == "outcome")
        .map(|w| (w.0.as_str(), w.2.as_str(), w.3.as_str()))
        .collect();
    let plan_ref = format!("CarePlan/{id}");
    let goal_ref = format!("Goal/{goal_id}");
    assert_eq!(
        outcomes,
        vec![
            ("C", "0", plan_ref.as_str()),
            ("C", "0", goal_ref.as_str()),
            ("U", "0", plan_ref.as_str()),
            ("U", "4", plan_ref.as_str()),
            ("U", "4", plan_ref.as_str()),
        ],
        "{writes:#?}"
    );
    assert_eq!(
        writes.iter().filter(|w| w.1 == "intent").count(),
        3,
        "an intent before each write sent"
    );
    let first = writes.iter().find(|w| w.1 == "outcome").expect("a write");
    assert_eq!(first.4["source"], "region");
    assert_eq!(first.4["version"], "1");
    assert_eq!(first.4["agreement"], "test-shared-care");
    assert_eq!(first.4["rule"], "care-team-writes");
    assert_eq!(first.4["sha256"].as_str().map(str::len), Some(64));
    let (ok, out, err) = app.concord(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn a_plan_no_provider_owns_is_written_to_the_store_on_sqlite() {
    a_plan_no_provider_owns(StoreChoice::Sqlite, None).await;
}

#[tokio::test]
async fn a_plan_no_provider_owns_is_written_to_the_store_on_postgres() {
    let Some(db) = postgres().await else {
        return;
    };
    let url = db.url().to_owned();
    a_plan_no_provider_owns(StoreChoice::Postgres(url.clone()), Some(url)).await;
}

/// The GP's plan for Ann, versioned as the GP's system holds it.
fn gp_plan() -> Value {
    json!({
        "resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
        "meta": {"versionId": "1"},
        "title": "Diabetes plan",
        "subject": {"reference": "Patient/g-ann"}
    })
}

/// A GP that takes writes of plans and goals, a community trust whose system takes none,
/// and the region's store.
async fn care_team() -> (Upstream, Upstream, TestApp, String) {
    let gp = Upstream::start(vec![
        patient("g-ann", ANN, "Able", "01632 960001", "Riverside"),
        patient(
            "g-bob",
            crate::support::data::BOB,
            "Jones",
            "01632 960002",
            "Riverside",
        ),
        gp_plan(),
    ])
    .await;
    let community = Upstream::start(vec![
        patient("c-ann", ANN, "Able", "01632 960001", "Riverside"),
        crate::support::data::condition("c-1", "c-ann", "44054006", "2020-01-01"),
    ])
    .await;
    let app = TestApp::start_audited(
        vec![
            Spec::fhir("gp", "Riverside GP", "A81001", gp.base_url())
                .with("writes = [\"CarePlan\", \"Goal\", \"Flag\"]"),
            Spec::fhir(
                "community",
                "Northshire Community",
                "RY4",
                community.base_url(),
            ),
            region_default(),
        ],
        StoreChoice::Sqlite,
        "max_body_bytes = 16384",
        write_policies(),
        "region_roles = [\"icb-ig\"]",
        "",
    )
    .await;
    let ann = app.patient_id(ANN).await;
    (gp, community, app, ann)
}

/// A community nurse adds a goal to the plan the GP holds: the GP's system receives it in its
/// own ids, and the plan's update naming it carries the version the nurse read.
#[tokio::test]
async fn a_nurse_adds_a_goal_to_the_plan_the_gp_holds() {
    let (gp, community, app, ann) = care_team().await;
    let nurse = staff(&app, "RY4", "nurse");
    let plans = read_as(&app, &nurse, &format!("CarePlan?patient={ann}")).await;
    assert_eq!(
        entries(&plans.body, "CarePlan")[0]["id"],
        "gp.plan-1",
        "{}",
        plans.body
    );

    let added = post(
        &app,
        &nurse,
        &goal(&ann, "Check feet daily", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let goal_id = added.body["id"].as_str().expect("id").to_owned();
    assert!(goal_id.starts_with("gp."), "{goal_id}");
    assert_eq!(etag(&added), "W/\"1\"");
    let writes = gp.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(
        (writes[0].method.as_str(), writes[0].path.as_str()),
        ("POST", "/fhir/Goal")
    );
    assert_eq!(
        writes[0].body["subject"]["reference"], "Patient/g-ann",
        "the GP's own ids"
    );
    assert_eq!(
        writes[0].body["extension"][0]["valueReference"]["reference"],
        "CarePlan/plan-1"
    );
    assert!(writes[0].body.get("id").is_none());
    assert!(
        community.writes().is_empty(),
        "the nurse's own trust does not hold the plan"
    );
    let local = goal_id.trim_start_matches("gp.");
    assert_eq!(
        gp.resource("Goal", local).expect("held by the GP")["description"]["text"],
        "Check feet daily"
    );

    // The plan now names the goal; the update goes to the GP with the version read.
    let read = read_as(&app, &nurse, "CarePlan/gp.plan-1").await;
    assert_eq!(etag(&read), "W/\"1\"");
    let mut plan = read.body.clone();
    plan["goal"] = json!([{"reference": format!("Goal/{goal_id}")}]);
    let updated = put(&app, &nurse, &plan, Some("W/\"1\"")).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(etag(&updated), "W/\"2\"");
    let writes = gp.writes();
    assert_eq!(writes[1].method, "PUT");
    assert_eq!(writes[1].path, "/fhir/CarePlan/plan-1");
    assert_eq!(
        writes[1].if_match.as_deref(),
        Some("W/\"1\""),
        "If-Match is forwarded"
    );
    assert_eq!(writes[1].body["id"], "plan-1");
    assert_eq!(
        writes[1].body["goal"][0]["reference"],
        format!("Goal/{local}")
    );
    assert!(
        writes[1].body.pointer("/meta/source").is_none(),
        "the gateway's stamps stay home"
    );
    let held = gp.resource("CarePlan", "plan-1").expect("plan");
    assert_eq!(
        held["goal"][0]["reference"],
        format!("Goal/{local}"),
        "resolves at the GP"
    );

    // A change at the GP since the nurse read it: 412, and nothing is sent.
    let mut changed = gp.resource("CarePlan", "plan-1").expect("plan");
    changed["meta"]["versionId"] = json!("3");
    changed["title"] = json!("changed at the practice");
    gp.add_resource(changed);
    plan["title"] = json!("the nurse's stale edit");
    let stale = put(&app, &nurse, &plan, Some("W/\"2\"")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(
        gp.writes().len(),
        2,
        "a stale update never reaches the source"
    );
    assert_eq!(
        gp.resource("CarePlan", "plan-1").expect("plan")["title"],
        "changed at the practice"
    );

    // A reference the GP cannot resolve (the community's condition): 422, nothing sent.
    let mut foreign = goal(&ann, "Heal the ulcer", Some("CarePlan/gp.plan-1"));
    foreign["addresses"] = json!([{"reference": "Condition/community.c-1"}]);
    let refused = post(&app, &nurse, &foreign).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.to_string().contains("Condition/community.c-1"),
        "{}",
        refused.body
    );
    assert_eq!(gp.writes().len(), 2);

    // The GP's system refuses a write: a clear error, and the refusal is recorded.
    gp.refuse_writes(Some(422));
    let said_no = post(
        &app,
        &nurse,
        &goal(&ann, "Swim weekly", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(
        said_no.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        said_no.body
    );
    let text = said_no.body.to_string();
    assert!(
        text.contains("Riverside GP (gp) refused the write (HTTP 422)"),
        "{text}"
    );
    assert!(
        text.contains("business rules say no"),
        "what the source said: {text}"
    );
    assert_eq!(gp.writes().last().map(|w| w.status), Some(422));
    gp.refuse_writes(None);

    let events = audit_of(&app, &ann).await;
    let outcomes: Vec<(String, String, Option<String>)> = writes_in(&events)
        .into_iter()
        .filter(|w| w.1 == "outcome")
        .map(|w| (w.0, w.2, w.4["source"].as_str().map(str::to_owned)))
        .collect();
    let gp_ = Some("gp".to_owned());
    assert_eq!(
        outcomes,
        vec![
            ("C".into(), "0".into(), gp_.clone()),
            ("U".into(), "0".into(), gp_.clone()),
            ("U".into(), "4".into(), gp_.clone()),
            ("C".into(), "4".into(), gp_.clone()),
            ("C".into(), "4".into(), gp_.clone()),
        ]
    );
    let refusal = events.last().expect("the refused write's record");
    assert!(refusal.to_string().contains("\"refused\""), "{refusal}");
    let (ok, out, err) = app.concord(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
}

/// The person adds a goal of their own through the portal: it goes with the plan it belongs
/// to, or to the region's store. They cannot write about anyone else, nor write a plan.
#[tokio::test]
async fn the_person_adds_their_own_goal_through_the_portal() {
    let (gp, _community, app, ann) = care_team().await;
    let me = person(&app, ANN);
    let mine = post(
        &app,
        &me,
        &goal(
            &ann,
            "Dance at my granddaughter's wedding",
            Some("CarePlan/gp.plan-1"),
        ),
    )
    .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.body);
    assert!(
        mine.body["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("gp."))
    );
    assert_eq!(gp.writes().len(), 1);
    let loose = post(&app, &me, &goal(&ann, "Sleep better", None)).await;
    assert_eq!(loose.status, StatusCode::CREATED, "{}", loose.body);
    let id = loose.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("region."), "{id}");
    let back = read_as(&app, &me, &format!("Goal/{id}")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(back.body["description"]["text"], "Sleep better");
    // Their update, with the version they read.
    let mut edited = back.body.clone();
    edited["description"]["text"] = json!("Sleep through the night");
    let ok = put(&app, &me, &edited, Some(&etag(&back))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    // Not a plan (no rule lets the person write one), and not about somebody else.
    let plan = post(&app, &me, &new_plan(&ann, "my plan")).await;
    assert_eq!(plan.status, StatusCode::FORBIDDEN, "{}", plan.body);
    let bob = app.patient_id(crate::support::data::BOB).await;
    let other = post(&app, &me, &goal(&bob, "not mine", None)).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
    assert_eq!(gp.writes().len(), 1);
}

/// A write no agreement permits is 403, a body that does not conform is 422 with its
/// problems, and neither reaches any source; both are recorded as refused.
#[tokio::test]
async fn refused_writes_never_reach_a_source() {
    let (gp, community, app, ann) = care_team().await;
    let social = staff(&app, "LA1", "social-worker");
    let no_rule = post(
        &app,
        &social,
        &goal(&ann, "Meals on wheels", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(no_rule.status, StatusCode::FORBIDDEN, "{}", no_rule.body);
    assert_eq!(no_rule.body["resourceType"], "OperationOutcome");
    assert!(
        no_rule
            .body
            .to_string()
            .contains("no data-sharing agreement"),
        "{}",
        no_rule.body
    );
    // Nor does it learn whether its If-Match is stale.
    let mut plan = gp_plan();
    plan["id"] = json!("gp.plan-1");
    plan["subject"]["reference"] = json!(format!("Patient/{ann}"));
    let probe = put(&app, &social, &plan, Some("W/\"9\"")).await;
    assert_eq!(probe.status, StatusCode::FORBIDDEN, "{}", probe.body);
    let nurse = staff(&app, "RY4", "nurse");
    let mut bad = goal(&ann, "x", Some("CarePlan/gp.plan-1"));
    bad.as_object_mut()
        .expect("object")
        .remove("lifecycleStatus");
    bad["priority"] = json!("high");
    let nonconforming = post(&app, &nurse, &bad).await;
    assert_eq!(
        nonconforming.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        nonconforming.body
    );
    let text = nonconforming.body.to_string();
    assert!(text.contains("lifecycleStatus"), "{text}");
    assert!(text.contains("priority"), "{text}");
    let flag = json!({"resourceType": "Flag", "status": "nonsense",
        "code": {"text": "Lives alone"}, "subject": {"reference": format!("Patient/{ann}")}});
    let bad_flag = post(&app, &nurse, &flag).await;
    assert_eq!(
        bad_flag.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_flag.body
    );
    assert!(gp.writes().is_empty() && community.writes().is_empty());
    let outcomes: Vec<(String, String)> = writes_in(&audit_of(&app, &ann).await)
        .into_iter()
        .map(|w| (w.1, w.2))
        .collect();
    assert_eq!(
        outcomes,
        vec![("outcome".into(), "4".into()); 4],
        "recorded as refused, no intent"
    );
}

/// Bad requests: each an OperationOutcome, none reaching a source.
#[tokio::test]
async fn bad_write_requests_are_refused_with_an_outcome() {
    let (gp, _community, app, ann) = care_team().await;
    let nurse = staff(&app, "A81001", "nurse");
    let good = goal(&ann, "Walk daily", Some("CarePlan/gp.plan-1"));
    let raw =
        |method: reqwest::Method, path: &str, body: Vec<u8>, if_match: Option<&'static str>| {
            let (app, nurse, path) = (&app, nurse.clone(), path.to_owned());
            async move { send_raw(app, method, &path, &nurse, body, if_match).await }
        };
    let post_m = reqwest::Method::POST;
    let put_m = reqwest::Method::PUT;
    let cases: Vec<(Sent, StatusCode, &str)> = vec![
        (raw(post_m.clone(), "Goal", b"{\"resourceType\": \"Goal\",".to_vec(), None).await, StatusCode::BAD_REQUEST, "malformed JSON"),
        (raw(post_m.clone(), "Goal", b"[]".to_vec(), None).await, StatusCode::BAD_REQUEST, "not a resource"),
        (raw(post_m.clone(), "Goal", new_plan(&ann, "x").to_string().into_bytes(), None).await, StatusCode::BAD_REQUEST, "wrong resourceType"),
        (raw(post_m.clone(), "Goal", format!("{{\"resourceType\":\"Goal\",\"description\":{{\"text\":\"{}\"}}}}", "x".repeat(20_000)).into_bytes(), None).await, StatusCode::PAYLOAD_TOO_LARGE, "too large"),
        (raw(post_m.clone(), "Observation", b"{\"resourceType\":\"Observation\"}".to_vec(), None).await, StatusCode::METHOD_NOT_ALLOWED, "a type that is not written"),
        (raw(put_m.clone(), "CarePlan/gp.plan-1", json!({"resourceType": "CarePlan", "id": "gp.other", "status": "active", "intent": "plan", "subject": {"reference": format!("Patient/{ann}")}}).to_string().into_bytes(), Some("W/\"1\"")).await, StatusCode::BAD_REQUEST, "id mismatch"),
        (raw(put_m.clone(), "CarePlan/gp.plan-1", gp_plan().to_string().into_bytes(), Some("*")).await, StatusCode::BAD_REQUEST, "If-Match that is not a version"),
        (raw(put_m.clone(), "CarePlan/community.p", json!({"resourceType": "CarePlan", "id": "community.p", "status": "active", "intent": "plan", "subject": {"reference": format!("Patient/{ann}")}}).to_string().into_bytes(), Some("W/\"1\"")).await, StatusCode::METHOD_NOT_ALLOWED, "a source that takes no writes"),
        (raw(post_m.clone(), "Goal", json!({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "x"}, "subject": {"reference": "Patient/g-ann"}}).to_string().into_bytes(), None).await, StatusCode::UNPROCESSABLE_ENTITY, "a subject that is not a gateway id"),
        (raw(post_m.clone(), "Goal", goal(&ann, "x", Some("CarePlan/nowhere.p")).to_string().into_bytes(), None).await, StatusCode::UNPROCESSABLE_ENTITY, "a plan no source holds"),
    ];
    for (sent, status, what) in cases {
        assert_eq!(sent.status, status, "{what}: {}", sent.body);
        assert_eq!(
            sent.body["resourceType"], "OperationOutcome",
            "{what}: {}",
            sent.body
        );
    }
    let wrong_media = app
        .client
        .post(format!("{}/Goal", app.base))
        .bearer_auth(&nurse)
        .header("Content-Type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong_media.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Scopes: a token that may only read cannot write.
    let reader = app.token_with(&[("org", json!("A81001")), ("role", json!("nurse"))]);
    let scoped = post(&app, &reader, &good).await;
    assert_eq!(scoped.status, StatusCode::FORBIDDEN, "{}", scoped.body);
    assert!(gp.writes().is_empty(), "{:?}", gp.writes());
}

/// An NDJSON export never takes writes: its config is refused.
#[test]
fn an_ndjson_export_never_takes_writes() {
    let config = concord::config::Config::parse(
        "[[source]]\nid = \"x\"\nname = \"X\"\nods = \"X1\"\nkind = \"ndjson\"\npath = \".\"\nwrites = [\"Goal\"]\n",
    )
    .expect("parses");
    let error = config.sources[0].kind(0).expect_err("refused").to_string();
    assert!(error.contains("never accepts writes"), "{error}");
}

/// Eight updates of one held plan made from the same version at once: exactly one is
/// written, the others are 412 (none is lost, none fails on a locked SQLite database).
#[tokio::test]
async fn concurrent_updates_from_one_version_one_wins() {
    let gp = Upstream::start(vec![patient(
        "g-ann",
        ANN,
        "Able",
        "01632 960001",
        "Riverside",
    )])
    .await;
    let app = TestApp::start_full(
        vec![
            Spec::fhir("gp", "Riverside GP", "A81001", gp.base_url()),
            region_default(),
        ],
        StoreChoice::Sqlite,
        "",
        write_policies(),
    )
    .await;
    let ann = app.patient_id(ANN).await;
    let nurse = staff(&app, "QNS", "nurse");
    let created = post(&app, &nurse, &new_plan(&ann, "v1")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let tries: Vec<Value> = (0..8)
        .map(|i| {
            let mut plan = created.body.clone();
            plan["title"] = json!(format!("edit {i}"));
            plan
        })
        .collect();
    let answers =
        futures_util::future::join_all(tries.iter().map(|p| put(&app, &nurse, p, Some("W/\"1\""))))
            .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 412, 412, 412, 412, 412, 412, 412],
        "{statuses:?}"
    );
    let winner = answers
        .iter()
        .find(|a| a.status == StatusCode::OK)
        .expect("one");
    let id = created.body["id"].as_str().expect("id");
    let now = read_as(&app, &nurse, &format!("CarePlan/{id}")).await;
    assert_eq!(now.body["title"], winner.body["title"]);
    assert_eq!(now.body["meta"]["versionId"], "2");
}
