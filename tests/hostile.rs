//! Hostile input, class by class (issue 13): what an attacker or a careless client sends, and
//! what the gateway must do with it. Each class is a table; a new attack of a known class is
//! one row. Every refusal is an OperationOutcome with the right status, never a 5xx, and
//! every `/fhir` request is in the audit log with no credential in it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use concord::audit::Body;

use crate::audit::bodies;
use crate::read_path::{specs, three_sources};
use crate::support::app::{StoreChoice, TestApp, matches, outcome_issues};
use crate::support::data::{ANN, NOBODY};

/// One row: what is sent, and what must come back.
struct Case {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: StatusCode,
    /// The parameter or element the OperationOutcome must name, if any.
    names: Option<&'static str>,
}

impl Case {
    fn get(what: &'static str, path: impl Into<String>, status: StatusCode) -> Case {
        Case {
            what,
            method: reqwest::Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            status,
            names: None,
        }
    }

    fn naming(mut self, expression: &'static str) -> Case {
        self.names = Some(expression);
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn method(mut self, method: reqwest::Method) -> Case {
        self.method = method;
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Case {
        self.body = Some(body.into());
        self
    }
}

/// Sends every case with `token` (unless the case sets its own Authorization) and checks
/// the status, the OperationOutcome and that each one left exactly one audit record.
async fn run(app: &TestApp, token: &str, cases: Vec<Case>) {
    run_on(app, token, cases, true).await;
}

/// [`run`]; `sqlite` says whether the audit records can be counted in the app's SQLite file.
async fn run_on(app: &TestApp, token: &str, cases: Vec<Case>, sqlite: bool) {
    for case in cases {
        let before = if sqlite { bodies(app).await.len() } else { 0 };
        let url = if case.path.starts_with("http") {
            case.path.clone()
        } else {
            format!("{}/{}", app.base, case.path)
        };
        let mut request = app.client.request(case.method.clone(), &url);
        if !case.headers.iter().any(|(n, _)| *n == "Authorization") {
            request = request.bearer_auth(token);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &case.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, case.status, "{}: {text}", case.what);
        assert!(!status.is_server_error(), "{}: {text}", case.what);
        if !status.is_success() {
            let outcome: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.what));
            assert_eq!(outcome["resourceType"], "OperationOutcome", "{}", case.what);
            if let Some(name) = case.names {
                let expression = outcome["issue"][0]["expression"][0].as_str();
                let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
                assert!(
                    expression == Some(name) || diagnostics.contains(&format!("`{name}`")),
                    "{}: the outcome names `{name}`: {text}",
                    case.what
                );
            }
        }
        if !sqlite {
            continue;
        }
        let after = bodies(app).await;
        assert_eq!(
            after.len(),
            before + 1,
            "{}: exactly one audit record for the request",
            case.what
        );
        let record = &after[after.len() - 1];
        assert_eq!(record.status, status.as_u16(), "{}", case.what);
    }
}

async fn gateway() -> (TestApp, String) {
    gateway_on(StoreChoice::Sqlite).await
}

async fn gateway_on(store: StoreChoice) -> (TestApp, String) {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start_with(specs(&gp, &community, &social), store, "").await;
    let id = app.patient_id(ANN).await;
    // The upstreams live as long as the test needs them: leak them into the test's lifetime.
    std::mem::forget((gp, community, social));
    (app, id)
}

fn many(name: &str, value: &str, n: usize, separator: &str) -> String {
    (0..n)
        .map(|_| format!("{name}{value}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// Search parameters: alternatives, repetitions and counts are bounded (400 naming the
/// parameter and the limit), and whatever is within the bounds is answered, never a 5xx.
#[tokio::test]
async fn search_parameters_are_bounded_and_never_make_the_store_fail() {
    bounded_search_parameters(StoreChoice::Sqlite).await;
}

/// The same on PostgreSQL, which refuses a NUL in text (so it must never reach it).
#[tokio::test]
async fn search_parameters_are_bounded_on_postgres() {
    let Some(db) = crate::support::app::postgres().await else {
        return;
    };
    bounded_search_parameters(StoreChoice::Postgres(db.url().to_owned())).await;
    db.drop().await;
}

async fn bounded_search_parameters(store: StoreChoice) {
    let sqlite = matches!(store, StoreChoice::Sqlite);
    let (app, id) = gateway_on(store).await;
    let ig = app.token_with(&[
        ("role", json!("ig-lead")),
        ("scope", json!("user/AuditEvent.rs user/*.rs")),
    ]);
    let dates = many("", "2026", 1000, ",");
    let within = format!(
        "AuditEvent?date={}&date={}&agent={}&patient={}",
        many("ne", "2026-01-01", 20, ","),
        many("ne", "2025-01-01", 20, ","),
        many("u", "", 20, ","),
        many("", &id, 4, ","),
    );
    run_on(
        &app,
        &ig,
        vec![
            Case::get(
                "a thousand date alternatives (the reported attack)",
                format!("AuditEvent?date={dates}"),
                StatusCode::BAD_REQUEST,
            )
            .naming("date"),
            Case::get(
                "a parameter repeated nine times",
                format!("AuditEvent?{}", many("_count=", "1", 9, "&")),
                StatusCode::BAD_REQUEST,
            )
            .naming("_count"),
            Case::get(
                "forty parameters",
                format!(
                    "Observation?patient={id}&{}",
                    (0..40)
                        .map(|i| format!("p{i}=1"))
                        .collect::<Vec<_>>()
                        .join("&")
                ),
                StatusCode::BAD_REQUEST,
            ),
            Case::get(
                "too many values over all parameters",
                format!(
                    "Observation?patient={id}&code={}&code={}&code={}&status={}",
                    many("c", "", 20, ","),
                    many("d", "", 20, ","),
                    many("e", "", 20, ","),
                    many("s", "", 20, ","),
                ),
                StatusCode::BAD_REQUEST,
            ),
            Case::get(
                "$everything with 25 types",
                format!(
                    "Patient/{id}/$everything?_type={}",
                    many("Observation", "", 25, ",")
                ),
                StatusCode::BAD_REQUEST,
            )
            .naming("_type"),
            Case::get("the largest audit search allowed", within, StatusCode::OK),
            Case::get(
                "a date that is not one",
                "AuditEvent?date=2026-13-45",
                StatusCode::BAD_REQUEST,
            )
            .naming("date"),
            Case::get(
                "a cursor not made here",
                format!("Patient/{id}/$everything?_cursor=%00%FF"),
                StatusCode::BAD_REQUEST,
            ),
            Case::get(
                "a NUL in an audit search value",
                "AuditEvent?agent=a%00b",
                StatusCode::BAD_REQUEST,
            )
            .naming("agent"),
            Case::get(
                "a control character in a parameter name",
                format!("Observation?patient={id}&co%01de=1"),
                StatusCode::BAD_REQUEST,
            ),
            Case::get(
                "bytes that are not UTF-8",
                "AuditEvent?agent=%FF%FE",
                StatusCode::OK,
            ),
        ],
        sqlite,
    )
    .await;
}

/// Paths, methods, headers and sizes: every refusal is recorded, with the person the URL
/// names (issue 13, defect 6).
#[tokio::test]
async fn every_refusal_is_recorded_with_the_person_it_named() {
    let (app, id) = gateway().await;
    let token = app.token.clone();
    let long = "x".repeat(9 * 1024);
    run(
        &app,
        &token,
        vec![
            Case::get(
                "XML asked for",
                format!("Patient/{id}/$everything"),
                StatusCode::NOT_ACCEPTABLE,
            )
            .header("Accept", "application/fhir+xml"),
            Case::get(
                "a URL past the limit",
                format!("Observation?patient={id}&code={long}"),
                StatusCode::URI_TOO_LONG,
            ),
            Case::get(
                "a route that does not exist",
                format!("Patient/{id}/_history"),
                StatusCode::NOT_FOUND,
            ),
            Case::get("nothing under /fhir", "", StatusCode::NOT_FOUND),
            Case::get(
                "a made-up operation",
                format!("Patient/{id}/$purge"),
                StatusCode::NOT_FOUND,
            ),
            Case::get(
                "a DELETE",
                format!("Patient/{id}"),
                StatusCode::METHOD_NOT_ALLOWED,
            )
            .method(reqwest::Method::DELETE),
            Case::get(
                "a PUT on a search",
                "Observation",
                StatusCode::METHOD_NOT_ALLOWED,
            )
            .method(reqwest::Method::PUT),
            Case::get(
                "a body past the limit",
                "Consent",
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .method(reqwest::Method::POST)
            .header("Content-Type", "application/fhir+json")
            .body(vec![b' '; 2 * 1024 * 1024]),
            Case::get(
                "no token",
                format!("Patient/{id}"),
                StatusCode::UNAUTHORIZED,
            )
            .header("Authorization", ""),
            Case::get(
                "a token that is not one",
                format!("Patient/{id}"),
                StatusCode::UNAUTHORIZED,
            )
            .header("Authorization", "Bearer not.a.token"),
            Case::get("the capability statement", "metadata", StatusCode::OK)
                .header("Authorization", ""),
        ],
    )
    .await;
    // The refused requests that named the person are in their trail.
    let about: Vec<Body> = bodies(&app)
        .await
        .into_iter()
        .filter(|b| b.person.as_deref() == Some(id.as_str()))
        .collect();
    for status in [404, 405, 406, 414, 401] {
        assert!(
            about.iter().any(|b| b.status == status),
            "a {status} about the person is recorded as about them"
        );
    }
}

/// Credentials never reach the audit log or the store (issue 13, defect 7).
#[tokio::test]
async fn a_token_in_the_url_is_kept_nowhere() {
    let (app, id) = gateway().await;
    let token = app.token.clone();
    let secret = app.token_with(&[("sub", json!("someone-else"))]);
    for path in [
        format!("Patient/{id}/$everything?access_token={secret}"),
        format!("Observation?patient={id}&colour={secret}"),
        format!("Observation?patient={id}&{secret}=1"),
        format!("Patient/{secret}"),
        format!("Patient/{id}/{secret}"),
    ] {
        let a = app
            .get_raw(&path, &[("Authorization", &format!("Bearer {token}"))])
            .await;
        assert!(!a.status.is_server_error(), "{path}: {}", a.body);
    }
    // The signature part is the secret: look for it in every file of the store.
    let signature = secret.rsplit('.').next().expect("signature");
    let payload = secret.split('.').nth(1).expect("payload");
    for entry in std::fs::read_dir(app.dir().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(signature) && !text.contains(payload),
                "{} holds the token",
                path.display()
            );
        }
    }
    // What the records do keep: the parameter's name and a keyed hash of its value.
    let targets: Vec<String> = bodies(&app).await.into_iter().map(|b| b.target).collect();
    assert!(
        targets.iter().any(|t| t.contains("access_token=~")),
        "{targets:?}"
    );
}

/// Identity providers send empty claims: the AuditEvents about such requests are still
/// valid FHIR (issue 13, defect 10).
#[tokio::test]
async fn empty_claims_never_make_invalid_audit_events() {
    let (app, id) = gateway().await;
    let blank = app.token_with(&[("org", json!("")), ("name", json!(""))]);
    let a = app
        .get_raw(
            &format!("Patient/{id}/$everything"),
            &[("Authorization", &format!("Bearer {blank}"))],
        )
        .await;
    assert!(!a.status.is_server_error());
    let ig = app.token_with(&[
        ("role", json!("ig-lead")),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    let events = app
        .get_raw(
            &format!("AuditEvent?patient={id}"),
            &[("Authorization", &format!("Bearer {ig}"))],
        )
        .await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    fn no_empty(value: &Value, at: &str) {
        match value {
            Value::String(s) => assert!(!s.trim().is_empty(), "empty string at {at}"),
            Value::Array(items) => {
                assert!(!items.is_empty(), "empty array at {at}");
                for (i, item) in items.iter().enumerate() {
                    no_empty(item, &format!("{at}[{i}]"));
                }
            }
            Value::Object(map) => {
                assert!(!map.is_empty(), "empty object at {at}");
                for (k, v) in map {
                    no_empty(v, &format!("{at}.{k}"));
                }
            }
            _ => {}
        }
    }
    let found = matches(&events.body);
    assert!(!found.is_empty());
    for event in found {
        no_empty(&event, "AuditEvent");
    }
}

/// A caller who may see nothing of a person cannot tell whether anyone knows them (issue 13,
/// defect 9): Eve is known to the GP only, and a community nurse may see only people known
/// to community services.
#[tokio::test]
async fn nothing_disclosed_looks_like_nobody_known() {
    let w = crate::agreements::world().await;
    let app = &w.app;
    let nurse = app.token_with(&[("org", json!("RY4")), ("role", json!("nurse"))]);
    let ask = |nhs: &str| {
        let nurse = nurse.clone();
        let path = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");
        async move {
            let a = app
                .get_raw(&path, &[("Authorization", &format!("Bearer {nurse}"))])
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            json!([a.body["total"], a.body["entry"], outcome_issues(&a.body)])
        }
    };
    let eve = ask(crate::agreements::EVE).await;
    assert_eq!(eve, ask(NOBODY).await);
    assert!(!eve.to_string().contains("suppressed"), "{eve}");
    // The open readiness endpoint says only ready or not.
    let (status, text) = app.get_root("/readyz").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, r#"{"status":"ready"}"#)
    );
}

/// Requests without a valid token are limited per client address; what the limit turned
/// away is recorded as one count per client per window (issue 13, defect 6).
#[tokio::test]
async fn callers_without_a_token_are_rate_limited_and_counted() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start_with(
        specs(&gp, &community, &social),
        StoreChoice::Sqlite,
        "unauthenticated_per_minute = 3\nrate_limit_window_secs = 2",
    )
    .await;
    let before = bodies(&app).await.len();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get_raw("Patient/x", &[]).await.status.as_u16());
    }
    // The window may roll between two requests; at least the first three are answered and
    // at least some are turned away.
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let throttled = app.get_raw("Patient/x", &[]).await;
    if throttled.status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(throttled.body["resourceType"], "OperationOutcome");
        assert!(throttled.headers.contains_key("retry-after"));
    }
    // Counted with the rest: if the window rolled just before it, it was answered (and
    // recorded) as a 401.
    statuses.push(throttled.status.as_u16());
    // A valid token is never limited.
    assert_eq!(app.get("metadata").await.status, StatusCode::OK);
    let refused = statuses.iter().filter(|s| **s == 429).count() as u64;
    let mut counted = 0;
    for _ in 0..50 {
        counted = bodies(&app)
            .await
            .iter()
            .skip(before)
            .filter_map(|b| b.rate_limited)
            .sum::<u64>();
        if counted >= refused {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        counted >= refused,
        "{counted} counted of {refused} turned away"
    );
    let answered = bodies(&app)
        .await
        .iter()
        .skip(before)
        .filter(|b| b.status == 401)
        .count();
    assert_eq!(answered, statuses.iter().filter(|s| **s == 401).count());
    drop((gp, community, social));
}

/// Bodies: JSON that is not, that nests too deep, that repeats an element, or that carries
/// a modifier the gateway does not understand (issue 13, defect 8).
#[tokio::test]
async fn hostile_bodies_are_refused_naming_the_element() {
    let (app, id) = gateway().await;
    let person = app.token_with(&[
        ("scope", json!("patient/*.rs patient/Consent.cs")),
        ("nhs_number", json!(ANN)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let consent = |extra: &str| {
        format!(
            r#"{{"resourceType":"Consent","status":"active",{extra}"scope":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}}]}},"patient":{{"reference":"Patient/{id}"}},"provision":{{"type":"deny","actor":[{{"role":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}}]}},"reference":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}}}}}}]}}}}"#
        )
    };
    let post = |what, body: String| {
        Case::get(what, "Consent", StatusCode::BAD_REQUEST)
            .method(reqwest::Method::POST)
            .header("Content-Type", "application/fhir+json")
            .body(body)
    };
    run(
        &app,
        &person,
        vec![
            post("not JSON", "{\"resourceType\":".into()),
            post(
                "nested ten thousand deep",
                format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            ),
            post("a duplicate status", consent(r#""status":"inactive","#)).naming("status"),
            post(
                "a modifier extension",
                consent(
                    r#""modifierExtension":[{"url":"https://example.org/x","valueBoolean":true}],"#,
                ),
            )
            .naming("modifierExtension"),
            post(
                "implicit rules",
                consent(r#""implicitRules":"https://example.org/rules","#),
            )
            .naming("implicitRules"),
            Case::get("XML", "Consent", StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .method(reqwest::Method::POST)
                .header("Content-Type", "application/fhir+xml")
                .body("<Consent/>"),
            Case::get("a valid one, for contrast", "Consent", StatusCode::CREATED)
                .method(reqwest::Method::POST)
                .header("Content-Type", "application/fhir+json")
                .body(consent("")),
        ],
    )
    .await;
}

/// A store that hangs (its lock held by another process) costs callers the audit log's
/// bounded wait, not the store's busy timeout: the answers come while the lock is still held
/// (issue 13, defect 5).
#[tokio::test]
async fn a_hung_store_does_not_hold_the_answers() {
    use sqlx::Connection;
    let (app, id) = gateway().await;
    let url = format!("sqlite://{}", app.dir().join("data/concord.db").display());
    let mut holder = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let path = format!("Patient/{id}/$everything");
    let answers = futures_util::future::join_all((0..5).map(|_| app.get(&path))).await;
    // Still holding the lock: every answer has come, each with its record in the spool.
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let spooled = std::fs::read_dir(app.dir().join("data/audit-spool"))
        .expect("spool dir")
        .count();
    assert!(spooled >= 1, "the records went to the spool");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
    drop(holder);
    // Once the store is free, the spooled records move in, each exactly once.
    let mut found = 0;
    for _ in 0..100 {
        found = bodies(&app)
            .await
            .iter()
            .filter(|b| b.target.ends_with("$everything"))
            .count();
        if found == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found, 5);
}

/// `concord dev-token` makes tokens the demo's agreements accept as they are: a patient's
/// token has purpose PATRQT and a carer's FAMRQT, as the gateway assumes for tokens that
/// name none.
#[tokio::test]
async fn dev_token_purposes_match_the_callers() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/concord.toml");
    let mint = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .arg("dev-token")
            .args(args)
            .args(["--config", config])
            .output()
            .expect("dev-token");
        assert!(out.status.success());
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let payload = token.split('.').nth(1).expect("payload").to_owned();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64"),
        )
        .expect("claims");
        claims["purpose_of_use"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(mint(&["--role", "patient", "--patient", ANN]), "PATRQT");
    assert_eq!(
        mint(&["--role", "carer", "--patient", ANN, "--relationship", "SON"]),
        "FAMRQT"
    );
    assert_eq!(mint(&[]), "TREAT");
    assert_eq!(mint(&["--purpose", "ETREAT"]), "ETREAT");
}

/// Tokens and headers: forged, oversized or malformed credentials and hostile header values
/// are refused (or, for a request id, replaced), each recorded, none a 5xx.
#[tokio::test]
async fn hostile_tokens_and_headers_are_refused_and_recorded() {
    let (app, id) = gateway().await;
    let token = app.token.clone();
    let everything = format!("Patient/{id}/$everything");
    let unsigned = {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&json!({"sub": "x", "iss": "https://idp.example", "aud": "concord", "exp": 4_102_444_800_u64}).to_string())
        )
    };
    let huge = format!("Bearer {}", "a".repeat(9 * 1024));
    let carer = app.token_with(&[
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(ANN)),
        ("acting_for_relationship", json!("")),
    ]);
    let patient = app.token_with(&[
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(ANN)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let bearer = |t: &str| format!("Bearer {t}");
    run(
        &app,
        &token,
        vec![
            Case::get("alg none", &everything, StatusCode::UNAUTHORIZED)
                .header("Authorization", bearer(&unsigned)),
            Case::get("a token past 8 KiB", &everything, StatusCode::UNAUTHORIZED)
                .header("Authorization", huge),
            Case::get(
                "Basic instead of Bearer",
                &everything,
                StatusCode::UNAUTHORIZED,
            )
            .header("Authorization", "Basic dXNlcjpwYXNz"),
            Case::get(
                "an empty carer relationship",
                &everything,
                StatusCode::UNAUTHORIZED,
            )
            .header("Authorization", bearer(&carer)),
            Case::get(
                "break-glass with control characters",
                &everything,
                StatusCode::BAD_REQUEST,
            )
            .header("X-Break-Glass-Reason", "unconscious\tno history"),
            Case::get(
                "break-glass past 1,000 characters",
                &everything,
                StatusCode::BAD_REQUEST,
            )
            .header("X-Break-Glass-Reason", "x".repeat(1001)),
            Case::get(
                "break-glass by a patient",
                &everything,
                StatusCode::FORBIDDEN,
            )
            .header("Authorization", bearer(&patient))
            .header("X-Break-Glass-Reason", "curious"),
            Case::get("a hostile request id", &everything, StatusCode::OK)
                .header("X-Request-Id", format!("id {}", "<script>".repeat(100))),
            Case::get(
                "Accept that admits nothing JSON",
                "metadata",
                StatusCode::NOT_ACCEPTABLE,
            )
            .header("Accept", "text/html;q=1, image/*"),
        ],
    )
    .await;
    // The hostile request id was replaced by one of the gateway's.
    let last = bodies(&app).await.pop().expect("records");
    assert!(last.request_id.len() <= 128 && !last.request_id.contains('<'));
}

/// Scopes and roles: a token asks for more than it was granted; each is refused (403, or 404
/// for another person's record) and recorded.
#[tokio::test]
async fn scopes_that_do_not_cover_the_request_are_refused_and_recorded() {
    let (app, id) = gateway().await;
    let token = app.token.clone();
    let with = |claims: &[(&str, Value)]| format!("Bearer {}", app.token_with(claims));
    let conditions_only = with(&[("scope", json!("user/Condition.rs"))]);
    let read_only = with(&[("scope", json!("user/*.r"))]);
    let system = with(&[("scope", json!("system/*.rs"))]);
    let clinician_audit = with(&[("scope", json!("user/*.rs user/AuditEvent.rs"))]);
    let patient = with(&[
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(ANN)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let someone_else = with(&[
        ("scope", json!("patient/*.rs user/*.rs")),
        ("nhs_number", json!(NOBODY)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    run(
        &app,
        &token,
        vec![
            Case::get(
                "Observations with a Condition scope",
                format!("Observation?patient={id}"),
                StatusCode::FORBIDDEN,
            )
            .header("Authorization", conditions_only.clone()),
            Case::get(
                "a search with a read-only scope",
                format!("Observation?patient={id}"),
                StatusCode::FORBIDDEN,
            )
            .header("Authorization", read_only),
            Case::get(
                "system scopes",
                format!("Observation?patient={id}"),
                StatusCode::FORBIDDEN,
            )
            .header("Authorization", system),
            Case::get(
                "the audit log for a clinician",
                "AuditEvent",
                StatusCode::FORBIDDEN,
            )
            .header("Authorization", clinician_audit),
            Case::get(
                "a Consent without Consent.c",
                "Consent",
                StatusCode::FORBIDDEN,
            )
            .method(reqwest::Method::POST)
            .header("Authorization", patient)
            .header("Content-Type", "application/fhir+json")
            .body("{}"),
            Case::get(
                "another person's record with user scopes on a patient token",
                format!("Patient/{id}/$everything"),
                StatusCode::NOT_FOUND,
            )
            .header("Authorization", someone_else),
        ],
    )
    .await;
}
