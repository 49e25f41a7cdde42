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
pub(crate) fn write_policies() -> Policies {
    write_policies_with("")
}

/// [`write_policies`], with `portal_extra` after the portal agreement's last rule (`own-goals`).
fn write_policies_with(portal_extra: &str) -> Policies {
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
         [[rule]]\nid = \"own-goals\"\npurpose_of_use = [\"PATRQT\"]\nresources = [\"Goal\"]\ninteractions = [\"create\", \"update\"]\n{portal_extra}",
        head("test-portal", "access = \"patient\"\n")
    );
    Policies::Files(vec![
        ("shared-care.toml".into(), staff),
        ("portal.toml".into(), person),
    ])
}

/// The region's own source, taking every write that belongs nowhere else.
pub(crate) fn region_default() -> Spec {
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
pub(crate) fn staff(app: &TestApp, org: &str, role: &str) -> String {
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

pub(crate) struct Sent {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
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

pub(crate) async fn post(app: &TestApp, token: &str, resource: &Value) -> Sent {
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

pub(crate) async fn put(
    app: &TestApp,
    token: &str,
    resource: &Value,
    if_match: Option<&str>,
) -> Sent {
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

pub(crate) async fn read_as(app: &TestApp, token: &str, path: &str) -> Sent {
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

pub(crate) fn etag(sent: &Sent) -> String {
    sent.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned()
}

pub(crate) fn goal(person: &str, text: &str, plan: Option<&str>) -> Value {
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

pub(crate) fn new_plan(person: &str, title: &str) -> Value {
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
    care_team_with("", write_policies()).await
}

/// [`care_team`] with more settings of the GP's source and other agreements.
async fn care_team_with(
    gp_extra: &str,
    policies: Policies,
) -> (Upstream, Upstream, TestApp, String) {
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
            Spec::fhir("gp", "Riverside GP", "A81001", gp.base_url()).with(&format!(
                "writes = [\"CarePlan\", \"Goal\", \"Flag\"]\n{gp_extra}"
            )),
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
        policies,
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

/// The tag the gateway puts on what the person wrote themselves.
fn is_theirs(resource: &Value) -> bool {
    resource["meta"]["tag"].as_array().is_some_and(|tags| {
        tags.iter().any(|t| {
            t["system"] == "https://fhir.concord.health/CodeSystem/contributor"
                && t["code"] == "patient"
        })
    })
}

/// One plan across providers: the GP holds the plan, the community trust's system holds a
/// part of it that a nurse wrote there (its `partOf` an absolute reference to the GP's plan),
/// and the person adds a goal through the portal. One read of the person's plans gives both,
/// the part's `partOf` the GP plan's gateway id; what the person wrote is marked as theirs,
/// and nobody else can put that mark on.
#[tokio::test]
async fn a_plan_held_in_parts_reads_as_one() {
    let (gp, community, app, ann) = care_team().await;
    community.add_resource(json!({
        "resourceType": "CarePlan", "id": "part-1", "status": "active", "intent": "plan",
        "meta": {"versionId": "1"},
        "title": "Foot care (district nursing)",
        "subject": {"reference": "Patient/c-ann"},
        "author": {"reference": "Practitioner/n-1"},
        "partOf": [{"reference": format!("{}/CarePlan/plan-1", gp.base_url())}],
        "basedOn": [{"reference": "http://elsewhere.example/fhir/CarePlan/x"}]
    }));
    community.add_resource(json!({
        "resourceType": "Goal", "id": "cg-1", "lifecycleStatus": "active",
        "description": {"text": "Walk to the shop"},
        "subject": {"reference": "Patient/c-ann"},
        "expressedBy": {"reference": "Patient/c-ann"}
    }));
    let me = person(&app, ANN);
    let mine = post(
        &app,
        &me,
        &goal(&ann, "Keep gardening", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.body);
    assert!(is_theirs(&mine.body), "{}", mine.body);
    let my_goal = mine.body["id"].as_str().expect("id").to_owned();
    let sent = gp.writes();
    assert_eq!(
        sent[0].body["expressedBy"]["reference"], "Patient/g-ann",
        "the person is named as whose goal it is, in the GP's ids"
    );
    // A nurse's goal is not the person's, whatever tag the nurse sends.
    let nurse = staff(&app, "RY4", "nurse");
    let mut forged = goal(&ann, "Check feet daily", Some("CarePlan/gp.plan-1"));
    forged["meta"] = json!({"tag": [{
        "system": "https://fhir.concord.health/CodeSystem/contributor", "code": "patient"
    }]});
    let theirs_not = post(&app, &nurse, &forged).await;
    assert_eq!(
        theirs_not.status,
        StatusCode::CREATED,
        "{}",
        theirs_not.body
    );
    assert!(!is_theirs(&theirs_not.body), "{}", theirs_not.body);
    assert!(gp.writes()[1].body.pointer("/meta/tag").is_none());

    let plans = read_as(&app, &nurse, &format!("CarePlan?patient={ann}")).await;
    assert_eq!(plans.status, StatusCode::OK, "{}", plans.body);
    let plans = entries(&plans.body, "CarePlan");
    let ids: Vec<&str> = plans.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let part = plans
        .iter()
        .find(|p| p["id"] == "community.part-1")
        .expect("the community's part");
    assert_eq!(part["partOf"][0]["reference"], "CarePlan/gp.plan-1");
    assert_eq!(
        part["basedOn"][0]["reference"], "http://elsewhere.example/fhir/CarePlan/x",
        "what no source holds is left as it is"
    );
    assert_eq!(part["author"]["reference"], "Practitioner/community.n-1");
    assert!(!is_theirs(part));
    let whole = read_as(&app, &nurse, "CarePlan/gp.plan-1").await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    assert_eq!(whole.body["title"], "Diabetes plan");
    let by_id = read_as(&app, &nurse, "CarePlan/community.part-1").await;
    assert_eq!(by_id.body["partOf"][0]["reference"], "CarePlan/gp.plan-1");

    let everything = read_as(&app, &me, &format!("Patient/{ann}/$everything")).await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.body);
    let goals = entries(&everything.body, "Goal");
    let marked: Vec<(&str, bool)> = goals
        .iter()
        .filter_map(|g| Some((g["id"].as_str()?, is_theirs(g))))
        .collect();
    assert!(marked.contains(&(my_goal.as_str(), true)), "{marked:?}");
    assert!(
        marked.contains(&("community.cg-1", true)),
        "expressed by the person: {marked:?}"
    );
    assert!(
        marked.iter().filter(|(_, theirs)| !theirs).count() == 1,
        "only the nurse's goal is not theirs: {marked:?}"
    );
    let parts = entries(&everything.body, "CarePlan");
    assert!(
        parts
            .iter()
            .any(|p| p["partOf"][0]["reference"] == "CarePlan/gp.plan-1"),
        "{}",
        everything.body
    );

    // The care team's update of the person's goal keeps it theirs.
    let back = read_as(&app, &nurse, &format!("Goal/{my_goal}")).await;
    assert!(is_theirs(&back.body), "{}", back.body);
    let mut edited = back.body.clone();
    edited["note"] = json!([{"text": "reviewed at the foot clinic"}]);
    edited.as_object_mut().map(|o| o.remove("expressedBy"));
    let updated = put(&app, &nurse, &edited, Some(&etag(&back))).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert!(is_theirs(&updated.body), "{}", updated.body);
    let again = read_as(&app, &nurse, &format!("Goal/{my_goal}")).await;
    assert!(is_theirs(&again.body), "{}", again.body);
}

/// A goal with the identifier the portal gives it, so that a retried create can be made
/// conditional on it.
fn identified_goal(person: &str, value: &str, plan: Option<&str>) -> Value {
    let mut g = goal(person, "Keep gardening", plan);
    g["identifier"] = json!([{"system": "https://portal.example/goals", "value": value}]);
    g
}

/// `POST` with `If-None-Exist`.
async fn post_if_none_exist(app: &TestApp, token: &str, resource: &Value, condition: &str) -> Sent {
    let response = app
        .client
        .post(format!(
            "{}/{}",
            app.base,
            resource["resourceType"].as_str().expect("type")
        ))
        .bearer_auth(token)
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", condition)
        .body(resource.to_string())
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Sent {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Conditional create at a provider that honours it: forwarded with the person narrowed to
/// the GP's own patient id; a match is 200 naming it and nothing is written, two matches are
/// 412; a condition about someone else, or one the gateway cannot read, is refused.
#[tokio::test]
async fn a_conditional_create_is_forwarded_to_a_source_that_honours_it() {
    let (gp, _community, app, ann) =
        care_team_with("conditional_create = true", write_policies()).await;
    let nurse = staff(&app, "RY4", "nurse");
    let statement = read_as(&app, &nurse, "metadata").await;
    let goal_entry = statement.body["rest"][0]["resource"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "Goal"))
        .cloned()
        .expect("Goal in the CapabilityStatement");
    assert_eq!(goal_entry["conditionalCreate"], true, "{goal_entry}");
    let condition = "identifier=https://portal.example/goals|g-1";
    let body = identified_goal(&ann, "g-1", Some("CarePlan/gp.plan-1"));
    let first = post_if_none_exist(&app, &nurse, &body, condition).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = first.body["id"].as_str().expect("id").to_owned();
    let sent = gp.writes();
    assert_eq!(sent.len(), 1);
    let forwarded = sent[0].if_none_exist.clone().expect("forwarded");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(forwarded.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (
                "identifier".to_owned(),
                "https://portal.example/goals|g-1".to_owned()
            ),
            ("patient".to_owned(), "g-ann".to_owned()),
        ],
        "in the GP's own ids"
    );

    // Sent again (a retry): the match is named, nothing is written.
    let again = post_if_none_exist(&app, &nurse, &body, condition).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["resourceType"], "OperationOutcome");
    assert!(
        again.body.to_string().contains(&format!("Goal/{id}")),
        "{}",
        again.body
    );
    let location = again
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    assert!(
        location.contains(&format!("/Goal/{id}/_history/1")),
        "{location}"
    );
    assert!(gp.resource("Goal", id.trim_start_matches("gp.")).is_some());
    assert_eq!(
        gp.writes().iter().filter(|w| w.status == 201).count(),
        1,
        "written once"
    );

    // Two matches at the GP: 412, nothing written.
    gp.add_resource(json!({
        "resourceType": "Goal", "id": "dup", "lifecycleStatus": "active",
        "description": {"text": "Keep gardening"},
        "identifier": [{"system": "https://portal.example/goals", "value": "g-1"}],
        "subject": {"reference": "Patient/g-ann"}
    }));
    let two = post_if_none_exist(&app, &nurse, &body, condition).await;
    assert_eq!(two.status, StatusCode::PRECONDITION_FAILED, "{}", two.body);
    assert!(
        two.body.to_string().contains("multiple-matches"),
        "{}",
        two.body
    );
    assert_eq!(gp.writes().iter().filter(|w| w.status == 201).count(), 1);

    // Refused before anything is sent: another person, a parameter it cannot name, too
    // long, on an update.
    let bob = app.patient_id(crate::support::data::BOB).await;
    let before = gp.writes().len();
    for (condition, status) in [
        (
            format!("patient=Patient/{bob}&identifier=x"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("code=x".to_owned(), StatusCode::BAD_REQUEST),
        (
            format!("identifier={}", "x".repeat(2_000)),
            StatusCode::BAD_REQUEST,
        ),
        ("identifier=".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let refused = post_if_none_exist(&app, &nurse, &body, &condition).await;
        assert_eq!(refused.status, status, "{condition}: {}", refused.body);
        assert_eq!(refused.body["resourceType"], "OperationOutcome");
    }
    let on_update = app
        .client
        .put(format!("{}/Goal/{id}", app.base))
        .bearer_auth(&nurse)
        .header("Content-Type", "application/fhir+json")
        .header("If-Match", "W/\"1\"")
        .header("If-None-Exist", condition)
        .body(body.to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(on_update.status(), StatusCode::BAD_REQUEST);
    assert_eq!(gp.writes().len(), before, "none reached the GP");

    // Audited as the other writes: the match is the resource of its record.
    let events = audit_of(&app, &ann).await;
    let writes = writes_in(&events);
    let outcomes: Vec<(&str, &str, &str)> = writes
        .iter()
        .filter(|w| w.1 == "outcome")
        .map(|w| (w.0.as_str(), w.2.as_str(), w.3.as_str()))
        .collect();
    let goal_ref = format!("Goal/{id}");
    assert_eq!(
        outcomes[..2],
        [("C", "0", goal_ref.as_str()), ("C", "0", goal_ref.as_str())],
        "created, then matched: {writes:#?}"
    );
    assert_eq!(
        outcomes[2..].iter().map(|o| o.1).collect::<Vec<_>>(),
        ["4", "4"],
        "two matches, another person: {writes:#?}"
    );
    assert!(
        events.iter().any(|e| e.to_string().contains("\"exists\"")),
        "the match is recorded as such"
    );
}

/// A source not configured to honour `If-None-Exist` is never sent a conditional create:
/// it is refused, rather than created regardless.
#[tokio::test]
async fn a_conditional_create_is_refused_where_the_source_cannot_honour_it() {
    let (gp, _community, app, ann) = care_team().await;
    let nurse = staff(&app, "RY4", "nurse");
    let refused = post_if_none_exist(
        &app,
        &nurse,
        &identified_goal(&ann, "g-1", Some("CarePlan/gp.plan-1")),
        "identifier=https://portal.example/goals|g-1",
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused
            .body
            .to_string()
            .contains("Riverside GP (gp) does not honour conditional creates"),
        "{}",
        refused.body
    );
    assert!(gp.writes().is_empty());
}

/// The region's store honours `If-None-Exist` itself, among the person's own resources.
#[tokio::test]
async fn the_region_store_honours_a_conditional_create() {
    let (_gp, _community, app, ann) = care_team().await;
    let me = person(&app, ANN);
    let condition = "identifier=https://portal.example/goals|mine-1";
    let body = identified_goal(&ann, "mine-1", None);
    let first = post_if_none_exist(&app, &me, &body, condition).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let id = first.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("region."), "{id}");
    let again = post_if_none_exist(&app, &me, &body, condition).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(again.body.to_string().contains(&format!("Goal/{id}")));
    // Another identifier is another goal.
    let other = post_if_none_exist(
        &app,
        &me,
        &identified_goal(&ann, "mine-2", None),
        "identifier=https://portal.example/goals|mine-2",
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let goals = read_as(&app, &me, &format!("Goal?patient={ann}")).await;
    let region: Vec<Value> = entries(&goals.body, "Goal")
        .into_iter()
        .filter(|g| g["id"].as_str().is_some_and(|i| i.starts_with("region.")))
        .collect();
    assert_eq!(region.len(), 2, "{}", goals.body);
    // Both now match an identifier-less condition on their status: 412, nothing written.
    let two = post_if_none_exist(
        &app,
        &me,
        &identified_goal(&ann, "mine-3", None),
        "lifecycle-status=active",
    )
    .await;
    assert_eq!(two.status, StatusCode::PRECONDITION_FAILED, "{}", two.body);
    let goals = read_as(&app, &me, &format!("Goal?patient={ann}")).await;
    assert_eq!(
        entries(&goals.body, "Goal")
            .iter()
            .filter(|g| g["id"].as_str().is_some_and(|i| i.starts_with("region.")))
            .count(),
        2
    );
}

/// The portal agreement names where the person's own new goals go when they belong to no
/// plan (`write_to`): here the GP, not the region's store the config defaults to. Staff
/// writes still go by the config.
#[tokio::test]
async fn the_portal_agreement_names_where_the_persons_own_goals_go() {
    let (gp, _community, app, ann) =
        care_team_with("", write_policies_with("write_to = \"gp\"\n")).await;
    let me = person(&app, ANN);
    let mine = post(&app, &me, &goal(&ann, "Sleep better", None)).await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.body);
    let id = mine.body["id"].as_str().expect("id");
    assert!(id.starts_with("gp."), "{id}");
    assert_eq!(gp.writes().len(), 1);
    assert_eq!(gp.writes()[0].body["subject"]["reference"], "Patient/g-ann");
    let back = read_as(&app, &me, &format!("Goal/{id}")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert!(is_theirs(&back.body));
    // A nurse's loose goal: the region, as the config says.
    let nurse = staff(&app, "RY4", "nurse");
    let theirs = post(&app, &nurse, &goal(&ann, "Weigh weekly", None)).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    assert!(
        theirs.body["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("region.")),
        "{}",
        theirs.body
    );
    assert_eq!(gp.writes().len(), 1);
}

/// A portal agreement naming a source that is not configured: the write is refused, and
/// made nowhere.
#[tokio::test]
async fn a_portal_target_that_is_not_a_source_writes_nowhere() {
    let (gp, _community, app, ann) =
        care_team_with("", write_policies_with("write_to = \"nowhere\"\n")).await;
    let me = person(&app, ANN);
    let refused = post(&app, &me, &goal(&ann, "Sleep better", None)).await;
    assert_eq!(
        refused.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        refused.body
    );
    assert!(
        refused.body.to_string().contains("`nowhere`"),
        "{}",
        refused.body
    );
    assert!(gp.writes().is_empty());
    let goals = read_as(&app, &me, &format!("Goal?patient={ann}")).await;
    assert!(entries(&goals.body, "Goal").is_empty(), "{}", goals.body);
}

/// A carer, acting for the person.
fn carer(app: &TestApp, nhs: &str, relationship: &str) -> String {
    app.token_with(&[
        ("scope", json!("patient/*.rs patient/Goal.cu")),
        ("nhs_number", json!(nhs)),
        ("role", json!("patient")),
        ("acting_for_relationship", json!(relationship)),
        ("org", Value::Null),
    ])
}

/// A carer adds a goal for the person only where a write rule names their relationship: a
/// daughter may, a neighbour may not (403, and nothing reaches the source). What a carer
/// writes is not marked as the person's own.
#[tokio::test]
async fn a_carer_writes_by_relationship() {
    let carers = "\n[[rule]]\nid = \"carer-goals\"\npurpose_of_use = [\"FAMRQT\"]\n\
                  relationships = [\"DAU\", \"SON\"]\nresources = [\"Goal\"]\ninteractions = [\"create\"]\n";
    let (gp, _community, app, ann) = care_team_with("", write_policies_with(carers)).await;
    let neighbour = carer(&app, ANN, "NBOR");
    let refused = post(
        &app,
        &neighbour,
        &goal(&ann, "Walk the dog together", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(gp.writes().is_empty(), "nothing reaches the GP");

    let daughter = carer(&app, ANN, "DAU");
    let added = post(
        &app,
        &daughter,
        &goal(&ann, "Walk the dog together", Some("CarePlan/gp.plan-1")),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert!(!is_theirs(&added.body), "{}", added.body);
    assert_eq!(gp.writes().len(), 1);
    assert!(
        gp.writes()[0].body.get("expressedBy").is_none(),
        "a carer is not the person"
    );
    // Only create is named for carers: no update.
    let mut edited = added.body.clone();
    edited["description"]["text"] = json!("Walk the dog daily");
    let update = put(&app, &daughter, &edited, Some(&etag(&added))).await;
    assert_eq!(update.status, StatusCode::FORBIDDEN, "{}", update.body);
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
