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
