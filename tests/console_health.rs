//! The IG console's health of the record and pictures (issue 16, items 7 and 8): real
//! upstream FHIR servers (one made to fail), the whole gateway on 127.0.0.1, an IG lead
//! signed in through the test OpenID Connect provider, `audit verify` started from the
//! console on an untouched and on a tampered SQLite file, and the charts' tables compared
//! with requests made in the test, on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::TryStreamExt;
use reqwest::StatusCode;
use serde_json::json;

use concord::audit::{AuditKey, Body, Record};
use concord::store::Store;

use crate::console::{Page, Visitor, console_toml, gateway, sign_in};
use crate::read_path::{specs, three_sources};
use crate::support::app::{AUDIT_KEY, Policies, SourceSpec, StoreChoice, TestApp, postgres};
use crate::support::data::ANN;
use crate::support::oidc::{OidcProvider, ig_lead};
use crate::support::upstream::Mode;

const VERIFY: &str = "/console/health/verify";
/// Known to the demo GP (the gateway of `console::gateway`).
const DEMO_ANN: &str = "9990465630";

fn store(app: &TestApp) -> &Store {
    app.state.door.federation().store()
}

/// Every record in the store, with its chain and position.
pub(crate) async fn records(app: &TestApp) -> Vec<(Record, Body)> {
    let rows: Vec<Record> = store(app).audit_rows().try_collect().await.expect("rows");
    rows.into_iter()
        .map(|r| {
            let body = serde_json::from_str(&r.body).expect("a body");
            (r, body)
        })
        .collect()
}

/// The HTML of the row that starts with `start` (up to its `</tr>`).
fn row<'a>(body: &'a str, start: &str) -> &'a str {
    let at = body
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` in {body}"));
    let rest = &body[at..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// An IG lead of the GP (A81001), signed in.
async fn ig(app: &TestApp) -> Visitor {
    let mut v = Visitor::new();
    let back = sign_in(app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    v
}

fn no_script_no_inline_style(page: &Page) {
    assert_eq!(
        page.headers["content-security-policy"],
        concord::console::CONTENT_SECURITY_POLICY
    );
    assert!(!page.body.contains("<script"), "{}", page.body);
    assert!(!page.body.contains("style="), "{}", page.body);
}

#[tokio::test]
async fn the_health_page_shows_each_source_its_breaker_faults_and_the_chains_signed_heads() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let (gp, community, social) = three_sources().await;
    let mut sources = specs(&gp, &community, &social);
    sources[1] = SourceSpec::fhir(
        "community",
        "Northshire Community Health",
        "RY4",
        community.base_url(),
    )
    .with("breaker_failures = 2\nbreaker_cool_down_secs = 60");
    let app = TestApp::start_config(
        sources,
        StoreChoice::Sqlite,
        "",
        Policies::ReadPath,
        &console_toml(&idp),
    )
    .await;
    let health = format!("{}/console/health", app.origin);

    let mut anonymous = Visitor::new();
    let page = anonymous.get(&health).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "no session, no page");
    assert_eq!(page.location(), "/console/sign-in");

    let id = app.patient_id(ANN).await;
    community.set_mode(Mode::Status(500));
    for _ in 0..2 {
        app.get(&format!("Observation?patient={id}")).await;
    }
    let mut v = ig(&app).await;
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("href=\"/console/health\""),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("href=\"/console/charts\""),
        "{}",
        home.body
    );

    let page = v.get(&health).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    no_script_no_inline_style(&page);
    for (source, name, ods) in [
        ("gp", "Riverside Medical Practice", "A81001"),
        ("community", "Northshire Community Health", "RY4"),
        ("social", "Northshire Adult Social Care", "LA001"),
    ] {
        let r = row(&page.body, &format!("<tr data-source=\"{source}\">"));
        assert!(r.contains(name) && r.contains(ods), "{r}");
    }
    let failed = row(&page.body, "<tr data-source=\"community\">");
    assert!(
        failed.contains(">Open</span>"),
        "the breaker is open: {failed}"
    );
    assert!(
        failed.contains("<code>http_error</code> on search"),
        "the fault, newest first: {failed}"
    );
    let well = row(&page.body, "<tr data-source=\"gp\">");
    assert!(well.contains(">Closed</span>"), "{well}");
    assert!(well.contains("0 failed"), "{well}");
    assert!(
        well.contains("last check") && well.contains(": conformed"),
        "the gp's resources were checked against the profiles: {well}"
    );

    // The chains' last signed heads: this instance's chain, at a position it signed.
    let chain = app.state.audit.chain().to_owned();
    for _ in 0..100 {
        let signed = store(&app).audit_heads().await.expect("heads");
        if signed.iter().any(|h| h.chain == chain) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = v.get(&health).await;
    let shown = row(&page.body, &format!("<tr data-chain=\"{chain}\">"));
    let cells: Vec<&str> = shown
        .split("<td>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap_or_default())
        .collect();
    let seq: i64 = cells[0].parse().expect("the position signed");
    let signed = store(&app).audit_heads().await.expect("heads");
    let head = signed
        .iter()
        .find(|h| h.chain == chain && h.seq == seq)
        .unwrap_or_else(|| panic!("{chain} was signed at {seq}: {shown}"));
    let at = jiff::Timestamp::from_microsecond(head.signed_us)
        .expect("a time")
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    assert_eq!(cells[1], at, "when it was signed");
    assert!(shown.contains(&at), "signed at {at}: {shown}");
    assert!(
        page.body.contains(&format!("<code>{chain}</code>")),
        "this instance's chain"
    );
}

/// Appends a chain of `n` records that verify (hashed with the gateway's key) straight into
/// the store, so that a verify has enough to walk to be seen running.
pub(crate) async fn bulk_chain(app: &TestApp, n: i64) {
    let key = AuditKey::new(std::fs::read(AUDIT_KEY).expect("key").trim_ascii()).expect("key");
    let mut prev = concord::audit::GENESIS.to_owned();
    let mut batch = Vec::new();
    for seq in 0..n {
        let body = serde_json::to_string(&Body {
            recorded_us: 1_000 + seq,
            request_id: format!("bulk-{seq}"),
            caller: "unauthenticated".into(),
            method: "GET".into(),
            route: "/fhir/metadata".into(),
            target: "/fhir/metadata".into(),
            outcome: "success".into(),
            status: 200,
            ..Body::default()
        })
        .expect("json");
        let hash = key.hash("bulk", seq, &prev, &body);
        batch.push(Record {
            chain: "bulk".into(),
            seq,
            body,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
        if batch.len() == 5_000 {
            store(app).append_audit(&batch).await.expect("append");
            batch.clear();
        }
    }
    store(app).append_audit(&batch).await.expect("append");
}

/// Follows the verify page until it shows a result (at most a minute).
async fn verify_result(app: &TestApp, v: &mut Visitor) -> Page {
    for _ in 0..600 {
        let page = v.get(&format!("{}{VERIFY}", app.origin)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        if page.body.contains("id=\"verify-result\"") {
            assert!(
                !page.body.contains("http-equiv=\"refresh\""),
                "a result stays put"
            );
            return page;
        }
        assert!(
            !page.body.contains("http-equiv=\"refresh\"")
                && page.body.contains("id=\"verify-refresh\""),
            "a running check stays put, with a link to its latest progress: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the verify did not end within a minute");
}

/// The console's records of verifies: (target, outcome, user).
async fn verify_records(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    records(app)
        .await
        .into_iter()
        .filter(|(_, b)| b.route == VERIFY)
        .map(|(_, b)| (b.target, b.outcome, b.user))
        .collect()
}

pub(crate) async fn exec(app: &TestApp, sql: &str) {
    let Store::Sqlite(pool) = store(app) else {
        panic!("sqlite")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect(sql);
}

#[tokio::test]
async fn verify_runs_in_the_background_passes_untouched_and_names_a_tampered_record() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let id = app.patient_id(DEMO_ANN).await;
    for _ in 0..3 {
        assert_eq!(
            app.get(&format!("Patient/{id}")).await.status,
            StatusCode::OK
        );
    }
    bulk_chain(&app, 60_000).await;
    let mut v = ig(&app).await;
    let verify = format!("{}{VERIFY}", app.origin);

    // No token, or another one: refused, and nothing starts.
    let health = v.get(&format!("{}/console/health", app.origin)).await;
    let csrf = health.csrf();
    assert!(
        health.body.contains("id=\"verify\""),
        "the button: {}",
        health.body
    );
    for form in [vec![], vec![("csrf", "not-the-token")]] {
        let refused = v.post(&verify, &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    }
    let page = v.get(&verify).await;
    assert!(page.body.contains("No check has run"), "{}", page.body);
    assert!(verify_records(&app).await.is_empty(), "nothing recorded");

    // One starts; asking again while it runs shows that one.
    let started = v.post(&verify, &[("csrf", &csrf)]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(started.location(), VERIFY);
    let again = v.post(&verify, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(
        again.location(),
        format!("{VERIFY}?running"),
        "the first still runs"
    );
    let running = v.get(&format!("{}{}", app.origin, again.location())).await;
    assert!(running.body.contains("id=\"joined\""), "{}", running.body);
    assert!(running.body.contains("records checked"), "{}", running.body);
    no_script_no_inline_style(&running);

    let done = verify_result(&app, &mut v).await;
    no_script_no_inline_style(&done);
    assert!(done.body.contains("<h2>Passed</h2>"), "{}", done.body);
    assert!(
        done.body.contains("in 2 chain(s)") && done.body.contains("audit log verified: "),
        "{}",
        done.body
    );
    let recorded = verify_records(&app).await;
    assert_eq!(recorded.len(), 2, "one start and one result: {recorded:?}");
    assert_eq!(recorded[0].0, VERIFY);
    assert!(
        recorded[1].0.contains("audit log verified: "),
        "{recorded:?}"
    );
    assert_eq!(recorded[1].1, "success");
    for (_, _, user) in &recorded {
        assert_eq!(user.as_deref(), Some("ig-lead-1"), "the console user");
    }
    let health = v.get(&format!("{}/console/health", app.origin)).await;
    assert!(
        row(&health.body, "<p id=\"last-verify\">").contains("Passed"),
        "{}",
        health.body
    );

    // A record of the gateway's chain edited in the file: found, at its position, in the
    // words of `concord audit verify`.
    let chain = app.state.audit.chain().to_owned();
    let (victim, _) = records(&app)
        .await
        .into_iter()
        .find(|(r, b)| {
            r.chain == chain && b.caller == "staff" && b.target.starts_with("/fhir/Patient/")
        })
        .expect("a read of Ann's record");
    exec(
        &app,
        &format!(
            "UPDATE audit_records SET body = replace(body, '\"caller\":\"staff\"', '\"caller\":\"patient\"') WHERE chain = '{chain}' AND seq = {}",
            victim.seq
        ),
    )
    .await;
    let (ok, cli) = {
        let (ok, out, _) = app.concord(&["audit", "verify"]).await;
        (ok, out)
    };
    assert!(!ok, "{cli}");
    let said = format!(
        "audit log BROKEN: chain {chain} at position {}: its content was modified (hash mismatch)",
        victim.seq
    );
    assert!(cli.contains(&said), "{cli}");
    let started = v.post(&verify, &[("csrf", &csrf)]).await;
    assert_eq!(started.location(), VERIFY);
    let done = verify_result(&app, &mut v).await;
    assert!(done.body.contains(&said), "{}", done.body);
    assert!(
        done.body
            .contains(&format!("<dd id=\"broken-position\">{}</dd>", victim.seq)),
        "{}",
        done.body
    );
    let recorded = verify_records(&app).await;
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert!(recorded[3].0.contains(&said), "{recorded:?}");
    assert_eq!(recorded[3].1, "error");
}

#[tokio::test]
async fn verify_from_the_console_passes_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(
        StoreChoice::Postgres(db.url().to_owned()),
        "",
        &console_toml(&idp),
    )
    .await;
    app.patient_id(DEMO_ANN).await;
    let mut v = ig(&app).await;
    let health = v.get(&format!("{}/console/health", app.origin)).await;
    let started = v
        .post(
            &format!("{}{VERIFY}", app.origin),
            &[("csrf", &health.csrf())],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let done = verify_result(&app, &mut v).await;
    assert!(done.body.contains("<h2>Passed</h2>"), "{}", done.body);
}

/// A table of the charts page: (row, column) → number.
fn table(body: &str, id: &str) -> BTreeMap<(String, String), i64> {
    let start = body
        .find(&format!("<table class=\"results\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}: {body}"));
    let html = &body[start..start + body[start..].find("</table>").expect("end")];
    let mut out = BTreeMap::new();
    for tr in html.split("<tr data-bucket=\"").skip(1) {
        let bucket = tr.split('"').next().expect("bucket").to_owned();
        for td in tr.split("<td data-key=\"").skip(1) {
            let (key, rest) = td.split_once("\">").expect("a cell");
            let n = rest
                .split('<')
                .next()
                .expect("n")
                .parse()
                .expect("a number");
            out.insert((bucket.clone(), key.to_owned()), n);
        }
    }
    out
}

/// The numbers of a table for one column, summed over its rows.
fn column(t: &BTreeMap<(String, String), i64>, key: &str) -> i64 {
    t.iter()
        .filter(|((_, k), _)| k == key)
        .map(|(_, n)| n)
        .sum()
}

fn day(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .expect("time")
        .strftime("%Y-%m-%d")
        .to_string()
}

/// Monday of the week of a time, as the page labels weeks.
fn week(us: i64) -> String {
    let date = jiff::Timestamp::from_microsecond(us)
        .expect("time")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let back = i64::from(date.weekday().to_monday_zero_offset());
    date.checked_sub(jiff::Span::new().days(back))
        .expect("a date")
        .to_string()
}

/// The same numbers worked out from the store's records, for a reader of `org` whose
/// organisation controls `sources` (`None`: a region role, every record): the accesses by
/// `org`'s staff and those that disclosed data from `sources`.
async fn expected(
    app: &TestApp,
    scope: Option<(&str, &[&str])>,
) -> [BTreeMap<(String, String), i64>; 3] {
    let mut out: [BTreeMap<(String, String), i64>; 3] = Default::default();
    for (_, b) in records(app).await {
        if let Some((org, sources)) = scope {
            let by_staff = b.org.as_deref() == Some(org);
            let of_data = b.disclosed.iter().any(|d| {
                sources
                    .iter()
                    .any(|s| d.reference.contains(&format!("/{s}.")))
            });
            if !by_staff && !of_data {
                continue;
            }
        }
        if b.outcome == "success"
            && let Some(p) = &b.purpose
        {
            *out[0].entry((day(b.recorded_us), p.clone())).or_default() += 1;
            if p == "ETREAT" {
                let who = b.org.clone().unwrap_or_else(|| "no organisation".into());
                *out[1].entry((week(b.recorded_us), who)).or_default() += 1;
            }
        }
        if b.outcome == "refused" {
            *out[2]
                .entry((day(b.recorded_us), "Refused".into()))
                .or_default() += 1;
        }
    }
    out
}

/// Leaves out the zeros and the totals of a page's table.
fn nonzero(t: BTreeMap<(String, String), i64>) -> BTreeMap<(String, String), i64> {
    t.into_iter()
        .filter(|((_, k), n)| *n != 0 && k != "total")
        .collect()
}

/// Staff of the GP and of RY4 see the GP's records for care (`TREAT`, `CAREMGT`) and in an
/// emergency (`ETREAT`).
const CHARTS_AGREEMENT: &str = r#"[agreement]
id = "test-console-charts"
title = "Console charts tests"
version = "1"
status = "active"
legal_basis = ["test"]
valid_from = "2020-01-01"
valid_until = "2099-12-31"
owner = "tests"

[parties]
disclosers = ["A81001", "RY4"]
recipients = ["A81001", "RY4"]

[[rule]]
id = "care"
purpose_of_use = ["TREAT", "CAREMGT"]
roles = ["clinician"]
resources = ["*"]

[[rule]]
id = "emergency"
purpose_of_use = ["ETREAT"]
roles = ["clinician"]
resources = ["*"]
"#;

async fn charts_count_known_requests(store_choice: StoreChoice) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let toml = format!(
        "{}region_roles = [\"caldicott-guardian\"]\n",
        console_toml(&idp)
    );
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let app = TestApp::start_config(
        vec![
            SourceSpec::ndjson("gp", "Riverside GP", "A81001", demo.join("gp")),
            SourceSpec::ndjson(
                "community",
                "Northshire Community Health",
                "RY4",
                demo.join("community"),
            ),
        ],
        store_choice,
        "",
        Policies::Files(vec![("charts.toml".into(), CHARTS_AGREEMENT.into())]),
        &toml,
    )
    .await;
    let ann = app.patient_id(DEMO_ANN).await;
    let search = format!("Observation?patient={ann}");
    let send = |token: String, path: String, glass: bool| {
        let app = &app;
        async move {
            let bearer = format!("Bearer {token}");
            let mut headers = vec![("Authorization", bearer.as_str())];
            if glass {
                headers.push(("X-Break-Glass-Reason", "unconscious in A&E"));
            }
            app.get_raw(&path, &headers).await.status
        }
    };
    let gp = app.token_with(&[]);
    let caremgt = app.token_with(&[("purpose_of_use", json!("CAREMGT"))]);
    let ry4 = app.token_with(&[("sub", json!("dr-ry4")), ("org", json!("RY4"))]);
    // Answered: TREAT 1 (the lookup above) + 3, CAREMGT 2, ETREAT 2 by the GP and 1 by RY4.
    for _ in 0..3 {
        assert_eq!(
            send(gp.clone(), search.clone(), false).await,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(
            send(caremgt.clone(), search.clone(), false).await,
            StatusCode::OK
        );
        assert_eq!(send(gp.clone(), search.clone(), true).await, StatusCode::OK);
    }
    assert_eq!(
        send(ry4.clone(), search.clone(), true).await,
        StatusCode::OK
    );
    // RY4's staff read their own organisation's data, nothing of the GP's: 1 TREAT.
    let community_only = "Observation/community.RY4-5280932-obs-5".to_owned();
    assert_eq!(
        send(ry4.clone(), community_only, false).await,
        StatusCode::OK
    );
    // Refused: 4 by the GP's staff (404), 1 by RY4's, 1 without a token.
    for _ in 0..4 {
        let status = send(gp.clone(), "Patient/gp.nobody".into(), false).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        send(ry4, "Patient/gp.nobody".into(), false).await,
        StatusCode::NOT_FOUND
    );
    let anonymous = app.get_raw(&search, &[]).await.status;
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);

    // The GP's IG lead: the GP's staff's accesses, and RY4's staff's emergency access to
    // the GP's data; not RY4's read of its own data, nor RY4's refusal, which disclosed
    // nothing of the GP's.
    let mut v = ig(&app).await;
    let page = v.get(&format!("{}/console/charts", app.origin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    no_script_no_inline_style(&page);
    assert_eq!(
        page.body.matches("role=\"img\"").count(),
        3,
        "three pictures"
    );
    for id in ["accesses", "break-glass", "refusals"] {
        assert!(
            page.body
                .contains(&format!("aria-labelledby=\"{id}-title {id}-desc\"")),
            "{id} is labelled"
        );
    }
    assert!(!page.body.contains(DEMO_ANN), "no person named");
    let accesses = table(&page.body, "accesses-table");
    assert_eq!(
        accesses.keys().filter(|(_, k)| k == "total").count(),
        30,
        "30 days"
    );
    assert_eq!(
        column(&accesses, "TREAT"),
        4,
        "not RY4's read of its own data"
    );
    assert_eq!(column(&accesses, "CAREMGT"), 2);
    assert_eq!(column(&accesses, "ETREAT"), 3, "RY4's to the GP's data too");
    assert_eq!(column(&accesses, "total"), 9);
    let glass = table(&page.body, "break-glass-table");
    assert_eq!(column(&glass, "A81001"), 2);
    assert_eq!(
        column(&glass, "RY4"),
        1,
        "RY4's staff's emergency access to the GP's data"
    );
    let refusals = table(&page.body, "refusals-table");
    assert_eq!(column(&refusals, "Refused"), 4, "not RY4's");
    assert!(
        page.body
            .contains("the requests by anyone that disclosed data A81001 discloses"),
        "the page says what it counts"
    );
    let [want_accesses, want_glass, want_refusals] =
        expected(&app, Some(("A81001", &["gp"]))).await;
    assert_eq!(nonzero(accesses), want_accesses);
    assert_eq!(nonzero(glass), want_glass);
    assert_eq!(nonzero(refusals), want_refusals);

    // RY4's IG lead: RY4's staff's accesses (their emergency access to the GP's data
    // included) and anyone's that disclosed community data; not the GP's staff's reads of
    // the GP's own data.
    let mut user = ig_lead();
    user.insert("sub".into(), "ry4-ig-1".into());
    user.insert("org".into(), "RY4".into());
    idp.set_user(user);
    let mut community = ig(&app).await;
    let page = community
        .get(&format!("{}/console/charts", app.origin))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let accesses = table(&page.body, "accesses-table");
    assert_eq!(
        column(&accesses, "CAREMGT"),
        0,
        "the GP's staff's, of its data"
    );
    let glass = table(&page.body, "break-glass-table");
    assert_eq!((column(&glass, "A81001"), column(&glass, "RY4")), (0, 1));
    let refusals = table(&page.body, "refusals-table");
    assert_eq!(column(&refusals, "Refused"), 1, "RY4's staff's only");
    let [want_accesses, want_glass, want_refusals] =
        expected(&app, Some(("RY4", &["community"]))).await;
    assert_eq!(nonzero(accesses), want_accesses);
    assert_eq!(nonzero(glass), want_glass);
    assert_eq!(nonzero(refusals), want_refusals);

    // A region-wide role: everyone's.
    let mut user = ig_lead();
    user.insert("sub".into(), "icb-ig-1".into());
    user.insert("org".into(), "X24".into());
    user.insert("role".into(), "caldicott-guardian".into());
    idp.set_user(user);
    let mut region = ig(&app).await;
    let page = region.get(&format!("{}/console/charts", app.origin)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let accesses = table(&page.body, "accesses-table");
    assert_eq!(column(&accesses, "ETREAT"), 3);
    let glass = table(&page.body, "break-glass-table");
    assert_eq!((column(&glass, "A81001"), column(&glass, "RY4")), (2, 1));
    let refusals = table(&page.body, "refusals-table");
    assert_eq!(column(&refusals, "Refused"), 6);
    let [want_accesses, want_glass, want_refusals] = expected(&app, None).await;
    assert_eq!(nonzero(accesses), want_accesses);
    assert_eq!(nonzero(glass), want_glass);
    assert_eq!(nonzero(refusals), want_refusals);

    // A chosen range: one day, today; and ranges that cannot be used.
    let today = day(jiff::Timestamp::now().as_microsecond());
    let page = region
        .get(&format!(
            "{}/console/charts?from={today}&to={today}",
            app.origin
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let accesses = table(&page.body, "accesses-table");
    assert_eq!(accesses.keys().filter(|(_, k)| k == "total").count(), 1);
    for (query, field, message) in [
        (
            "from=2026-02-01&to=2026-01-01",
            "f-to",
            "must not end before it starts",
        ),
        ("from=2020-01-01&to=2026-01-01", "f-to", "at most 366 days"),
        (
            "from=01%2F02%2F2026",
            "f-from",
            "the date from must be a date",
        ),
    ] {
        let page = region
            .get(&format!("{}/console/charts?{query}", app.origin))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        page.assert_mistakes(&[field], &[message]);
        assert!(!page.body.contains("role=\"img\""), "no pictures");
    }
    let mut anonymous = Visitor::new();
    let page = anonymous
        .get(&format!("{}/console/charts", app.origin))
        .await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "no session, no pictures"
    );
}

#[tokio::test]
async fn charts_count_known_requests_on_sqlite() {
    charts_count_known_requests(StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn charts_count_known_requests_on_postgresql() {
    let Some(db) = postgres().await else {
        return;
    };
    charts_count_known_requests(StoreChoice::Postgres(db.url().to_owned())).await;
}
