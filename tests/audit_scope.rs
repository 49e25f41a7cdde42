//! Who sees which audit records (issue 16, item 2) and the search by agreement (item 3), in
//! the IG console and in the AuditEvent API alike: an IG lead sees the accesses made by their
//! own organisation's staff and the accesses by anyone to the data their organisation
//! discloses; a region role sees everything. The demo's three providers (GP A81001,
//! community trust RY4, council LA001) as NDJSON sources under the shipped agreements, real
//! requests through the gateway, IG leads signed in through a real OpenID Connect provider;
//! on SQLite and on PostgreSQL. Expectations are computed from the stored records.

use reqwest::StatusCode;
use serde_json::{Value, json};

use concord::audit::Body;

use crate::agreements::shipped;
use crate::console::{Visitor, console_toml, sign_in};
use crate::console_audit::{Stored, listed, stored, walk};
use crate::support::app::{
    Policies, SourceSpec, StoreChoice, TestApp, matches, next_link, postgres,
};
use crate::support::oidc::{OidcProvider, ig_lead};

/// Known to the GP, the community trust and the council.
const ANN: &str = "9990465630";
/// Known to the GP alone.
const BEN: &str = "9996656063";
/// The region-wide role of these gateways (`[audit] region_roles`).
const REGION: &str = "caldicott-guardian";
const EMERGENCY: &str = "dsa-northshire-emergency-access";
const DIRECT_CARE: &str = "dsa-northshire-direct-care";

/// Which organisation controls each source's data, as the config says.
fn controller(source: &str) -> Option<&'static str> {
    match source {
        "gp" => Some("A81001"),
        "community" => Some("RY4"),
        "socialcare" => Some("LA001"),
        _ => None,
    }
}

/// The organisations whose data a record disclosed.
fn disclosers(b: &Body) -> Vec<&'static str> {
    b.disclosed
        .iter()
        .filter_map(|d| {
            let (_, id) = d.reference.split_once('/')?;
            controller(id.split_once('.')?.0)
        })
        .collect()
}

/// True when an IG lead of `org` may see the record: their staff's, or their data's.
fn in_scope(org: &str, b: &Body) -> bool {
    b.org.as_deref() == Some(org) || disclosers(b).contains(&org)
}

fn under(agreement: &str, b: &Body) -> bool {
    b.disclosed.iter().any(|d| &*d.agreement == agreement)
}

async fn world(store: StoreChoice) -> (OidcProvider, TestApp) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let app = TestApp::start_audited(
        vec![
            SourceSpec::ndjson("gp", "Riverside GP", "A81001", demo.join("gp")),
            SourceSpec::ndjson(
                "community",
                "Northshire Community",
                "RY4",
                demo.join("community"),
            ),
            SourceSpec::ndjson(
                "socialcare",
                "Northshire Social Care",
                "LA001",
                demo.join("socialcare"),
            ),
        ],
        store,
        "",
        Policies::Files(shipped()),
        &format!("region_roles = [\"{REGION}\"]"),
        &console_toml(&idp),
    )
    .await;
    (idp, app)
}

fn staff(app: &TestApp, user: &str, org: &str, role: &str, purpose: &str) -> String {
    app.token_with(&[
        ("sub", json!(user)),
        ("org", json!(org)),
        ("role", json!(role)),
        ("purpose_of_use", json!(purpose)),
    ])
}

async fn get(
    app: &TestApp,
    token: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let a = app.get_raw(path, &headers).await;
    (a.status, a.body)
}

/// The GP's clinician reads Ann's record, the community trust's breaks the glass on Ben's
/// (held by the GP alone), the council's social worker reads Ann's and the trust's nurse her
/// conditions. Returns the id of the break-glass record.
async fn traffic(app: &TestApp) -> String {
    let ann = app.patient_id(ANN).await;
    let ben = app.patient_id(BEN).await;
    let requests = [
        (
            staff(app, "dr-gp", "A81001", "clinician", "TREAT"),
            format!("Patient/{ann}/$everything"),
            None,
        ),
        (
            staff(app, "dr-ry4", "RY4", "clinician", "TREAT"),
            format!("Patient/{ben}/$everything"),
            Some("Unconscious in the emergency department"),
        ),
        (
            staff(app, "sw-la", "LA001", "social-worker", "CAREMGT"),
            format!("Patient/{ann}/$everything"),
            None,
        ),
        (
            staff(app, "nurse-ry4", "RY4", "nurse", "TREAT"),
            format!("Condition?patient={ann}"),
            None,
        ),
    ];
    for (token, path, glass) in &requests {
        let extra: Vec<(&str, &str)> = glass.iter().map(|r| ("X-Break-Glass-Reason", *r)).collect();
        let (status, body) = get(app, token, path, &extra).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let all = stored(app).await;
    let glass = all
        .iter()
        .find(|s| s.body.user.as_deref() == Some("dr-ry4"))
        .expect("the break-glass record");
    // What the scope tests rest on: the trust's staff disclosed the GP's data, and no one
    // else's, under the emergency agreement.
    assert_eq!(glass.body.org.as_deref(), Some("RY4"));
    assert!(!glass.body.disclosed.is_empty());
    assert!(
        disclosers(&glass.body).iter().all(|o| *o == "A81001"),
        "{:?}",
        glass.body.disclosed
    );
    assert!(under(EMERGENCY, &glass.body));
    let council = all
        .iter()
        .find(|s| s.body.user.as_deref() == Some("sw-la"))
        .expect("the council's record");
    assert!(
        disclosers(&council.body).contains(&"A81001"),
        "the council read the GP's data too"
    );
    glass.id.clone()
}

/// An IG lead of `org` (or the region role), signed in to the console.
async fn console_user(app: &TestApp, idp: &OidcProvider, org: &str, role: &str) -> Visitor {
    let mut user = ig_lead();
    user.insert("sub".into(), format!("ig-{org}").into());
    user.insert("org".into(), org.into());
    user.insert("role".into(), role.into());
    idp.set_user(user);
    let mut v = Visitor::new();
    let back = sign_in(app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    v
}

/// The ids of the stored records `select` picks, newest first.
fn ids(all: &[Stored], select: impl Fn(&Body) -> bool) -> Vec<String> {
    all.iter()
        .filter(|s| select(&s.body))
        .map(|s| s.id.clone())
        .collect()
}

/// Every AuditEvent id of an API search, following `next` links.
async fn api_walk(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut url = format!("AuditEvent?_count=7&{query}");
    let mut out = Vec::new();
    loop {
        let (status, page) = get(app, token, &url, &[]).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        out.extend(
            matches(&page)
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        assert!(out.len() < 1000, "paging does not end");
        match next_link(&page) {
            Some(next) => url = next,
            None => return out,
        }
    }
}

async fn scope_and_agreements(store: StoreChoice) {
    let (idp, app) = world(store).await;
    let glass = traffic(&app).await;

    // Each organisation's IG lead, in the console and the API: exactly the accesses by their
    // staff and to their data. The GP's sees the trust's break-glass on its patient; the
    // council's, whose data it did not disclose, does not; nor does an organisation with
    // neither staff nor data in the log.
    for (org, sees_glass) in [
        ("A81001", true),
        ("RY4", true),
        ("LA001", false),
        ("X24", false),
    ] {
        let mut v = console_user(&app, &idp, org, "ig-lead").await;
        let want = ids(&stored(&app).await, |b| in_scope(org, b));
        let (got, _) = walk(&app, &mut v, "").await;
        assert_eq!(got, want, "{org}: the console's search");
        assert_eq!(got.contains(&glass), sees_glass, "{org}");
        let page = v
            .get(&format!("{}/console/audit/{glass}", app.origin))
            .await;
        let status = if sees_glass {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(page.status, status, "{org}: {}", page.body);

        let token = app.token_with(&[
            ("sub", json!(format!("ig-{org}"))),
            ("org", json!(org)),
            ("role", json!("ig-lead")),
            ("purpose_of_use", json!("HOPERAT")),
            ("scope", json!("user/AuditEvent.rs")),
        ]);
        let want = ids(&stored(&app).await, |b| in_scope(org, b));
        let got = api_walk(&app, &token, "").await;
        assert_eq!(got, want, "{org}: the AuditEvent search");
        let (status, event) = get(&app, &token, &format!("AuditEvent/{glass}"), &[]).await;
        assert_eq!(status, status_of(sees_glass), "{org}: {event}");
        // A filter narrows within the scope, never beyond it: the trust's staff's accesses.
        let want = ids(&stored(&app).await, |b| {
            in_scope(org, b) && b.org.as_deref() == Some("RY4")
        });
        let got = api_walk(&app, &token, "agent-org=RY4").await;
        assert_eq!(got, want, "{org}: agent-org=RY4");
    }

    // The region role sees every record, in both.
    let mut v = console_user(&app, &idp, "X24", REGION).await;
    let want = ids(&stored(&app).await, |_| true);
    let (got, _) = walk(&app, &mut v, "").await;
    assert_eq!(got, want, "the region's console search");
    let region = app.token_with(&[
        ("sub", json!("icb-ig")),
        ("org", json!("X24")),
        ("role", json!(REGION)),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    let want = ids(&stored(&app).await, |_| true);
    assert_eq!(
        api_walk(&app, &region, "").await,
        want,
        "the region's AuditEvent search"
    );

    // By agreement: the console's search and its CSV, and the API's `policy`, within scope.
    let mut gp = console_user(&app, &idp, "A81001", "ig-lead").await;
    let want = ids(&stored(&app).await, |b| {
        in_scope("A81001", b) && under(EMERGENCY, b)
    });
    assert_eq!(want, vec![glass.clone()]);
    let (got, _) = walk(&app, &mut gp, &format!("agreement={EMERGENCY}")).await;
    assert_eq!(got, want);
    let mut council = console_user(&app, &idp, "LA001", "ig-lead").await;
    let page = council
        .get(&format!(
            "{}/console/audit?agreement={EMERGENCY}",
            app.origin
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(listed(&page.body).is_empty(), "{}", page.body);
    assert!(page.body.contains("id=\"no-results\""));

    let want = ids(&stored(&app).await, |b| {
        in_scope("A81001", b) && under(DIRECT_CARE, b)
    });
    assert!(!want.is_empty());
    let csv = gp
        .get(&format!(
            "{}/console/audit.csv?agreement={DIRECT_CARE}",
            app.origin
        ))
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    let got: Vec<String> = csv
        .body
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut cells = l.splitn(4, ',');
            let (_, chain, seq) = (cells.next(), cells.next(), cells.next());
            format!("{}.{}", chain.expect("chain"), seq.expect("seq"))
        })
        .collect();
    assert_eq!(got, want, "the CSV of a search by agreement");

    let page = gp
        .get(&format!(
            "{}/console/audit?agreement=Not%20An%20Id",
            app.origin
        ))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("the agreement must be"), "{}", page.body);

    let token = app.token_with(&[
        ("sub", json!("ig-A81001")),
        ("org", json!("A81001")),
        ("role", json!("ig-lead")),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    for query in [EMERGENCY, DIRECT_CARE] {
        let want = ids(&stored(&app).await, |b| {
            in_scope("A81001", b) && under(query, b)
        });
        let got = api_walk(&app, &token, &format!("policy={query}")).await;
        assert_eq!(got, want, "policy={query}");
    }
    let want = ids(&stored(&app).await, |b| {
        under(EMERGENCY, b) || under(DIRECT_CARE, b)
    });
    let got = api_walk(&app, &region, &format!("policy={EMERGENCY},{DIRECT_CARE}")).await;
    assert_eq!(got, want, "alternatives");
    // A role that is neither an IG lead nor a region role reads nothing.
    let other = app.token_with(&[
        ("role", json!("auditor")),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    let (status, _) = get(&app, &other, "AuditEvent", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

fn status_of(sees: bool) -> StatusCode {
    if sees {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

#[tokio::test]
async fn ig_leads_see_their_staff_and_their_data_and_search_by_agreement() {
    scope_and_agreements(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn ig_leads_see_their_staff_and_their_data_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    scope_and_agreements(StoreChoice::Postgres(db.url().to_owned())).await;
}
