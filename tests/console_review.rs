//! The IG console's break-glass review (issue 16, item 4): a clinician breaks the glass
//! through the gateway (`$everything` with `X-Break-Glass-Reason`), IG leads sign in through a
//! real OpenID Connect provider whose issuer the gateway also trusts for bearer tokens (so one
//! identity can both break the glass and sign in to the console), and review it. On SQLite
//! and PostgreSQL; expectations are read from the store's own records.

use futures_util::TryStreamExt;
use reqwest::StatusCode;
use serde_json::{Map, Value};

use concord::audit::{AuditKey, AuditLog, Body};
use concord::store::{BreakGlassReview, Store};

use crate::console::{Page, Visitor, console_toml, sign_in};
use crate::support::app::{AUDIT_KEY, Policies, SourceSpec, StoreChoice, TestApp, postgres};
use crate::support::oidc::{OidcProvider, ig_lead};

/// Known to the demo GP.
pub(crate) const BEN: &str = "9996656063";
/// The reason the clinician gives.
pub(crate) const REASON: &str = "Collapsed in clinic, no history <available>";

/// Direct care for clinicians of the GP and of RY4, and emergency access for them.
fn policies() -> Policies {
    let text = "[agreement]\nid = \"test-review\"\ntitle = \"Break-glass review tests\"\nversion = \"1\"\nstatus = \"active\"\n\
         legal_basis = [\"test\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"tests\"\n\n\
         [parties]\ndisclosers = [\"A81001\", \"RY4\"]\nrecipients = [\"A81001\", \"RY4\"]\n\n\
         [[rule]]\nid = \"direct-care\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"emergency\"\npurpose_of_use = [\"ETREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n";
    Policies::Files(vec![("test-review.toml".into(), text.into())])
}

/// The gateway of these tests over the demo GP, trusting the provider `idp` both for the
/// console's sign-in and for bearer tokens; `caldicott-guardian` is region-wide.
pub(crate) async fn gateway_trusting(idp: &OidcProvider, store: StoreChoice) -> TestApp {
    let gp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/gp");
    let toml = format!(
        "{}region_roles = [\"caldicott-guardian\"]\n",
        console_toml(idp)
    );
    TestApp::start_trusting(
        vec![SourceSpec::ndjson("gp", "Riverside GP", "A81001", gp)],
        store,
        "",
        policies(),
        &toml,
        &idp.issuer,
    )
    .await
}

/// The gateway's store.
fn store(app: &TestApp) -> Store {
    app.state.door.federation().store().clone()
}

/// Every record in the store, by id, in chain order.
async fn records(app: &TestApp) -> Vec<(String, Body)> {
    let rows: Vec<concord::audit::Record> =
        store(app).audit_rows().try_collect().await.expect("rows");
    rows.into_iter()
        .map(|r| {
            let body: Body = serde_json::from_str(&r.body).expect("a body");
            (format!("{}.{}", r.chain, r.seq), body)
        })
        .collect()
}

/// The ids of the emergency accesses in the store.
async fn emergencies(app: &TestApp) -> Vec<String> {
    records(app)
        .await
        .into_iter()
        .filter(|(_, b)| b.purpose.as_deref() == Some("ETREAT"))
        .map(|(id, _)| id)
        .collect()
}

/// The review kept for an access, if any.
async fn review_of(app: &TestApp, id: &str) -> Option<BreakGlassReview> {
    let (chain, seq) = id.rsplit_once('.').expect("an id");
    store(app)
        .break_glass_review(chain, seq.parse().expect("a position"))
        .await
        .expect("read")
}

/// Breaks the glass on Ben's record as `dr-test` of the GP: the access's record id.
pub(crate) async fn break_glass(app: &TestApp) -> String {
    let before = emergencies(app).await;
    let ben = app.patient_id(BEN).await;
    let answer = app
        .get_with(
            &format!("Patient/{ben}/$everything"),
            &[("X-Break-Glass-Reason", REASON)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let after = emergencies(app).await;
    assert_eq!(after.len(), before.len() + 1, "one emergency record");
    after
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the new emergency record")
}

/// A user of the provider: `sub`, name, organisation and role.
pub(crate) fn user(sub: &str, name: &str, org: &str, role: &str) -> Map<String, Value> {
    let mut u = Map::new();
    u.insert("sub".into(), sub.into());
    u.insert("name".into(), name.into());
    u.insert("org".into(), org.into());
    u.insert("role".into(), role.into());
    u
}

/// Signs in as `who` (the provider's next user), then sets the provider back to its IG lead.
async fn signed_in(app: &TestApp, idp: &OidcProvider, who: Map<String, Value>) -> Visitor {
    idp.set_user(who);
    let mut v = Visitor::new();
    let back = sign_in(app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    idp.set_user(ig_lead());
    v
}

/// The record ids a page's table lists, in order.
fn listed(body: &str) -> Vec<String> {
    body.split("<tr data-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

/// The row of a page's table for one record.
fn row_of<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body
        .find(&format!("<tr data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("{id} is listed: {body}"));
    let rest = &body[at..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

async fn get(v: &mut Visitor, app: &TestApp, path: &str) -> Page {
    v.get(&format!("{}/console{path}", app.origin)).await
}

async fn post(v: &mut Visitor, app: &TestApp, path: &str, form: &[(&str, &str)]) -> Page {
    v.post(&format!("{}/console{path}", app.origin), form).await
}

/// The review form's token for an access, read from its page.
async fn form_token(v: &mut Visitor, app: &TestApp, id: &str) -> String {
    let page = get(v, app, &format!("/review/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.csrf()
}

async fn verify(app: &TestApp) {
    let (ok, out, err) = app.concord(&["audit", "verify"]).await;
    assert!(ok, "audit verify: {out}\n{err}");
}

async fn a_break_glass_access_is_reviewed_once_by_its_organisations_ig_lead(
    store_choice: StoreChoice,
) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway_trusting(&idp, store_choice).await;
    let id = break_glass(&app).await;
    // An access under direct care is not an emergency access: never in the queue.
    let ben = app.patient_id(BEN).await;
    assert_eq!(
        app.get(&format!("Patient/{ben}")).await.status,
        StatusCode::OK
    );
    let plain = records(&app)
        .await
        .into_iter()
        .rev()
        .find(|(_, b)| b.purpose.as_deref() == Some("TREAT") && b.person.is_some())
        .map(|(id, _)| id)
        .expect("a plain read");

    let mut lead = signed_in(&app, &idp, ig_lead()).await;
    let home = get(&mut lead, &app, "/").await;
    assert!(
        home.body
            .contains("id=\"nav-review\" href=\"/console/review\""),
        "{}",
        home.body
    );
    assert!(home.body.contains("(1 waiting)"), "{}", home.body);

    // The queue: the access, its reason (escaped), whose record; not overdue.
    let queue = get(&mut lead, &app, "/review").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert_eq!(listed(&queue.body), [id.as_str()]);
    let row = row_of(&queue.body, &id);
    for part in [
        "Collapsed in clinic, no history &lt;available&gt;",
        "NHS 9996656063",
        "Dr Test (dr-test)",
        "clinician",
        "A81001",
        "waiting 0 days",
        &format!("href=\"/console/review/{id}\""),
    ] {
        assert!(row.contains(part), "{part}: {row}");
    }
    assert!(!row.contains("Overdue"), "{row}");
    assert!(
        !queue.body.contains(&plain),
        "a direct-care read is not queued"
    );
    assert!(
        queue
            .body
            .contains("1 emergency access waits for review; 0 are overdue")
    );

    // Another organisation's IG lead neither sees nor reviews it.
    let mut other = signed_in(
        &app,
        &idp,
        user("ig-ry4", "Rhys Governance", "RY4", "ig-lead"),
    )
    .await;
    let theirs = get(&mut other, &app, "/review").await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(listed(&theirs.body).is_empty(), "{}", theirs.body);
    assert_eq!(
        get(&mut other, &app, &format!("/review/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let home = get(&mut other, &app, "/").await;
    let csrf = home.csrf();
    let refused = post(
        &mut other,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("outcome", "appropriate"), ("note", "")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    assert!(!refused.body.contains(BEN), "{}", refused.body);
    assert_eq!(
        get(&mut other, &app, &format!("/audit/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // A record that is not an emergency access has nothing to review.
    assert_eq!(
        get(&mut lead, &app, &format!("/review/{plain}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(review_of(&app, &id).await, None);

    // A form without its token, or with another session's, is refused and records nothing.
    let csrf = form_token(&mut lead, &app, &id).await;
    let before = records(&app).await.len();
    for token in [None, Some("forged"), Some(home.csrf().as_str())] {
        let mut form = vec![("outcome", "appropriate"), ("note", "fine")];
        if let Some(token) = token {
            form.push(("csrf", token));
        }
        let page = post(&mut lead, &app, &format!("/review/{id}"), &form).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{token:?}: {}",
            page.body
        );
    }
    assert_eq!(records(&app).await.len(), before, "nothing recorded");
    assert_eq!(review_of(&app, &id).await, None);

    // A form filled in wrong comes back with the problem and keeps what was typed.
    let page = post(
        &mut lead,
        &app,
        &format!("/review/{id}"),
        &[
            ("csrf", &csrf),
            ("outcome", "not-appropriate"),
            ("note", "  "),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    page.assert_mistakes(&["f-note"], &["write a note"]);
    assert!(
        page.body
            .contains("value=\"not-appropriate\" required checked")
    );
    assert!(page.body.contains("id=\"review-form\" novalidate"));
    assert_eq!(review_of(&app, &id).await, None);
    // No outcome and a note too long: both, each at its field; the note as typed.
    let long = "n".repeat(2_001);
    let page = post(
        &mut lead,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("note", &long)],
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    page.assert_mistakes(
        &["f-outcome-appropriate", "f-note"],
        &[
            "choose whether the access was appropriate",
            "the note must be at most 2,000 characters",
        ],
    );
    assert!(page.body.contains(&format!(">{long}</textarea>")));
    assert!(
        page.body
            .contains("aria-describedby=\"f-note-error f-note-hint\""),
        "the note's hint stays described"
    );
    assert_eq!(review_of(&app, &id).await, None);

    // The review.
    let note = "Ask the ward <b>why</b>; the reason does not match the notes.";
    let done = post(
        &mut lead,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("outcome", "follow-up"), ("note", note)],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location(),
        format!("/console/audit/{id}#break-glass-review")
    );
    let kept = review_of(&app, &id).await.expect("the review is kept");
    assert_eq!(
        (
            kept.outcome.as_str(),
            kept.note.as_str(),
            kept.reviewer_subject.as_str(),
            kept.reviewer_issuer.as_str(),
            kept.reviewer_org.as_deref()
        ),
        (
            "follow-up",
            note,
            "ig-lead-1",
            idp.issuer.as_str(),
            Some("A81001")
        )
    );

    // The review is a record in the chain: the reviewer, the access, the outcome, the
    // note's keyed hash and never the note.
    let review_id = format!("{}.{}", kept.review_chain, kept.review_seq);
    let all = records(&app).await;
    let (_, record) = all
        .iter()
        .find(|(rid, _)| *rid == review_id)
        .expect("the review's record");
    assert_eq!(record.route, "/console/review/{id}");
    assert_eq!(record.target, format!("/console/review/{id}"));
    assert_eq!((record.method.as_str(), record.status), ("POST", 303));
    assert_eq!(record.user.as_deref(), Some("ig-lead-1"));
    assert_eq!(record.issuer.as_deref(), Some(idp.issuer.as_str()));
    assert_eq!(record.person.as_deref(), Some(ben.as_str()));
    let reviewed = record.reviewed.as_ref().expect("what was reviewed");
    assert_eq!(
        (reviewed.record.as_str(), reviewed.outcome.as_str()),
        (id.as_str(), "follow-up")
    );
    assert_eq!(
        reviewed.note_digest.as_deref().map(str::len),
        Some(32),
        "a 128-bit keyed hash"
    );
    let text = serde_json::to_string(record).expect("json");
    assert!(
        !text.contains("Ask the ward"),
        "the note stays out of the chain"
    );
    // The access's own record names its issuer too, which the self-review check compares.
    let access = &all.iter().find(|(rid, _)| *rid == id).expect("access").1;
    assert_eq!(access.issuer.as_deref(), Some(idp.issuer.as_str()));

    // It has left the queue; its record page and the reviewed list show the review.
    let queue = get(&mut lead, &app, "/review").await;
    assert!(listed(&queue.body).is_empty(), "{}", queue.body);
    assert!(queue.body.contains("0 emergency accesses wait for review"));
    let lately = &queue.body[queue
        .body
        .find(&format!("<tr data-reviewed=\"{id}\""))
        .expect("the queue shows the latest reviews")..];
    assert!(lately.contains("Follow-up needed"), "{lately}");
    let page = get(&mut lead, &app, &format!("/audit/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for part in [
        "Follow-up needed",
        "Isla Governance (ig-lead-1)",
        "Ask the ward &lt;b&gt;why&lt;/b&gt;",
        &format!("href=\"/console/audit/{review_id}\""),
        "The review matches its record in the audit chain.",
    ] {
        assert!(page.body.contains(part), "{part}: {}", page.body);
    }
    let list = get(&mut lead, &app, "/reviewed").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(listed(&list.body), [id.as_str()]);
    let row = row_of(&list.body, &id);
    for part in [
        "Follow-up needed",
        "Ask the ward &lt;b&gt;",
        &review_id,
        "NHS 9996656063",
    ] {
        assert!(row.contains(part), "{part}: {row}");
    }
    // The RY4 lead's list does not show it.
    assert!(listed(&get(&mut other, &app, "/reviewed").await.body).is_empty());

    // A second review is refused: the first one counts.
    let mut second = signed_in(
        &app,
        &idp,
        user("ig-lead-2", "Ivy Second", "A81001", "ig-lead"),
    )
    .await;
    assert_eq!(
        get(&mut second, &app, &format!("/review/{id}"))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let csrf2 = get(&mut second, &app, "/").await.csrf();
    let again = post(
        &mut second,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf2), ("outcome", "appropriate"), ("note", "")],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(
        again.body.contains("already been reviewed"),
        "{}",
        again.body
    );
    assert_eq!(review_of(&app, &id).await, Some(kept));

    // Every view of the review pages is audited, by the console user.
    let routes: Vec<(String, u16)> = records(&app)
        .await
        .into_iter()
        .filter(|(_, b)| {
            b.route.starts_with("/console/review") && b.user.as_deref() == Some("ig-lead-2")
        })
        .map(|(_, b)| (b.route, b.status))
        .collect();
    assert!(
        routes.contains(&("/console/review/{id}".into(), 409)),
        "{routes:?}"
    );
    verify(&app).await;

    // A review changed in the database no longer matches its record, and its page says so.
    execute(
        &app,
        &["UPDATE break_glass_reviews SET note = 'Nothing to see.'"],
    )
    .await;
    let page = get(&mut lead, &app, &format!("/audit/{id}")).await;
    assert!(
        page.body
            .contains("The stored review does not match its record in the audit chain"),
        "{}",
        page.body
    );
}

/// Runs statements of the test's own on the gateway's store.
async fn execute(app: &TestApp, sql: &[&'static str]) {
    for statement in sql {
        match store(app) {
            Store::Sqlite(pool) => sqlx::raw_sql(*statement).execute(&pool).await.map(|_| ()),
            Store::Postgres(pool) => sqlx::raw_sql(*statement).execute(&pool).await.map(|_| ()),
        }
        .expect("the test's SQL");
    }
}

#[tokio::test]
async fn an_ig_lead_reviews_a_break_glass_access_on_sqlite() {
    a_break_glass_access_is_reviewed_once_by_its_organisations_ig_lead(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn an_ig_lead_reviews_a_break_glass_access_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    a_break_glass_access_is_reviewed_once_by_its_organisations_ig_lead(StoreChoice::Postgres(
        db.url().to_owned(),
    ))
    .await;
}

async fn nobody_reviews_their_own_access(store_choice: StoreChoice) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway_trusting(&idp, store_choice).await;
    let id = break_glass(&app).await;
    // The clinician who broke the glass is also an IG lead: the same issuer and subject.
    let mut own = signed_in(&app, &idp, user("dr-test", "Dr Test", "A81001", "ig-lead")).await;
    let queue = get(&mut own, &app, "/review").await;
    let row = row_of(&queue.body, &id);
    assert!(row.contains("Your own access"), "{row}");
    assert!(
        !row.contains("/console/review/"),
        "no link to review it: {row}"
    );
    let form = get(&mut own, &app, &format!("/review/{id}")).await;
    assert_eq!(form.status, StatusCode::FORBIDDEN, "{}", form.body);
    assert!(
        form.body
            .contains("You cannot review your own emergency access")
    );
    let page = get(&mut own, &app, &format!("/audit/{id}")).await;
    assert!(
        page.body.contains("This is your own emergency access"),
        "{}",
        page.body
    );
    let csrf = get(&mut own, &app, "/").await.csrf();
    let refused = post(
        &mut own,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("outcome", "appropriate"), ("note", "")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(review_of(&app, &id).await, None, "no review kept");
    let attempts: Vec<Body> = records(&app)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| b.route == "/console/review/{id}" && b.method == "POST")
        .collect();
    assert_eq!(attempts.len(), 1, "the refusal is in the audit log");
    assert_eq!(attempts[0].status, 403);
    assert_eq!(attempts[0].reviewed, None, "and it is no review");
    assert_eq!(attempts[0].target, format!("/console/review/{id}"));

    // Another IG lead with the same name is not the same person, and may review it.
    let mut namesake = signed_in(
        &app,
        &idp,
        user("dr-test-2", "Dr Test", "A81001", "ig-lead"),
    )
    .await;
    let csrf = form_token(&mut namesake, &app, &id).await;
    let done = post(
        &mut namesake,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("outcome", "appropriate"), ("note", "")],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // The region-wide role sees it among the reviews made.
    let mut region = signed_in(
        &app,
        &idp,
        user("icb-1", "Cal Guardian", "X24", "caldicott-guardian"),
    )
    .await;
    assert_eq!(
        listed(&get(&mut region, &app, "/reviewed").await.body),
        [id]
    );
    verify(&app).await;
}

#[tokio::test]
async fn nobody_reviews_their_own_access_on_sqlite() {
    nobody_reviews_their_own_access(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn nobody_reviews_their_own_access_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    nobody_reviews_their_own_access(StoreChoice::Postgres(db.url().to_owned())).await;
}

/// Appends emergency accesses of `ages_days` days ago to a chain of their own, as another
/// gateway instance (one that was down and whose spool came back late, say) would have: real
/// records, hashed with the gateway's key, that `audit verify` accepts. Their ids.
pub(crate) async fn old_accesses(app: &TestApp, ages_days: &[i64]) -> Vec<String> {
    let key = AuditKey::load(Some(std::path::Path::new(AUDIT_KEY)), None).expect("audit key");
    let log = AuditLog::new(store(app), key);
    let now = jiff::Timestamp::now().as_microsecond();
    let mut ids = Vec::new();
    for days in ages_days {
        let body = Body {
            recorded_us: now - days * 86_400_000_000 - 60_000_000,
            request_id: format!("old-{days}"),
            user: Some(format!("dr-old-{days}")),
            user_name: Some("Dr Old".into()),
            org: Some("A81001".into()),
            role: Some("clinician".into()),
            caller: "staff".into(),
            method: "GET".into(),
            route: "/fhir/Patient/{id}/$everything".into(),
            target: "/fhir/Patient/x/$everything".into(),
            purpose: Some("ETREAT".into()),
            break_glass_reason: Some(format!("{days} days ago")),
            outcome: "success".into(),
            status: 200,
            review: Some("break-glass".into()),
            ..Body::default()
        };
        let record = log.append(&body).await.expect("appended");
        ids.push(format!("{}.{}", record.chain, record.seq));
    }
    log.settle().await;
    ids
}

async fn an_overdue_access_stands_out(store_choice: StoreChoice) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway_trusting(&idp, store_choice).await;
    let recent = break_glass(&app).await;
    let old = old_accesses(&app, &[8, 6]).await;
    let mut lead = signed_in(&app, &idp, ig_lead()).await;
    let home = get(&mut lead, &app, "/").await;
    assert!(
        home.body
            .contains("(3 waiting, <strong>1 overdue</strong>)"),
        "{}",
        home.body
    );
    let queue = get(&mut lead, &app, "/review").await;
    // Oldest first; only the one past seven days is overdue, in words and by its class.
    assert_eq!(
        listed(&queue.body),
        [old[0].clone(), old[1].clone(), recent.clone()]
    );
    let overdue = row_of(&queue.body, &old[0]);
    assert!(overdue.contains("class=\"overdue\""), "{overdue}");
    assert!(overdue.contains(">Overdue</strong>"), "{overdue}");
    assert!(overdue.contains("waiting 8 days"), "{overdue}");
    for id in [&old[1], &recent] {
        assert!(!row_of(&queue.body, id).contains("Overdue"), "{id}");
    }
    assert!(queue.body.contains(
        "3 emergency accesses wait for review; 1 is overdue (made more than 7 days ago)"
    ));
    let page = get(&mut lead, &app, &format!("/audit/{}", old[0])).await;
    assert!(
        page.body
            .contains("Not reviewed yet. <strong class=\"tag overdue\">Overdue</strong>"),
        "{}",
        page.body
    );
    let form = get(&mut lead, &app, &format!("/review/{}", old[0])).await;
    assert!(form.body.contains(">Overdue</strong>"), "{}", form.body);
    verify(&app).await;
}

#[tokio::test]
async fn an_overdue_access_stands_out_on_sqlite() {
    an_overdue_access_stands_out(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn an_overdue_access_stands_out_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    an_overdue_access_stands_out(StoreChoice::Postgres(db.url().to_owned())).await;
}

/// Makes the store refuse (`true`) or take again (`false`) new review rows, as a store that
/// fails between the review's record in the chain and its row would.
async fn refuse_reviews(app: &TestApp, refuse: bool) {
    let sql: &[&'static str] = match (&store(app), refuse) {
        (Store::Sqlite(_), true) => &[
            "CREATE TRIGGER refuse_reviews BEFORE INSERT ON break_glass_reviews BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        (Store::Sqlite(_), false) => &["DROP TRIGGER refuse_reviews"],
        (Store::Postgres(_), true) => &[
            "CREATE FUNCTION refuse_review() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_reviews BEFORE INSERT ON break_glass_reviews FOR EACH ROW EXECUTE FUNCTION refuse_review()",
        ],
        (Store::Postgres(_), false) => &["DROP TRIGGER refuse_reviews ON break_glass_reviews"],
    };
    execute(app, sql).await;
}

async fn a_review_whose_row_is_not_kept_does_not_count(store_choice: StoreChoice) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway_trusting(&idp, store_choice).await;
    let id = break_glass(&app).await;
    let mut lead = signed_in(&app, &idp, ig_lead()).await;
    let csrf = form_token(&mut lead, &app, &id).await;

    // The review's record reaches the chain; its row does not.
    refuse_reviews(&app, true).await;
    let failed = post(
        &mut lead,
        &app,
        &format!("/review/{id}"),
        &[
            ("csrf", &csrf),
            ("outcome", "not-appropriate"),
            ("note", "first try"),
        ],
    )
    .await;
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    assert!(failed.body.contains("does not count"), "{}", failed.body);
    refuse_reviews(&app, false).await;
    let attempts: Vec<(String, Body)> = records(&app)
        .await
        .into_iter()
        .filter(|(_, b)| b.route == "/console/review/{id}" && b.method == "POST")
        .collect();
    let statuses: Vec<u16> = attempts.iter().map(|(_, b)| b.status).collect();
    assert_eq!(statuses, [303, 503], "the attempt, then that it failed");
    assert!(attempts[0].1.reviewed.is_some());

    // The safe reading: not reviewed. It is still in the queue and can be reviewed.
    assert_eq!(review_of(&app, &id).await, None);
    assert_eq!(
        listed(&get(&mut lead, &app, "/review").await.body),
        [id.as_str()]
    );
    let page = get(&mut lead, &app, &format!("/audit/{id}")).await;
    assert!(page.body.contains("Not reviewed yet."), "{}", page.body);
    let done = post(
        &mut lead,
        &app,
        &format!("/review/{id}"),
        &[("csrf", &csrf), ("outcome", "appropriate"), ("note", "")],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let kept = review_of(&app, &id).await.expect("kept");
    assert_eq!(kept.outcome, "appropriate");
    assert_ne!(
        format!("{}.{}", kept.review_chain, kept.review_seq),
        attempts[0].0,
        "the review names its own record, not the attempt"
    );
    verify(&app).await;
}

#[tokio::test]
async fn a_review_whose_row_is_not_kept_does_not_count_on_sqlite() {
    a_review_whose_row_is_not_kept_does_not_count(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn a_review_whose_row_is_not_kept_does_not_count_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    a_review_whose_row_is_not_kept_does_not_count(StoreChoice::Postgres(db.url().to_owned())).await;
}

#[tokio::test]
async fn of_two_reviews_sent_at_once_the_first_wins() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway_trusting(&idp, StoreChoice::Sqlite).await;
    let id = break_glass(&app).await;
    let mut a = signed_in(&app, &idp, ig_lead()).await;
    let mut b = signed_in(
        &app,
        &idp,
        user("ig-lead-2", "Ivy Second", "A81001", "ig-lead"),
    )
    .await;
    let (csrf_a, csrf_b) = (
        form_token(&mut a, &app, &id).await,
        form_token(&mut b, &app, &id).await,
    );
    let url = format!("/review/{id}");
    let form_a = [
        ("csrf", csrf_a.as_str()),
        ("outcome", "appropriate"),
        ("note", "a"),
    ];
    let form_b = [
        ("csrf", csrf_b.as_str()),
        ("outcome", "not-appropriate"),
        ("note", "b"),
    ];
    let (pa, pb) = tokio::join!(
        post(&mut a, &app, &url, &form_a),
        post(&mut b, &app, &url, &form_b),
    );
    let mut statuses = [pa.status, pb.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::CONFLICT]);
    let kept = review_of(&app, &id).await.expect("one review");
    let winner = if pa.status == StatusCode::SEE_OTHER {
        "ig-lead-1"
    } else {
        "ig-lead-2"
    };
    assert_eq!(kept.reviewer_subject, winner);
    verify(&app).await;
}
