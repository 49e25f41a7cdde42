//! `GET /fhir/AuditEvent`: the audit log searched and read over HTTP after real traffic
//! through the demo agreements (staff of three organisations, a break-glass request, a refusal,
//! a failed source, the person and their carer), on SQLite and on PostgreSQL.
//!
//! Expectations are computed from the store itself, read just before each search: the records
//! a search should return are exactly the stored ones its filters select, newest first.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use concord::audit::Body;
use concord::audit::event::{EXT_BREAK_GLASS_REASON, EXTENSION_BASE};
use concord::store::Store;
use futures_util::TryStreamExt;

use crate::agreements::{
    DORA, EVE, World, as_, person_id, person_token, shipped, world_audited, world_on,
};
use crate::support::app::{StoreChoice, TestApp, matches, next_link, outcomes, postgres};
use crate::support::data::NOBODY;
use crate::support::upstream::Mode;

const REASON: &str = "Collapsed in clinic, no history available";

/// One stored record: its AuditEvent id, time and body.
#[derive(Debug, Clone)]
struct Stored {
    id: String,
    recorded_us: i64,
    chain: String,
    seq: i64,
    body: Body,
}

/// Every record in the store, newest first (the order the API promises).
async fn stored(url: &str) -> Vec<Stored> {
    let store = Store::connect(url, 1).await.expect("the gateway's store");
    let rows: Vec<concord::audit::Record> = store.audit_rows().try_collect().await.expect("rows");
    let mut out: Vec<Stored> = rows
        .into_iter()
        .map(|r| {
            let body: Body = serde_json::from_str(&r.body).expect("a body");
            Stored {
                id: format!("{}.{}", r.chain, r.seq),
                recorded_us: body.recorded_us,
                chain: r.chain.clone(),
                seq: r.seq,
                body,
            }
        })
        .collect();
    out.sort_by(|a, b| (b.recorded_us, &b.chain, b.seq).cmp(&(a.recorded_us, &a.chain, a.seq)));
    if let Store::Postgres(pool) = store {
        pool.close().await;
    }
    out
}

fn sqlite_url(app: &TestApp) -> String {
    format!("sqlite://{}", app.dir().join("data/concord.db").display())
}

/// A staff token: user id, name, organisation, role, purpose and scopes.
fn staff(app: &TestApp, user: &str, org: &str, role: &str, purpose: &str, scope: &str) -> String {
    app.token_with(&[
        ("sub", json!(user)),
        ("name", json!(format!("Name of {user}"))),
        ("org", json!(org)),
        ("role", json!(role)),
        ("purpose_of_use", json!(purpose)),
        ("scope", json!(scope)),
    ])
}

/// The region-wide IG role of these gateways (`[audit] region_roles`): it sees every record.
const REGION: &str = "icb-ig";

/// A gateway under the demo agreements whose `icb-ig` role reads the whole audit log.
async fn region_world(store: StoreChoice) -> World {
    world_audited(
        shipped(),
        "",
        store,
        &format!("region_roles = [\"{REGION}\"]"),
    )
    .await
}

/// The region's IG lead (of an organisation no agreement names).
fn ig_lead(app: &TestApp) -> String {
    staff(
        app,
        "ig-lead-1",
        "X24",
        REGION,
        "HOPERAT",
        "user/AuditEvent.rs",
    )
}

/// The gateway ids of the two people.
struct People {
    dora: String,
    eve: String,
}

/// Traffic under the demo agreements: several staff users, organisations and purposes, an
/// emergency access, a refusal, a failed provider, the person and their carer, no token.
async fn traffic(w: &World) -> People {
    let app = &w.app;
    let dora = person_id(app, DORA).await;
    let eve = person_id(app, EVE).await;
    let get = |token: String, path: String, extra: Vec<(&'static str, &'static str)>| async move {
        as_(app, &token, &path, &extra).await
    };
    let gp = staff(app, "dr-gp", "A81001", "clinician", "TREAT", "user/*.rs");
    let (s, _) = get(gp.clone(), format!("Patient/{dora}/$everything"), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let nurse = staff(app, "nurse-ry4", "RY4", "nurse", "TREAT", "user/*.rs");
    let (s, _) = get(nurse, format!("Condition?patient={dora}"), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let sw = staff(
        app,
        "sw-la",
        "LA001",
        "social-worker",
        "CAREMGT",
        "user/*.rs",
    );
    let (s, _) = get(sw, format!("Patient/{eve}/$everything"), vec![]).await;
    assert_eq!(s, StatusCode::OK);
    let er = staff(app, "dr-ry4", "RY4", "clinician", "TREAT", "user/*.rs");
    let (s, body) = get(
        er,
        format!("Patient/{eve}/$everything"),
        vec![("X-Break-Glass-Reason", REASON)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let receptionist = staff(app, "rec-a", "A81001", "receptionist", "TREAT", "user/*.rs");
    let (s, _) = get(receptionist, format!("Patient/{dora}/$everything"), vec![]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    w.gp.set_mode(Mode::Status(500));
    let (s, _) = get(gp.clone(), "Condition/gp.c-ht".into(), vec![]).await;
    assert!(s.is_server_error(), "{s}");
    w.gp.set_mode(Mode::Normal);
    let (s, _) = get(
        person_token(app, DORA, None),
        format!("Patient/{dora}/$everything"),
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(
        person_token(app, DORA, Some("DAU")),
        format!("Patient/{dora}/$everything"),
        vec![],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let a = app.get_raw("Observation?patient=x", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    People { dora, eve }
}

/// Every AuditEvent of a search, following `next` links; also the page sizes.
async fn walk(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Vec<usize>) {
    let mut url = format!("AuditEvent?{query}");
    let mut events = Vec::new();
    let mut pages = Vec::new();
    loop {
        let (status, page) = as_(app, token, &url, &[]).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        assert_eq!(page["type"], "searchset");
        assert!(page.get("total").is_none(), "no total is counted");
        let found = matches(&page);
        assert!(found.iter().all(|e| e["resourceType"] == "AuditEvent"));
        pages.push(found.len());
        events.extend(found);
        assert!(pages.len() < 200, "paging does not end");
        match next_link(&page) {
            Some(next) => {
                assert!(next.starts_with(&app.base), "{next}");
                url = next;
            }
            None => break,
        }
    }
    (events, pages)
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Searches as `token` and checks the answer is exactly the stored records `select` picks,
/// newest first, each once. Returns the events.
async fn check(
    app: &TestApp,
    url: &str,
    token: &str,
    query: &str,
    select: impl Fn(&Stored) -> bool,
) -> Vec<Value> {
    let expected: Vec<String> = stored(url)
        .await
        .iter()
        .filter(|s| select(s))
        .map(|s| s.id.clone())
        .collect();
    let (events, _) = walk(app, token, query).await;
    let got = ids(&events);
    assert_eq!(got, expected, "{query}");
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "{query}: duplicates"
    );
    events
}

fn is(value: &Option<String>, expected: &str) -> bool {
    value.as_deref() == Some(expected)
}

/// An instant in FHIR form, to the millisecond (what a client would write), and the
/// microsecond it stands for (the start of that millisecond).
fn instant(us: i64) -> (String, i64) {
    let ms = us.div_euclid(1000);
    let ts = jiff::Timestamp::from_millisecond(ms).expect("time");
    (ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), ms * 1000)
}

/// The searches an IG lead makes, each checked against the store.
async fn searches(app: &TestApp, url: &str, people: &People) {
    let ig = ig_lead(app);
    let dora = people.dora.clone();
    let eve = people.eve.clone();

    // Everything, in pages of 3: every record once, newest first, no gaps.
    let all_before = stored(url).await;
    let (events, pages) = walk(app, &ig, "_count=3").await;
    assert_eq!(
        ids(&events),
        all_before.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    );
    assert!(pages.len() > 3, "{pages:?}");
    assert!(pages.iter().all(|n| *n <= 3), "{pages:?}");
    assert!(
        pages[..pages.len() - 1].iter().all(|n| *n == 3),
        "{pages:?}"
    );

    let p = |s: &Stored, id: &str| is(&s.body.person, id);
    check(app, url, &ig, &format!("patient=Patient/{dora}"), |s| {
        p(s, &dora)
    })
    .await;
    check(app, url, &ig, &format!("patient={eve}"), |s| p(s, &eve)).await;
    check(app, url, &ig, &format!("patient={dora},{eve}"), |s| {
        p(s, &dora) || p(s, &eve)
    })
    .await;
    check(app, url, &ig, "agent=nurse-ry4", |s| {
        is(&s.body.user, "nurse-ry4")
    })
    .await;
    check(app, url, &ig, "agent-org=RY4", |s| is(&s.body.org, "RY4")).await;
    check(
        app,
        url,
        &ig,
        "agent-org=https://fhir.nhs.uk/Id/ods-organization-code|LA001",
        |s| is(&s.body.org, "LA001"),
    )
    .await;
    check(
        app,
        url,
        &ig,
        &format!("agent-org=RY4&patient={eve}"),
        |s| is(&s.body.org, "RY4") && p(s, &eve),
    )
    .await;
    let refused = check(app, url, &ig, "outcome=4", |s| s.body.outcome == "refused").await;
    assert!(refused.len() >= 2, "the 403 and the 401");
    assert!(refused.iter().all(|e| e["outcome"] == "4"));
    let errors = check(app, url, &ig, "outcome=8", |s| s.body.outcome == "error").await;
    assert_eq!(errors.len(), 1, "the failed provider");
    assert_eq!(errors[0]["outcomeDesc"], "HTTP 503 Service Unavailable");
    check(app, url, &ig, "outcome=refused,error", |s| {
        s.body.outcome != "success"
    })
    .await;
    check(app, url, &ig, "outcome=0", |s| s.body.outcome == "success").await;
    check(app, url, &ig, "purpose=CAREMGT", |s| {
        is(&s.body.purpose, "CAREMGT")
    })
    .await;

    // By agreement (`policy`, where AuditEvent carries the agreements behind a disclosure).
    let under =
        |s: &Stored, agreement: &str| s.body.disclosed.iter().any(|d| &*d.agreement == agreement);
    let emergency = check(
        app,
        url,
        &ig,
        "policy=dsa-northshire-emergency-access",
        |s| under(s, "dsa-northshire-emergency-access"),
    )
    .await;
    assert_eq!(emergency.len(), 1, "the break-glass request");
    assert_eq!(
        emergency[0]["agent"][0]["policy"][0],
        "dsa-northshire-emergency-access"
    );
    check(
        app,
        url,
        &ig,
        "policy=dsa-northshire-direct-care,dsa-northshire-social-care-records",
        |s| {
            under(s, "dsa-northshire-direct-care") || under(s, "dsa-northshire-social-care-records")
        },
    )
    .await;

    // The break-glass review queue.
    let glass = check(app, url, &ig, "purpose=ETREAT", |s| {
        is(&s.body.purpose, "ETREAT")
    })
    .await;
    assert_eq!(glass.len(), 1, "{glass:?}");
    let g = &glass[0];
    assert_eq!(g["agent"][0]["who"]["identifier"]["value"], "dr-ry4");
    assert_eq!(g["agent"][1]["who"]["identifier"]["value"], "RY4");
    assert_eq!(g["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    assert_eq!(
        g["entity"][0]["what"]["reference"],
        format!("Patient/{eve}")
    );
    let reason = g["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == EXT_BREAK_GLASS_REASON)
        .expect("the reason");
    assert_eq!(reason["valueString"], REASON);
    let emergency: Vec<&Value> = g["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["securityLabel"][0]["code"] == "ETREAT")
        .collect();
    assert!(
        emergency
            .iter()
            .any(|e| e["what"]["reference"] == "Condition/gp.c-eve"
                && e["detail"][0]["valueString"] == "dsa-northshire-emergency-access"),
        "{g}"
    );

    // Dates: instants at millisecond precision, a range, and a whole day.
    let now = stored(url).await;
    let middle = &now[now.len() / 2];
    let (t, t_us) = instant(middle.recorded_us);
    let t_end = t_us + 1000;
    check(app, url, &ig, &format!("date=ge{t}"), |s| {
        s.recorded_us >= t_us
    })
    .await;
    check(app, url, &ig, &format!("date=gt{t}"), |s| {
        s.recorded_us >= t_end
    })
    .await;
    check(app, url, &ig, &format!("date=lt{t}"), |s| {
        s.recorded_us < t_us
    })
    .await;
    let before = check(app, url, &ig, &format!("date=le{t}"), |s| {
        s.recorded_us < t_end
    })
    .await;
    assert!(!before.is_empty());
    let oldest = now.last().expect("records");
    let (from, from_us) = instant(oldest.recorded_us + 1000);
    let range = check(
        app,
        url,
        &ig,
        &format!("date=ge{from}&date=lt{t}&agent-org=A81001"),
        |s| s.recorded_us >= from_us && s.recorded_us < t_us && is(&s.body.org, "A81001"),
    )
    .await;
    assert!(
        range
            .iter()
            .all(|e| e["agent"][1]["who"]["identifier"]["value"] == "A81001")
    );
    let day = jiff::Timestamp::from_microsecond(middle.recorded_us)
        .expect("time")
        .strftime("%Y-%m-%d")
        .to_string();
    // A UTC day is 86,400 seconds of Unix time.
    const DAY_US: i64 = 86_400_000_000;
    let day_start = middle.recorded_us.div_euclid(DAY_US) * DAY_US;
    let day_end = day_start + DAY_US;
    let today = check(app, url, &ig, &format!("date=eq{day}"), |s| {
        (day_start..day_end).contains(&s.recorded_us)
    })
    .await;
    assert!(!today.is_empty());
    check(app, url, &ig, &format!("date={day}&purpose=ETREAT"), |s| {
        (day_start..day_end).contains(&s.recorded_us) && is(&s.body.purpose, "ETREAT")
    })
    .await;
    check(app, url, &ig, "date=lt2020-01-01", |_| false).await;

    // Read by id gives the same resource as the search.
    let (status, read) = as_(
        app,
        &ig,
        &format!("AuditEvent/{}", g["id"].as_str().expect("id")),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(&read, g);
}

#[tokio::test]
async fn an_ig_lead_searches_by_every_parameter_newest_first_in_pages() {
    let w = region_world(StoreChoice::Sqlite).await;
    let people = traffic(&w).await;
    searches(&w.app, &sqlite_url(&w.app), &people).await;
}

/// The same searches with the store on PostgreSQL (when `CONCORD_TEST_DATABASE_URL` is set).
#[tokio::test]
async fn an_ig_lead_searches_on_postgres_too() {
    let Some(db) = postgres().await else {
        return;
    };
    let w = region_world(StoreChoice::Postgres(db.url().to_owned())).await;
    let people = traffic(&w).await;
    searches(&w.app, db.url(), &people).await;
    drop(w);
    db.drop().await;
}

#[tokio::test]
async fn a_person_sees_the_records_about_them_without_staff_details() {
    let w = world_on(shipped(), "", StoreChoice::Sqlite).await;
    let app = &w.app;
    let url = sqlite_url(app);
    let people = traffic(&w).await;
    let dora = people.dora.clone();
    let me = app.token_with(&[
        ("scope", json!("patient/AuditEvent.rs")),
        ("nhs_number", json!(DORA)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let mine = check(app, &url, &me, "", |s| is(&s.body.person, &dora)).await;
    // The staff's, the person's own and the carer's requests about her.
    assert!(mine.len() >= 4, "{}", mine.len());
    let text = serde_json::to_string(&mine).expect("json");
    for hidden in [
        "dr-gp",
        "nurse-ry4",
        "rec-a",
        "dr-test",
        "Name of",
        "Dr Test",
        "127.0.0.1",
        EXTENSION_BASE,
        "L2ZoaXIv", // "/fhir/" in base64: the query text
        "XrequestId",
    ] {
        assert!(
            !text.contains(hidden),
            "`{hidden}` shown to the person: {text}"
        );
    }
    // What she is told: which organisation, in what role, why, when, what and how it ended.
    let gp = mine
        .iter()
        .find(|e| {
            e["agent"][1]["who"]["identifier"]["value"] == "A81001"
                && e["subtype"][0]["code"] == "operation"
                && e["outcome"] == "0"
        })
        .expect("the GP's $everything");
    // The GP receptionist's refused attempt is about her too.
    assert!(
        mine.iter()
            .any(|e| { e["agent"][0]["role"][0]["text"] == "receptionist" && e["outcome"] == "4" }),
        "the refused attempt"
    );
    assert_eq!(gp["agent"][0]["role"][0]["text"], "clinician");
    assert_eq!(gp["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(gp["outcome"], "0");
    assert!(gp["recorded"].as_str().is_some());
    assert!(
        mine.iter()
            .any(|e| e["agent"][0]["role"][0]["coding"][0]["code"] == "DAU"),
        "her daughter's access"
    );

    // Searches by agent stay within her own records; naming anyone else is refused.
    check(app, &url, &me, "agent=nurse-ry4", |s| {
        is(&s.body.person, &dora) && is(&s.body.user, "nurse-ry4")
    })
    .await;
    check(
        app,
        &url,
        &me,
        &format!("patient=Patient/{dora}&agent-org=RY4"),
        |s| is(&s.body.person, &dora) && is(&s.body.org, "RY4"),
    )
    .await;
    for other in [
        format!("patient={}", people.eve),
        format!("patient={dora},{}", people.eve),
    ] {
        let (status, body) = as_(app, &me, &format!("AuditEvent?{other}"), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{other}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }

    // Reads: her own records, not Eve's (404, as for one that does not exist).
    let all = stored(&url).await;
    let own = all
        .iter()
        .find(|s| is(&s.body.person, &dora))
        .expect("hers");
    let (status, read) = as_(app, &me, &format!("AuditEvent/{}", own.id), &[]).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read.get("extension").is_none());
    let eves = all
        .iter()
        .find(|s| is(&s.body.person, &people.eve))
        .expect("Eve's");
    let (status, _) = as_(app, &me, &format!("AuditEvent/{}", eves.id), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unrelated = all
        .iter()
        .find(|s| s.body.person.is_none())
        .expect("no person");
    let (status, _) = as_(app, &me, &format!("AuditEvent/{}", unrelated.id), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Her AuditEvent requests are recorded as about her.
    let newest = stored(&url).await.remove(0);
    assert_eq!(newest.body.route, "/fhir/AuditEvent/{id}");
    assert_eq!(newest.body.person.as_deref(), Some(dora.as_str()));
    assert_eq!(newest.body.caller, "patient");
    let (status, _) = as_(app, &me, "AuditEvent?_count=1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let newest = stored(&url).await.remove(0);
    assert_eq!(newest.body.route, "/fhir/AuditEvent");
    assert_eq!(newest.body.person.as_deref(), Some(dora.as_str()));
    assert_eq!(
        (newest.body.status, newest.body.outcome.as_str()),
        (200, "success")
    );

    // Someone the gateway has never met has no records.
    let nobody = app.token_with(&[
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(NOBODY)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let (status, body) = as_(app, &nobody, "AuditEvent", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(matches(&body).is_empty());
    let (status, _) = as_(app, &nobody, &format!("AuditEvent?patient={dora}"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn everyone_else_is_refused_and_bad_requests_are_400() {
    let w = region_world(StoreChoice::Sqlite).await;
    let app = &w.app;
    let url = sqlite_url(app);
    let dora = person_id(app, DORA).await;
    let refused = [
        ("a carer", person_token(app, DORA, Some("DAU"))),
        (
            "a clinician",
            staff(app, "dr-gp", "A81001", "clinician", "TREAT", "user/*.rs"),
        ),
        (
            "a clinician with the scope",
            staff(
                app,
                "dr-gp",
                "A81001",
                "clinician",
                "TREAT",
                "user/AuditEvent.rs",
            ),
        ),
        (
            "an IG lead without the scope",
            staff(
                app,
                "ig",
                "X24",
                "ig-lead",
                "HOPERAT",
                "user/Patient.rs user/Consent.rs",
            ),
        ),
        (
            "an IG lead with patient scopes",
            staff(
                app,
                "ig",
                "X24",
                "ig-lead",
                "HOPERAT",
                "user/Patient.rs patient/AuditEvent.rs",
            ),
        ),
        (
            "a role that is neither ig-lead nor a region role",
            staff(
                app,
                "guardian",
                "A81001",
                "caldicott-guardian",
                "HOPERAT",
                "user/AuditEvent.rs",
            ),
        ),
        (
            "a region role without the scope",
            staff(app, "icb", "X24", REGION, "HOPERAT", "user/Patient.rs"),
        ),
        (
            "a person without the scope",
            app.token_with(&[
                ("scope", json!("patient/Patient.rs")),
                ("nhs_number", json!(DORA)),
                ("role", json!("patient")),
            ]),
        ),
    ];
    for (who, token) in &refused {
        for path in [
            "AuditEvent".to_owned(),
            format!("AuditEvent?patient={dora}"),
        ] {
            let (status, body) = as_(app, token, &path, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who} {path}: {body}");
            assert_eq!(body["resourceType"], "OperationOutcome", "{who}");
        }
    }
    let a = app.get_raw("AuditEvent", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.headers.contains_key("www-authenticate"));

    // An IG lead needs no data-sharing agreement: a wildcard scope covers AuditEvent, and an
    // organisation no agreement names is no obstacle to a region role.
    let ig = staff(app, "ig", "X24", REGION, "HOPERAT", "user/*.rs");
    let (status, body) = as_(app, &ig, "AuditEvent?_count=5", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!matches(&body).is_empty());
    // An IG lead of an organisation with neither staff nor data in the log reads nothing:
    // its first search is empty and another's record is 404, as for one that does not exist.
    let outsider = staff(app, "ig-y99", "Y99", "ig-lead", "HOPERAT", "user/*.rs");
    let (status, body) = as_(app, &outsider, "AuditEvent", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(matches(&body).is_empty(), "{body}");
    let gps = stored(&url)
        .await
        .into_iter()
        .find(|s| is(&s.body.org, "A81001"))
        .expect("a record of the GP's staff");
    let (status, _) = as_(app, &outsider, &format!("AuditEvent/{}", gps.id), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its own searches are its staff's accesses, so it reads those from then on.
    let (status, body) = as_(app, &outsider, "AuditEvent", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = matches(&body);
    let orgs: Vec<&Value> = found
        .iter()
        .map(|e| &e["agent"][1]["who"]["identifier"]["value"])
        .collect();
    assert_eq!(orgs, [&json!("Y99"), &json!("Y99")], "{body}");
    // ... but it gives no access to care records.
    let (status, _) = as_(app, &ig, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    for bad in [
        "date=2026-13-01",
        "date=yesterday",
        "date=ap2026-01-01",
        "_count=abc",
        "_count=-5",
        "outcome=7",
        "outcome=failure",
        "patient=Group/1",
        "agent-org=http://example.org|RY4",
        "_sort=date",
        "_cursor=garbage",
        "policy=",
        "policy=a,,b",
    ] {
        let (status, body) = as_(app, &ig, &format!("AuditEvent?{bad}"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{bad}");
        assert_eq!(body["issue"][0]["code"], "invalid", "{bad}");
    }
    // Unknown parameters: ignored and said so, or 400 under Prefer: handling=strict.
    let (status, body) = as_(app, &ig, "AuditEvent?colour=blue&_count=2", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        outcomes(&body).iter().any(|o| o.contains("`colour`")),
        "{body}"
    );
    let self_link = body["link"][0]["url"].as_str().expect("self");
    assert!(
        self_link.contains("_count=2") && !self_link.contains("colour"),
        "{self_link}"
    );
    let (status, _) = as_(
        app,
        &ig,
        "AuditEvent?colour=blue",
        &[("Prefer", "handling=strict")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Reads: unknown and malformed ids.
    let any = stored(&url).await.remove(0);
    let (status, read) = as_(app, &ig, &format!("AuditEvent/{}", any.id), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["id"], any.id);
    for missing in [
        format!("{}.{}", any.chain, any.seq + 1000),
        "00000000-0000-0000-0000-000000000000.0".to_owned(),
        "not-an-audit-event".to_owned(),
    ] {
        let (status, body) = as_(app, &ig, &format!("AuditEvent/{missing}"), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
    }
    let (status, _) = as_(app, &ig, "AuditEvent/a_b", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The IG lead's own searches are audited, about the person they named.
    let (status, _) = as_(app, &ig, &format!("AuditEvent?patient={dora}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let newest = stored(&url).await.remove(0);
    assert_eq!(newest.body.route, "/fhir/AuditEvent");
    assert_eq!(newest.body.user.as_deref(), Some("ig"));
    assert_eq!(newest.body.person.as_deref(), Some(dora.as_str()));
    assert_eq!(
        newest.body.target,
        format!("/fhir/AuditEvent?patient={dora}")
    );
    let refused_record = stored(&url)
        .await
        .into_iter()
        .find(|s| s.body.route == "/fhir/AuditEvent" && s.body.status == 403)
        .expect("refusals are audited too");
    assert_eq!(refused_record.body.outcome, "refused");

    // The CapabilityStatement lists exactly what works.
    let (status, cs) = app.get_root("/fhir/metadata").await;
    assert_eq!(status, StatusCode::OK);
    let cs: Value = serde_json::from_str(&cs).expect("json");
    let audit = cs["rest"][0]["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent")
        .clone();
    let params: Vec<&str> = audit["searchParam"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        params,
        [
            "patient",
            "agent",
            "agent-org",
            "date",
            "outcome",
            "purpose",
            "policy",
            "review"
        ]
    );
    let interactions: Vec<&str> = audit["interaction"]
        .as_array()
        .expect("interactions")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert_eq!(interactions, ["read", "search-type"]);
}
