//! The IG console's audit search (issue 16, item 3) and who sees what (item 2, in part): real
//! FHIR requests through the gateway make the records, an IG lead signs in through a real
//! OpenID Connect provider and searches, pages, opens and exports them. Expectations are
//! computed from the store's own records, read just before each request.

use futures_util::TryStreamExt;
use reqwest::StatusCode;
use serde_json::json;

use concord::audit::Body;

use crate::console::{Visitor, console_toml, gateway, sign_in};
use crate::support::app::{StoreChoice, TestApp, postgres};
use crate::support::oidc::{OidcProvider, ig_lead};

/// Known to the demo GP.
const ANN: &str = "9990465630";
const BEN: &str = "9996656063";
/// A break-glass reason a spreadsheet would run as a formula.
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"x\")";

/// One stored record.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) body: Body,
}

/// Every record in the store, newest first.
pub(crate) async fn stored(app: &TestApp) -> Vec<Stored> {
    let store = app.state.door.federation().store();
    let rows: Vec<concord::audit::Record> = store.audit_rows().try_collect().await.expect("rows");
    let mut out: Vec<(i64, String, i64, Stored)> = rows
        .into_iter()
        .map(|r| {
            let body: Body = serde_json::from_str(&r.body).expect("a body");
            let id = format!("{}.{}", r.chain, r.seq);
            (body.recorded_us, r.chain, r.seq, Stored { id, body })
        })
        .collect();
    out.sort_by(|a, b| (b.0, &b.1, b.2).cmp(&(a.0, &a.1, a.2)));
    out.into_iter().map(|(_, _, _, s)| s).collect()
}

/// The ids of the stored records `select` picks, newest first.
async fn expected(app: &TestApp, select: impl Fn(&Body) -> bool) -> Vec<String> {
    stored(app)
        .await
        .into_iter()
        .filter(|s| select(&s.body))
        .map(|s| s.id)
        .collect()
}

/// The gateway of these tests: the demo GP, a console whose region-wide role is
/// `caldicott-guardian`.
async fn world(store: StoreChoice) -> (OidcProvider, TestApp) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let toml = format!(
        "{}region_roles = [\"caldicott-guardian\"]\n",
        console_toml(&idp)
    );
    let app = gateway(store, "", &toml).await;
    (idp, app)
}

async fn fhir(app: &TestApp, token: &str, path: &str, extra: &[(&str, &str)]) -> StatusCode {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    app.get_raw(path, &headers).await.status
}

/// The gateway ids of the two people, after traffic: 52 reads of Ann's record by the GP's
/// clinician (more than a page), one of Ben's, a receptionist refused, a break-glass read,
/// and a clinician of another organisation (RY4).
async fn traffic(app: &TestApp) -> (String, String) {
    let ann = app.patient_id(ANN).await;
    let ben = app.patient_id(BEN).await;
    let gp = app.token_with(&[]);
    for _ in 0..52 {
        assert_eq!(
            fhir(app, &gp, &format!("Patient/{ann}"), &[]).await,
            StatusCode::OK
        );
    }
    let everything = format!("Patient/{ben}/$everything");
    assert_eq!(fhir(app, &gp, &everything, &[]).await, StatusCode::OK);
    let receptionist = app.token_with(&[("sub", json!("rec-1")), ("role", json!("receptionist"))]);
    let refused = fhir(app, &receptionist, &format!("Patient/{ann}"), &[]).await;
    assert!(refused.is_client_error(), "{refused}");
    let glass = [("X-Break-Glass-Reason", FORMULA)];
    fhir(app, &gp, &format!("Patient/{ann}"), &glass).await;
    let other = app.token_with(&[("sub", json!("dr-ry4")), ("org", json!("RY4"))]);
    fhir(app, &other, &format!("Patient/{ann}"), &[]).await;
    (ann, ben)
}

/// The record ids a results page lists, in order.
pub(crate) fn listed(body: &str) -> Vec<String> {
    body.split("<tr data-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The href of the page's "Older" link, HTML-unescaped.
fn older(body: &str) -> Option<String> {
    let at = body.find("id=\"older\" href=\"")? + 17;
    Some(body[at..].split('"').next()?.replace("&amp;", "&"))
}

/// Every record a search lists, following "Older" links.
pub(crate) async fn walk(app: &TestApp, v: &mut Visitor, query: &str) -> (Vec<String>, usize) {
    let mut url = format!("{}/console/audit?{query}", app.origin);
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = v.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.body);
        pages += 1;
        let found = listed(&page.body);
        assert!(found.len() <= 50, "at most 50 a page");
        ids.extend(found);
        assert!(pages < 20, "paging does not end");
        match older(&page.body) {
            Some(next) => url = format!("{}{next}", app.origin),
            None => return (ids, pages),
        }
    }
}

/// An IG lead of the GP (A81001), signed in.
async fn gp_ig_lead(app: &TestApp) -> Visitor {
    let mut v = Visitor::new();
    let back = sign_in(app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    v
}

fn own_org(b: &Body) -> bool {
    b.org.as_deref() == Some("A81001")
}

async fn searches_page_filter_and_scope(store: StoreChoice) {
    let (_idp, app) = world(store).await;
    let (ann, _ben) = traffic(&app).await;
    let mut v = gp_ig_lead(&app).await;
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("href=\"/console/audit\""),
        "{}",
        home.body
    );

    // By person: exactly Ann's records of the GP's staff, newest first, over two pages.
    let want = expected(&app, |b| {
        own_org(b) && b.person.as_deref() == Some(ann.as_str())
    })
    .await;
    assert!(want.len() > 50, "{}", want.len());
    let (got, pages) = walk(&app, &mut v, &format!("nhs={ANN}")).await;
    assert_eq!(got, want, "newest first, each once");
    assert_eq!(pages, 2);

    // Everything the user may see: their organisation's staff only, never RY4's.
    let want = expected(&app, own_org).await;
    let (got, _) = walk(&app, &mut v, "").await;
    assert_eq!(got, want);

    for (query, select) in [
        (
            "outcome=refused",
            (|b: &Body| b.outcome == "refused") as fn(&Body) -> bool,
        ),
        ("purpose=ETREAT", |b: &Body| {
            b.purpose.as_deref() == Some("ETREAT")
        }),
        ("review=break-glass", |b: &Body| {
            b.review.as_deref() == Some("break-glass") || b.purpose.as_deref() == Some("ETREAT")
        }),
        ("from=2000-01-01&to=2099-12-31&user=rec-1", |b: &Body| {
            b.user.as_deref() == Some("rec-1")
        }),
        ("from=2099-01-01", |_: &Body| false),
        ("to=2000-01-01", |_: &Body| false),
    ] {
        let want = expected(&app, |b| own_org(b) && select(b)).await;
        let (got, _) = walk(&app, &mut v, query).await;
        assert_eq!(got, want, "{query}");
        if query.starts_with("outcome") || query.starts_with("purpose") {
            assert!(!got.is_empty(), "{query} finds something");
        }
    }

    // Another organisation's record is not found; one's own opens in full.
    let all = stored(&app).await;
    let theirs = all
        .iter()
        .find(|s| s.body.org.as_deref() == Some("RY4"))
        .expect("RY4's record");
    let page = v
        .get(&format!("{}/console/audit/{}", app.origin, theirs.id))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let mine = all
        .iter()
        .find(|s| {
            own_org(&s.body)
                && !s.body.disclosed.is_empty()
                && s.body.person.as_deref() == Some(ann.as_str())
        })
        .expect("a disclosure");
    let page = v
        .get(&format!("{}/console/audit/{}", app.origin, mine.id))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let d = &mine.body.disclosed[0];
    for part in [
        &*d.agreement,
        &*d.rule,
        &*d.reference,
        mine.body.policy_hash.as_str(),
        ANN,
        "Previous hash",
        "dr-test",
    ] {
        assert!(page.body.contains(part), "{part}: {}", page.body);
    }
    assert!(
        page.body.contains("<td>gp</td><td>ok</td>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn an_ig_lead_searches_pages_filters_and_sees_only_their_organisations_staff() {
    searches_page_filter_and_scope(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn the_console_audit_search_works_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    searches_page_filter_and_scope(StoreChoice::Postgres(db.url().to_owned())).await;
}

#[tokio::test]
async fn a_region_wide_role_sees_every_organisation_and_exports_csv_with_formulas_defused() {
    let (idp, app) = world(StoreChoice::Sqlite).await;
    let (ann, _) = traffic(&app).await;
    let mut user = ig_lead();
    user.insert("sub".into(), "icb-ig-1".into());
    user.insert("org".into(), "X24".into());
    user.insert("role".into(), "caldicott-guardian".into());
    idp.set_user(user);
    let mut v = Visitor::new();
    assert_eq!(sign_in(&app, &mut v).await.status, StatusCode::OK);

    let want = expected(&app, |b| b.person.as_deref() == Some(ann.as_str())).await;
    let (got, _) = walk(&app, &mut v, &format!("nhs={ANN}")).await;
    assert_eq!(got, want);
    let theirs = stored(&app)
        .await
        .into_iter()
        .find(|s| s.body.org.as_deref() == Some("RY4"))
        .expect("RY4's record");
    assert!(got.contains(&theirs.id), "the region sees RY4's staff");
    let page = v
        .get(&format!("{}/console/audit/{}", app.origin, theirs.id))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    let want = expected(&app, |b| b.purpose.as_deref() == Some("ETREAT")).await;
    assert_eq!(want.len(), 1);
    let csv = v
        .get(&format!("{}/console/audit.csv?purpose=ETREAT", app.origin))
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("recorded,chain,seq,outcome"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 2, "{}", csv.body);
    let (chain, seq) = want[0].rsplit_once('.').expect("an id");
    assert!(
        lines[1].contains(&format!(",{chain},{seq},")),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("\"'=HYPERLINK(\"\"http://evil.example\"\""),
        "the formula is defused: {}",
        lines[1]
    );
    // The whole log: every record once, the export's own record included (it is kept
    // before the first row leaves).
    let csv = v.get(&format!("{}/console/audit.csv", app.origin)).await;
    let rows = csv.body.split("\r\n").filter(|l| !l.is_empty()).count();
    assert_eq!(
        rows,
        stored(&app).await.len() + 1,
        "a header and every record"
    );
}

#[tokio::test]
async fn bad_input_gives_the_form_back_and_every_view_is_audited() {
    let (_idp, app) = world(StoreChoice::Sqlite).await;
    let (ann, _) = traffic(&app).await;
    let mut anonymous = Visitor::new();
    let page = anonymous
        .get(&format!("{}/console/audit?nhs={ANN}", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "no session, no search");
    assert_eq!(page.location(), "/console/sign-in");
    let csv = anonymous
        .get(&format!("{}/console/audit.csv", app.origin))
        .await;
    assert_eq!(csv.status, StatusCode::SEE_OTHER);

    let mut v = gp_ig_lead(&app).await;
    for (query, message) in [
        ("nhs=9990465631", "NHS number must be 10 digits"),
        ("nhs=%3Cscript%3E", "NHS number must be 10 digits"),
        ("from=31%2F12%2F2026", "date from must be a date"),
        ("to=2026-02-30", "date to must be a date"),
        ("outcome=maybe", "outcome must be success, refused or error"),
        ("purpose=%22%3E%3Cb%3E", "purpose of use must be a code"),
        ("cursor=bm90LWEtY3Vyc29y", "not made by this console"),
    ] {
        for route in ["audit", "audit.csv"] {
            if route == "audit.csv" && query.starts_with("cursor") {
                continue; // the export ignores the cursor
            }
            let page = v
                .get(&format!("{}/console/{route}?{query}", app.origin))
                .await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{route}?{query}");
            assert!(page.body.contains("id=\"audit-search\""), "the form again");
            assert!(page.body.contains(message), "{query}: {}", page.body);
            assert!(!page.body.contains("<script"), "escaped");
            assert!(!page.body.contains("<b>"), "escaped");
        }
    }
    let page = v
        .get(&format!("{}/console/audit/not-a-record", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    // Each mistake at its field, all of them at once, in the form's order, the NHS.UK way;
    // a cursor the console did not make is summarised, at no field.
    for (query, fields, messages) in [
        (
            "nhs=9990465631",
            &["f-nhs"][..],
            &["NHS number must be 10 digits"][..],
        ),
        (
            "from=yesterday",
            &["f-from"][..],
            &["the date from must be a date"][..],
        ),
        (
            "outcome=maybe&to=2026-11-01&from=2026-11-02&nhs=1234567890",
            &["f-nhs", "f-to", "f-outcome"][..],
            &[
                "NHS number must be 10 digits",
                "the date to must be the same as or after the date from",
                "the outcome must be",
            ][..],
        ),
        (
            "user=u&agreement=Not%20An%20Id&from=2026-01-01&to=2026-02-30",
            &["f-to", "f-agreement"][..],
            &["the date to must be a date", "the agreement must be"][..],
        ),
        ("cursor=bm90LWEtY3Vyc29y", &[][..], &[][..]),
    ] {
        let page = v
            .get(&format!("{}/console/audit?{query}", app.origin))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        if fields.is_empty() {
            assert!(page.body.contains("nhsuk-error-summary"), "{}", page.body);
            assert!(!page.body.contains("aria-invalid"), "no field is wrong");
            assert!(!page.body.contains("<a href=\"#f-"), "nothing to link to");
        } else {
            page.assert_mistakes(fields, messages);
        }
        assert!(
            page.body.contains("novalidate"),
            "the server says what is wrong"
        );
    }
    // A right search has no summary and no field marked.
    let page = v
        .get(&format!(
            "{}/console/audit?from=2026-11-01&to=2026-11-01",
            app.origin
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("nhsuk-error"), "{}", page.body);
    assert!(!page.body.contains("aria-invalid"), "{}", page.body);

    // Each view and export is a record, by the console user, about the person it names.
    let before = stored(&app).await.len();
    let page = v
        .get(&format!("{}/console/audit?nhs={ANN}", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let first = listed(&page.body)[0].clone();
    v.get(&format!("{}/console/audit/{first}", app.origin))
        .await;
    v.get(&format!("{}/console/audit.csv?nhs={ANN}", app.origin))
        .await;
    let all = stored(&app).await;
    assert_eq!(all.len(), before + 3);
    let views: Vec<&Body> = all[..3].iter().map(|s| &s.body).collect();
    let routes: Vec<&str> = views.iter().rev().map(|b| b.route.as_str()).collect();
    assert_eq!(
        routes,
        [
            "/console/audit",
            "/console/audit/{id}",
            "/console/audit.csv"
        ]
    );
    for b in views {
        assert_eq!(b.user.as_deref(), Some("ig-lead-1"));
        assert_eq!(b.role.as_deref(), Some("ig-lead"));
        assert_eq!(b.org.as_deref(), Some("A81001"));
        assert_eq!(b.person.as_deref(), Some(ann.as_str()));
        assert_eq!(b.outcome, "success");
    }
    // A refused search is recorded too, and names nobody.
    v.get(&format!("{}/console/audit?outcome=maybe", app.origin))
        .await;
    let newest = stored(&app).await.remove(0).body;
    assert_eq!(
        (newest.route.as_str(), newest.status),
        ("/console/audit", 400)
    );
    assert_eq!(newest.person, None);
}
