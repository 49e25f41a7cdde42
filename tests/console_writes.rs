//! Issue 18, item 6: the IG console shows writes. A nurse creates and updates a plan through
//! the gateway (kept in the region's own store), a social worker's write is refused (403), and
//! an IG lead signed in through a real OpenID Connect provider finds each in "who has looked
//! at this record" and in the audit search, and opens what a write record holds. Expectations
//! are computed from the store's own records.

use reqwest::StatusCode;

use concord::audit::Body;

use crate::console::console_toml;
use crate::console_people::{lead, stored};
use crate::support::app::{SourceSpec, StoreChoice, TestApp};
use crate::support::data::{ANN, patient};
use crate::support::oidc::OidcProvider;
use crate::support::upstream::Upstream;
use crate::writes::{
    etag, goal, new_plan, post, put, read_as, region_default, staff, write_policies,
};

/// `value` as the console writes text into a page.
fn escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The row of a results table about the record `id`.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start = format!("<tr data-id=\"{id}\">");
    let at = page
        .find(&start)
        .unwrap_or_else(|| panic!("no row for {id}: {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// A term and its description, as a record page shows them.
fn item(term: &str, value: &str) -> String {
    format!("<dt>{term}</dt><dd>{}</dd>", escaped(value))
}

/// The write records of the store (newest first): (id, body).
fn writes(all: &[(String, Body)]) -> Vec<(String, Body)> {
    all.iter()
        .filter(|(_, b)| b.write.is_some())
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_console_shows_writes_and_refused_writes() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let gp = Upstream::start(vec![patient(
        "g-ann",
        ANN,
        "Able",
        "01632 960001",
        "Riverside",
    )])
    .await;
    let console = format!(
        "{}region_roles = [\"caldicott-guardian\"]\n",
        console_toml(&idp)
    );
    let app = TestApp::start_audited(
        vec![
            SourceSpec::fhir("gp", "Riverside GP", "A81001", gp.base_url()),
            region_default(),
        ],
        StoreChoice::Sqlite,
        "",
        write_policies(),
        "",
        &console,
    )
    .await;
    let ann = app.patient_id(ANN).await;
    let nurse = staff(&app, "QNS", "nurse");

    // A create and an update, through the gateway, to the region's own store.
    let created = post(&app, &nurse, &new_plan(&ann, "Living well at home")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let read = read_as(&app, &nurse, &format!("CarePlan/{id}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let mut plan = read.body.clone();
    plan["title"] = serde_json::json!("Living well at home, walking");
    let updated = put(&app, &nurse, &plan, Some(&etag(&read))).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(etag(&updated), "W/\"2\"");
    // A write no agreement permits: 403, recorded as refused.
    let social = staff(&app, "LA1", "social-worker");
    let refused = post(
        &app,
        &social,
        &goal(&ann, "Meals on wheels", Some(&format!("CarePlan/{id}"))),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // The records, as the store holds them: intent and outcome of each write sent, and one
    // outcome of the refused write.
    let all = stored(&app).await;
    let found = writes(&all);
    let stages: Vec<(&str, &str, &str, u16)> = found
        .iter()
        .rev()
        .filter_map(|(_, b)| {
            let w = b.write.as_ref()?;
            Some((
                w.stage.as_str(),
                w.action.as_str(),
                b.outcome.as_str(),
                b.status,
            ))
        })
        .collect();
    assert_eq!(
        stages,
        vec![
            ("intent", "C", "pending", 102),
            ("outcome", "C", "success", 201),
            ("intent", "U", "pending", 102),
            ("outcome", "U", "success", 200),
            ("outcome", "C", "refused", 403),
        ],
        "oldest first"
    );
    let ids: Vec<String> = found.iter().map(|(i, _)| i.clone()).collect();
    let [
        refused_id,
        update_id,
        update_intent_id,
        create_id,
        create_intent_id,
    ] = &ids[..]
    else {
        panic!("five write records: {found:?}");
    };
    let body_of = |wanted: &str| {
        found
            .iter()
            .find(|(i, _)| i == wanted)
            .map(|(_, b)| b.clone())
            .expect("stored")
    };

    let mut v = lead(&app, &idp, "cg-1", "X24", "caldicott-guardian").await;

    // "Who has looked at this record": each write in words, with its outcome.
    let page = v
        .get(&format!("{}/console/person?nhs={ANN}", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for (record, words, outcome) in [
        (
            create_intent_id,
            "about to create CarePlan (recorded before it was sent)",
            "pending (102)",
        ),
        (create_id, "created CarePlan", "success (201)"),
        (
            update_intent_id,
            "about to update CarePlan (recorded before it was sent)",
            "pending (102)",
        ),
        (update_id, "updated CarePlan", "success (200)"),
        (refused_id, "tried to create Goal", "refused (403)"),
    ] {
        let r = row(&page.body, record);
        assert!(r.contains(&format!("<td>{words}</td>")), "{words}: {r}");
        assert!(r.contains(&format!("<td>{outcome}</td>")), "{outcome}: {r}");
    }
    assert!(
        row(&page.body, update_id).contains("nurse-1"),
        "who wrote it"
    );

    // The audit search: what each write record is, and the refused one by its outcome.
    let search = v
        .get(&format!("{}/console/audit?nhs={ANN}", app.origin))
        .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.body);
    for (record, what) in [
        (
            create_intent_id,
            "POST /fhir/{type}: create CarePlan, intent",
        ),
        (create_id, "POST /fhir/{type}: create CarePlan, outcome"),
        (update_id, "PUT /fhir/{type}/{id}: update CarePlan, outcome"),
        (refused_id, "POST /fhir/{type}: create Goal, outcome"),
    ] {
        let r = row(&search.body, record);
        assert!(r.contains(&format!("<code>{what}</code>")), "{what}: {r}");
    }
    let only_refused = v
        .get(&format!(
            "{}/console/audit?nhs={ANN}&outcome=refused",
            app.origin
        ))
        .await;
    assert_eq!(only_refused.status, StatusCode::OK, "{}", only_refused.body);
    assert!(row(&only_refused.body, refused_id).contains("refused (403)"));
    assert!(
        !only_refused
            .body
            .contains(&format!("data-id=\"{update_id}\""))
    );

    // The record page of the update's outcome: what was written where, under which rule.
    let update = body_of(update_id);
    let w = update.write.as_ref().expect("a write");
    let record = v
        .get(&format!("{}/console/audit/{update_id}", app.origin))
        .await;
    assert_eq!(record.status, StatusCode::OK, "{}", record.body);
    let section = record
        .body
        .split("<dl class=\"summary\" id=\"write\">")
        .nth(1)
        .and_then(|s| s.split("</dl>").next())
        .unwrap_or_else(|| panic!("no write section: {}", record.body));
    assert!(record.body.contains("<h2>What was written</h2>"));
    assert_eq!(w.source.as_deref(), Some("region"));
    assert_eq!(w.version.as_deref(), Some("2"));
    for (term, value) in [
        ("Record of the write", "outcome: recorded before the answer"),
        ("Action", "U (update)"),
        ("Resource", &format!("CarePlan/{id}")),
        ("Target source", "region"),
        ("New version", "2"),
        (
            "Version read (If-Match)",
            w.read_version.as_deref().unwrap_or("—"),
        ),
        (
            "SHA-256 of what was sent",
            w.sha256.as_deref().expect("a hash"),
        ),
        ("Agreement", "test-shared-care"),
        ("Rule", "care-team-writes"),
    ] {
        assert!(section.contains(&item(term, value)), "{term}: {section}");
    }
    assert!(section.contains(&item("Version read (If-Match)", "1")));
    // The intent: recorded before anything was sent, the source still pending.
    let intent = v
        .get(&format!("{}/console/audit/{create_intent_id}", app.origin))
        .await;
    assert_eq!(intent.status, StatusCode::OK, "{}", intent.body);
    assert!(intent.body.contains(&item(
        "Record of the write",
        "intent: recorded before the write was sent to the source"
    )));
    assert!(intent.body.contains(&item("Action", "C (create)")));
    assert!(intent.body.contains(&item("Target source", "region")));
    assert!(intent.body.contains("<td>region</td><td>pending</td>"));
    // The refused write: what was asked and refused, with nothing written.
    let refusal = v
        .get(&format!("{}/console/audit/{refused_id}", app.origin))
        .await;
    assert_eq!(refusal.status, StatusCode::OK, "{}", refusal.body);
    assert!(refusal.body.contains(&item("Outcome", "refused (403)")));
    assert!(refusal.body.contains(&item("Action", "C (create)")));
    assert!(refusal.body.contains(&item("New version", "—")));
    // A read has no write section.
    let read_id = all
        .iter()
        .find(|(_, b)| b.method == "GET" && b.route == "/fhir/{type}/{id}")
        .map(|(i, _)| i.clone())
        .expect("the nurse's read");
    let plain = v
        .get(&format!("{}/console/audit/{read_id}", app.origin))
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert!(!plain.body.contains("id=\"write\""), "{}", plain.body);
}
