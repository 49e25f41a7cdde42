//! "Who has looked at this record" (issue 16, item 5): real FHIR requests through the gateway
//! make the records; IG leads signed in through a real OpenID Connect provider read one
//! person's report, on screen and print-friendly, within their scope. Expectations are
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
/// A break-glass reason with markup in it.
const REASON: &str = "<b>collapsed</b> in clinic";

/// Every stored record, newest first, with its id.
pub(crate) async fn stored(app: &TestApp) -> Vec<(String, Body)> {
    let store = app.state.door.federation().store();
    let rows: Vec<concord::audit::Record> = store.audit_rows().try_collect().await.expect("rows");
    let mut out: Vec<(i64, String, i64, Body)> = rows
        .into_iter()
        .map(|r| {
            let body: Body = serde_json::from_str(&r.body).expect("a body");
            (body.recorded_us, r.chain, r.seq, body)
        })
        .collect();
    out.sort_by(|a, b| (b.0, &b.1, b.2).cmp(&(a.0, &a.1, a.2)));
    out.into_iter()
        .map(|(_, chain, seq, b)| (format!("{chain}.{seq}"), b))
        .collect()
}

/// The ids of the stored records `select` picks, newest first.
async fn expected(app: &TestApp, select: impl Fn(&Body) -> bool) -> Vec<String> {
    stored(app)
        .await
        .into_iter()
        .filter(|(_, b)| select(b))
        .map(|(id, _)| id)
        .collect()
}

/// The gateway of these tests: the demo GP; a console whose region-wide role is
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

async fn read(app: &TestApp, token: &str, path: &str, extra: &[(&str, &str)]) -> StatusCode {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    app.get_raw(path, &headers).await.status
}

/// Traffic about two people: `reads` reads of Ann's record by the GP's clinician, `$everything`
/// on Ann and on Ben, a break-glass read of Ann, and a clinician of another organisation
/// (RY4) asking for Ann. Returns the gateway ids of Ann and Ben.
async fn traffic(app: &TestApp, reads: usize) -> (String, String) {
    let ann = app.patient_id(ANN).await;
    let ben = app.patient_id(BEN).await;
    let gp = app.token_with(&[]);
    let one = format!("Patient/{ann}");
    for batch in (0..reads).collect::<Vec<_>>().chunks(8) {
        let answers =
            futures_util::future::join_all(batch.iter().map(|_| read(app, &gp, &one, &[]))).await;
        assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    }
    for person in [&ann, &ben] {
        let everything = format!("Patient/{person}/$everything");
        assert_eq!(read(app, &gp, &everything, &[]).await, StatusCode::OK);
    }
    let glass = [("X-Break-Glass-Reason", REASON)];
    read(app, &gp, &one, &glass).await;
    let other = app.token_with(&[("sub", json!("dr-ry4")), ("org", json!("RY4"))]);
    read(app, &other, &one, &[]).await;
    (ann, ben)
}

/// The record ids a report lists, in order.
fn listed(body: &str) -> Vec<String> {
    body.split("<tr data-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The href of the "Next part" link, HTML-unescaped.
fn older(body: &str) -> Option<String> {
    let at = body.find("id=\"older\" href=\"")? + 17;
    Some(body[at..].split('"').next()?.replace("&amp;", "&"))
}

/// Every record a report lists, following its "Next part" links from `first`: the ids and
/// the pages.
async fn walk(app: &TestApp, v: &mut Visitor, first: &str) -> (Vec<String>, Vec<String>) {
    let mut url = format!("{}{first}", app.origin);
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = v.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.body);
        let found = listed(&page.body);
        assert!(found.len() <= 200, "at most 200 a part");
        ids.extend(found);
        assert!(pages.len() < 10, "the parts do not end");
        let next = older(&page.body);
        pages.push(page.body);
        match next {
            Some(next) => url = format!("{}{next}", app.origin),
            None => return (ids, pages),
        }
    }
}

/// An IG lead of `org` with `role`, signed in.
pub(crate) async fn lead(
    app: &TestApp,
    idp: &OidcProvider,
    sub: &str,
    org: &str,
    role: &str,
) -> Visitor {
    let mut user = ig_lead();
    user.insert("sub".into(), sub.into());
    user.insert("org".into(), org.into());
    user.insert("role".into(), role.into());
    idp.set_user(user);
    let mut v = Visitor::new();
    let back = sign_in(app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    v
}

fn about(b: &Body, person: &str) -> bool {
    b.person.as_deref() == Some(person)
}

async fn the_report_lists_one_persons_accesses_within_scope(store: StoreChoice) {
    let (idp, app) = world(store).await;
    let (ann, ben) = traffic(&app, 3).await;
    let mut gp_lead = lead(&app, &idp, "ig-lead-1", "A81001", "ig-lead").await;
    let home = gp_lead.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("href=\"/console/person\""),
        "{}",
        home.body
    );

    // The GP's IG lead: every access to Ann's record by the GP's staff, newest first, and
    // nothing about Ben nor by RY4's staff.
    let want = expected(&app, |b| {
        about(b, &ann) && b.org.as_deref() == Some("A81001")
    })
    .await;
    assert!(want.len() >= 5, "{want:?}");
    let page = gp_lead
        .get(&format!("{}/console/person?nhs=943+476+5919", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::OK, "a person unknown here");
    assert!(
        page.body.contains("No access to this person"),
        "{}",
        page.body
    );
    let want = expected(&app, |b| {
        about(b, &ann) && b.org.as_deref() == Some("A81001")
    })
    .await;
    let (got, pages) = walk(&app, &mut gp_lead, &format!("/console/person?nhs={ANN}")).await;
    assert_eq!(got, want, "newest first, each once");
    let body = &pages[0];
    assert!(body.contains("Accesses to the record of NHS number 999 046 5630"));
    assert!(body.contains("id=\"complete\""), "says the report ends");
    for part in [
        "Dr Test (dr-test)",
        "clinician, A81001",
        "read Patient",
        "the whole record ($everything)",
        "test-read-path, rule everything",
        "Break-glass</strong> reason given: &lt;b&gt;collapsed&lt;/b&gt; in clinic",
        "Purpose ETREAT",
        "success (200)",
        "href=\"/console/person/9990465630/report\"",
    ] {
        assert!(body.contains(part), "{part}: {body}");
    }
    assert!(!body.contains("<b>collapsed"), "escaped");
    let bens = expected(&app, |b| about(b, &ben)).await;
    assert!(!bens.is_empty());
    assert!(got.iter().all(|id| !bens.contains(id)), "nothing of Ben's");
    let ry4 = expected(&app, |b| about(b, &ann) && b.org.as_deref() == Some("RY4")).await;
    assert_eq!(ry4.len(), 1, "RY4's clinician asked once");
    assert!(!got.contains(&ry4[0]), "not another organisation's staff");

    // The view is a record naming Ann, by the IG lead; the next view lists it, marked.
    let (view_id, view) = stored(&app).await.remove(0);
    assert_eq!(view.route, "/console/person");
    assert_eq!(view.user.as_deref(), Some("ig-lead-1"));
    assert_eq!(view.role.as_deref(), Some("ig-lead"));
    assert_eq!(view.org.as_deref(), Some("A81001"));
    assert_eq!(view.person.as_deref(), Some(ann.as_str()));
    assert_eq!((view.outcome.as_str(), view.status), ("success", 200));
    assert!(
        !view.target.contains(ANN),
        "no NHS number in the record's target"
    );
    let again = gp_lead
        .get(&format!("{}/console/person?nhs={ANN}", app.origin))
        .await;
    assert_eq!(listed(&again.body)[0], view_id);
    assert!(
        again
            .body
            .contains("IG console</strong> viewed this access report"),
        "{}",
        again.body
    );

    // The print-friendly report: the same rows, a heading, who produced it and the scope.
    let want = expected(&app, |b| {
        about(b, &ann) && b.org.as_deref() == Some("A81001")
    })
    .await;
    let print = gp_lead
        .get(&format!("{}/console/person/{ANN}/report", app.origin))
        .await;
    assert_eq!(print.status, StatusCode::OK, "{}", print.body);
    assert_eq!(listed(&print.body), want);
    for part in [
        "<h1 id=\"report-heading\">Access report for NHS number 999 046 5630</h1>",
        "<dd id=\"meta-by\">Isla Governance (ig-lead-1), ig-lead, A81001</dd>",
        "The accesses made by the staff of A81001",
        "Print command",
    ] {
        assert!(print.body.contains(part), "{part}: {}", print.body);
    }
    assert!(
        !print.body.contains("href=\"/console/audit/"),
        "no links in the document"
    );
    let newest = stored(&app).await.remove(0).1;
    assert_eq!(newest.route, "/console/person/{nhs}/report");
    assert_eq!(newest.person.as_deref(), Some(ann.as_str()));

    // Another organisation's IG lead, without a region-wide role: only RY4's staff.
    let mut ry4_lead = lead(&app, &idp, "ig-ry4", "RY4", "ig-lead").await;
    let (got, _) = walk(&app, &mut ry4_lead, &format!("/console/person?nhs={ANN}")).await;
    assert_eq!(got, ry4, "none of the GP's accesses");

    // The region-wide role: everybody's accesses, the IG leads' views included.
    let want = expected(&app, |b| about(b, &ann)).await;
    let mut region = lead(&app, &idp, "icb-ig-1", "X24", "caldicott-guardian").await;
    let (got, pages) = walk(&app, &mut region, &format!("/console/person?nhs={ANN}")).await;
    assert_eq!(got, want);
    assert!(got.contains(&ry4[0]));
    assert!(pages[0].contains("Every access recorded by this gateway"));
}

#[tokio::test]
async fn an_ig_lead_sees_who_has_looked_at_one_persons_record_within_their_scope() {
    the_report_lists_one_persons_accesses_within_scope(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn who_has_looked_at_a_record_works_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    the_report_lists_one_persons_accesses_within_scope(StoreChoice::Postgres(db.url().to_owned()))
        .await;
}

#[tokio::test]
async fn a_long_trail_comes_in_parts_that_together_list_every_access_once() {
    let (idp, app) = world(StoreChoice::Sqlite).await;
    let (ann, _) = traffic(&app, 205).await;
    let mut v = lead(&app, &idp, "ig-lead-1", "A81001", "ig-lead").await;
    for first in [
        format!("/console/person?nhs={ANN}"),
        format!("/console/person/{ANN}/report"),
    ] {
        let want = expected(&app, |b| {
            about(b, &ann) && b.org.as_deref() == Some("A81001")
        })
        .await;
        assert!(want.len() > 200, "{}", want.len());
        let (got, pages) = walk(&app, &mut v, &first).await;
        assert_eq!(pages.len(), 2, "{first}");
        assert!(
            pages[0].contains("id=\"more\""),
            "the first part says more follow"
        );
        assert!(
            pages[1].contains("id=\"complete\""),
            "the last says it ends"
        );
        // Each view's own record is newer than the first part, so it is in neither.
        assert_eq!(got, want, "{first}");
    }
}

#[tokio::test]
async fn a_bad_nhs_number_gives_the_form_back_and_no_session_sees_nothing() {
    let (idp, app) = world(StoreChoice::Sqlite).await;
    let mut anonymous = Visitor::new();
    for path in [
        format!("/console/person?nhs={ANN}"),
        format!("/console/person/{ANN}/report"),
    ] {
        let page = anonymous.get(&format!("{}{path}", app.origin)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/console/sign-in");
    }
    let mut v = lead(&app, &idp, "ig-lead-1", "A81001", "ig-lead").await;
    let form = v.get(&format!("{}/console/person", app.origin)).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body
            .contains("<label for=\"f-nhs\">NHS number</label>")
    );
    assert!(!form.body.contains("id=\"accesses\""), "no report yet");
    let before = stored(&app).await.len();
    for path in [
        "/console/person?nhs=9990465631".to_owned(),
        "/console/person?nhs=%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(),
        "/console/person/12345/report".to_owned(),
        format!("/console/person?cursor=abc&nhs={ANN}"),
    ] {
        let page = v.get(&format!("{}{path}", app.origin)).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains("id=\"person-search\""), "the form again");
        assert!(page.body.contains("id=\"form-error\""), "{}", page.body);
        if path.contains("cursor") {
            assert!(
                !page.body.contains("aria-invalid"),
                "not the field's mistake"
            );
        } else {
            page.assert_mistakes(&["f-nhs"], &["NHS number must be 10 digits"]);
        }
        assert!(!page.body.contains("<script"), "escaped");
        assert!(!page.body.contains("style="), "no inline style");
        assert_eq!(
            page.headers["content-security-policy"],
            concord::console::CONTENT_SECURITY_POLICY
        );
        if path.contains("cursor") {
            assert!(
                page.body.contains("not made by this console"),
                "{}",
                page.body
            );
        } else {
            assert!(
                page.body.contains("NHS number must be 10 digits"),
                "{}",
                page.body
            );
        }
    }
    // Each refusal is recorded, and names nobody.
    let all = stored(&app).await;
    assert_eq!(all.len(), before + 4);
    for (_, b) in &all[..4] {
        assert_eq!((b.status, b.person.as_deref()), (400, None), "{b:?}");
        assert_eq!(b.user.as_deref(), Some("ig-lead-1"));
    }
}
