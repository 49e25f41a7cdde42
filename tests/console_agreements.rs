//! The agreements pages (issue 16, item 6): the gateway started over agreement files written
//! by the test with dates computed from today, an IG lead signed in through a real OpenID
//! Connect provider, and the pages read as the IG lead would read them.

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::civil::Date;
use reqwest::StatusCode;

use concord::policy::PolicySet;
use concord::policy::live::today;

use crate::console::{Visitor, console_toml, sign_in};
use crate::support::app::{Policies, SourceSpec, StoreChoice, TestApp};
use crate::support::oidc::OidcProvider;

/// An agreement file: `head` holds the lines of `[agreement]` after its id, `rules` the
/// `[[rule]]` tables.
fn file(id: &str, head: &str, parties: &str, rules: &str) -> (String, String) {
    let text = format!(
        "[agreement]\nid = \"{id}\"\ntitle = \"Title of {id}\"\nversion = \"2.1.0\"\n\
         legal_basis = [\"UK GDPR 6(1)(e)\", \"UK GDPR 9(2)(h)\"]\nowner = \"Owner of {id}\"\n{head}\n\n\
         [parties]\n{parties}\n\n{rules}"
    );
    (format!("{id}.toml"), text)
}

const STAFF: &str = "disclosers = [\"A81001\", \"RY4\"]\nrecipients = [\"A81001\"]";
const ONE_RULE: &str = "[[rule]]\nid = \"clinicians\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n";

/// The test's agreements: one in force for years, one lapsing in ten days, one past its
/// review date, one lapsed, one not yet valid, one suspended, and a patient-access agreement.
fn agreements(today: Date) -> Vec<(String, String)> {
    let far = "valid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"";
    let in_ten = today.checked_add(10.days()).expect("a date");
    let five_ago = today.checked_sub(5.days()).expect("a date");
    let three_ago = today.checked_sub(3.days()).expect("a date");
    let in_twenty = today.checked_add(20.days()).expect("a date");
    vec![
        file(
            "test-direct-care",
            &format!("status = \"active\"\n{far}\nreview_by = \"2099-01-01\""),
            STAFF,
            "[[rule]]\nid = \"clinicians\"\npurpose_of_use = [\"TREAT\", \"CAREMGT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n\n\
             [[rule]]\nid = \"nurses-results\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"nurse\"]\nresources = [\"Observation\"]\n\
             exclude_labels = [\"HIV\", \"SEX\"]\nrequires_care_relationship = true\n\
             where = \"status in ('final' | 'amended')\"\nredact = [\"note\"]\n",
        ),
        file(
            "test-lapsing",
            &format!(
                "status = \"active\"\nvalid_from = \"2020-01-01\"\nvalid_until = \"{in_ten}\""
            ),
            STAFF,
            ONE_RULE,
        ),
        file(
            "test-review-overdue",
            &format!("status = \"active\"\n{far}\nreview_by = \"{five_ago}\""),
            STAFF,
            ONE_RULE,
        ),
        file(
            "test-lapsed",
            &format!(
                "status = \"active\"\nvalid_from = \"2020-01-01\"\nvalid_until = \"{three_ago}\""
            ),
            STAFF,
            ONE_RULE,
        ),
        file(
            "test-not-yet",
            &format!(
                "status = \"active\"\nvalid_from = \"{in_twenty}\"\nvalid_until = \"2099-12-31\""
            ),
            STAFF,
            ONE_RULE,
        ),
        file(
            "test-suspended",
            &format!("status = \"suspended\"\n{far}"),
            STAFF,
            ONE_RULE,
        ),
        file(
            "test-patient-access",
            &format!("status = \"active\"\naccess = \"patient\"\n{far}"),
            "disclosers = [\"A81001\"]",
            "[[rule]]\nid = \"own-record\"\npurpose_of_use = [\"PATRQT\"]\nresources = [\"*\"]\n\n\
             [[rule]]\nid = \"carers\"\npurpose_of_use = [\"FAMRQT\"]\nrelationships = [\"DAU\", \"SON\"]\nresources = [\"CarePlan\"]\n",
        ),
    ]
}

/// A gateway over the demo GP with these agreements and `console_extra` in `[console]`,
/// and its IG lead signed in.
async fn world(
    files: Vec<(String, String)>,
    console_extra: &str,
) -> (OidcProvider, TestApp, Visitor) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let gp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/gp");
    let app = TestApp::start_config(
        vec![SourceSpec::ndjson("gp", "Riverside GP", "A81001", gp)],
        StoreChoice::Sqlite,
        "",
        Policies::Files(files),
        &format!("{}{console_extra}", console_toml(&idp)),
    )
    .await;
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    (idp, app, v)
}

/// A time as the console shows it.
fn readable(rfc3339: &str) -> String {
    let t: jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The rows of a table whose `<tr>`s carry `attribute`, by its value.
fn rows(body: &str, attribute: &str) -> BTreeMap<String, String> {
    body.split(&format!("<tr {attribute}=\""))
        .skip(1)
        .map(|s| {
            let (key, rest) = s.split_once('"').unwrap_or_default();
            let row = rest.split("</tr>").next().unwrap_or_default();
            (key.to_owned(), row.to_owned())
        })
        .collect()
}

/// The text of the element with this id (up to its first closing `</div>`, `</p>` or `</dd>`).
fn section<'a>(body: &'a str, id: &str, end: &str) -> &'a str {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}: {body}"));
    let rest = &body[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_agreements_page_flags_what_lapses_or_is_overdue_and_shows_who_may_see_what() {
    let today = today();
    let (_idp, app, mut v) = world(agreements(today), "").await;
    let records = |app: &TestApp| {
        let store = app.state.door.federation().store().clone();
        async move {
            use futures_util::TryStreamExt;
            let rows: Vec<concord::audit::Record> =
                store.audit_rows().try_collect().await.expect("rows");
            rows.len()
        }
    };
    let recorded = records(&app).await;
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("href=\"/console/agreements\""),
        "{}",
        home.body
    );
    let page = v.get(&format!("{}/console/agreements", app.origin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("style="), "no inline style");
    assert!(!page.body.contains("<script"), "no script");
    let body = &page.body;

    let set = app.state.door.policies().current();
    let agreements = rows(body, "data-id");
    let ids: Vec<&String> = agreements.keys().collect();
    let want: Vec<&str> = set.agreements.iter().map(|a| &*a.id).collect();
    assert_eq!(ids, want, "every agreement, by id");
    let row = |id: &str| agreements[id].as_str();
    for a in &set.agreements {
        for part in [
            a.title.as_str(),
            "2.1.0",
            "UK GDPR 6(1)(e), UK GDPR 9(2)(h)",
            &format!("Owner: Owner of {}", a.id),
            "Disclosers: A81001",
            &format!("{} to {}", a.valid_from, a.valid_until),
        ] {
            assert!(
                row(&a.id).contains(part),
                "{}: {part}: {}",
                a.id,
                row(&a.id)
            );
        }
    }
    let in_ten = today.checked_add(10.days()).expect("a date");
    let three_ago = today.checked_sub(3.days()).expect("a date");
    let five_ago = today.checked_sub(5.days()).expect("a date");
    assert!(
        row("test-lapsing").contains(&format!("Lapses on {in_ten}, in 10 days")),
        "{}",
        row("test-lapsing")
    );
    assert!(row("test-review-overdue").contains(&format!("Review overdue: due {five_ago}")));
    assert!(row("test-review-overdue").contains(">In force<"));
    assert!(row("test-lapsed").contains(&format!("Lapsed on {three_ago}: not in force")));
    assert!(row("test-suspended").contains("Not in force: suspended"));
    let in_twenty = today.checked_add(20.days()).expect("a date");
    assert!(row("test-not-yet").contains(&format!("Not yet in force: from {in_twenty}")));
    let steady = row("test-direct-care");
    assert!(steady.contains(">In force<"), "{steady}");
    assert!(
        !steady.contains("Lapse") && !steady.contains("overdue"),
        "{steady}"
    );
    assert!(steady.contains("Recipients: A81001"));
    assert!(row("test-patient-access").contains("Recipients: the people themselves"));

    // What needs attention is listed at the top, and only that.
    let attention = section(body, "attention", "</div>");
    for id in [
        "test-lapsing",
        "test-review-overdue",
        "test-lapsed",
        "test-not-yet",
    ] {
        assert!(
            attention.contains(&format!(">{id}</a>")),
            "{id}: {attention}"
        );
    }
    for id in ["test-direct-care", "test-patient-access", "test-suspended"] {
        assert!(
            !attention.contains(&format!(">{id}</a>")),
            "{id}: {attention}"
        );
    }

    // Who may see what: one row per rule of every agreement.
    let matrix = rows(body, "data-rule");
    let rules: usize = set.agreements.iter().map(|a| a.rules.len()).sum();
    assert_eq!(matrix.len(), rules);
    let nurses = &matrix["test-direct-care/nurses-results"];
    for part in [
        "<td>A81001, RY4</td>",
        "<td>A81001</td>",
        "<td>nurse</td>",
        "<td>TREAT</td>",
        "<td>Observation</td>",
        "<td>HIV, SEX</td>",
    ] {
        assert!(nurses.contains(part), "{part}: {nurses}");
    }
    let clinicians = &matrix["test-direct-care/clinicians"];
    assert!(
        clinicians.contains("<td>TREAT, CAREMGT</td>"),
        "{clinicians}"
    );
    assert!(clinicians.contains("every type (*)"), "{clinicians}");
    assert!(matrix["test-lapsed/clinicians"].contains("Not in force"));
    assert!(!matrix["test-lapsing/clinicians"].contains("Not in force"));
    assert!(matrix["test-patient-access/own-record"].contains("The person themselves"));
    assert!(matrix["test-patient-access/carers"].contains("carer: DAU, SON"));

    // The set in force: its hash and when it was loaded; no reload has failed.
    let state = section(body, "policy-set", "</dl>");
    assert!(state.contains(&format!("<code id=\"policy-hash\">{}</code>", set.hash)));
    let loaded = readable(&app.state.door.policies().status().loaded_at);
    assert!(
        state.contains(&format!("<dd id=\"loaded-at\">{loaded}</dd>")),
        "{state}"
    );
    assert!(state.contains("No reload has failed"), "{state}");
    assert!(!body.contains("id=\"reload-failed\""));
    let warnings = section(body, "warnings", "</ul>");
    assert!(
        warnings.contains("<li>test-lapsing.toml:"),
        "the file, not the server's directories: {warnings}"
    );

    // One agreement in full, with its rules' conditions; an unknown one is not found.
    let one = v
        .get(&format!(
            "{}/console/agreements/test-direct-care",
            app.origin
        ))
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    for part in [
        "<h1>Title of test-direct-care</h1>",
        "The person must be known to the user's own organisation.",
        "Only where <code>status in (&#39;final&#39; | &#39;amended&#39;)</code>",
        "Removed before disclosure: note",
        ">In force<",
    ] {
        assert!(one.body.contains(part), "{part}: {}", one.body);
    }
    let lapsing = v
        .get(&format!("{}/console/agreements/test-lapsing", app.origin))
        .await;
    assert!(
        lapsing
            .body
            .contains(&format!("Lapses on {in_ten}, in 10 days"))
    );
    let missing = v
        .get(&format!(
            "{}/console/agreements/no-such-agreement",
            app.origin
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The pages name no person: viewing them is not an audit record.
    assert_eq!(records(&app).await, recorded, "no record of these views");

    // Without a session, nothing.
    let mut anonymous = Visitor::new();
    for path in ["/console/agreements", "/console/agreements/test-lapsing"] {
        let page = anonymous.get(&format!("{}{path}", app.origin)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/console/sign-in");
    }
}

#[tokio::test]
async fn after_a_failed_reload_the_page_says_why_and_the_set_still_in_force() {
    let (_idp, app, mut v) = world(agreements(today()), "").await;
    let policies = app.state.door.policies().clone();
    let hash = policies.current().hash.clone();
    let broken = app.dir().join("policies").join("zz-broken.toml");
    std::fs::write(&broken, "[agreement]\nid = \"half-written\"\n").expect("write");
    assert!(policies.reload().is_err(), "the broken file does not load");

    let page = v.get(&format!("{}/console/agreements", app.origin)).await;
    assert_eq!(page.status, StatusCode::OK);
    let failed = section(&page.body, "reload-failed", "</div>");
    assert!(failed.contains("zz-broken.toml"), "{failed}");
    let failed_at = readable(&policies.status().failed_at.expect("when it failed"));
    assert!(
        failed.contains(&format!("A reload failed at {failed_at}")),
        "{failed}"
    );
    let state = section(&page.body, "policy-set", "</dl>");
    assert!(
        state.contains(&format!("<code id=\"policy-hash\">{hash}</code>")),
        "{state}"
    );
    assert!(state.contains("Failed</strong> at"), "{state}");
    assert!(
        !page.body.contains("half-written</a>"),
        "the broken agreement is not listed"
    );

    // Fixed: the failure is gone, and the set in force is the same files' again.
    std::fs::remove_file(&broken).expect("remove");
    assert_eq!(
        policies.reload().ok(),
        Some(false),
        "the same set as before"
    );
    let page = v.get(&format!("{}/console/agreements", app.origin)).await;
    assert!(!page.body.contains("id=\"reload-failed\""), "{}", page.body);
    assert!(page.body.contains("No reload has failed"));
}

#[tokio::test]
async fn the_demo_agreements_are_all_shown_and_the_window_is_the_configs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("policies/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        files.push((name, std::fs::read_to_string(&path).expect("read")));
    }
    let today = today();
    let demo = PolicySet::load(&dir, today).expect("the demo set loads");
    // Ten years' notice: every demo agreement in force lapses within it.
    let (_idp, app, mut v) = world(files, "lapsing_within_days = 3650\n").await;
    let page = v.get(&format!("{}/console/agreements", app.origin)).await;
    assert_eq!(page.status, StatusCode::OK);
    let agreements = rows(&page.body, "data-id");
    let matrix = rows(&page.body, "data-rule");
    assert_eq!(agreements.len(), demo.agreements.len());
    for a in &demo.agreements {
        let row = &agreements[&*a.id];
        assert!(row.contains(&a.title), "{}", a.id);
        assert!(row.contains(&a.legal_basis.join(", ")), "{}: {row}", a.id);
        if a.in_force(today) {
            assert!(
                row.contains(&format!("Lapses on {}", a.valid_until)),
                "{}: {row}",
                a.id
            );
        }
        for r in &a.rules {
            let rule = &matrix[&format!("{}/{}", a.id, r.id)];
            assert!(rule.contains(&r.purpose_of_use.join(", ")), "{rule}");
        }
    }
}
