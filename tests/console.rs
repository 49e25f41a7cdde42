//! The IG console's sign-in (issue 16, item 1): a real OpenID Connect provider on 127.0.0.1
//! (`support::oidc`), the whole gateway on 127.0.0.1, and a client that behaves as a browser
//! does (follows nothing by itself, keeps cookies) walking the authorization-code flow.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::app::{Policies, SourceSpec, StoreChoice, TestApp};
use crate::support::oidc::{CLIENT_ID, CLIENT_SECRET, Flaw, OidcProvider, Userinfo, ig_lead};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `[console]` table of a gateway signing in through `idp`.
pub(crate) fn console_toml(idp: &OidcProvider) -> String {
    format!(
        "[console]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         allowed_roles = [\"ig-lead\", \"caldicott-guardian\"]\ncis2_roles = {{ \"R8003\" = \"ig-lead\", \"R8004\" = \"caldicott-guardian\" }}\n",
        idp.issuer
    )
}

/// A gateway over the demo's GP export, with `extra` at the end of its config.
pub(crate) async fn gateway(store: StoreChoice, server_toml: &str, extra: &str) -> TestApp {
    let gp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/gp");
    TestApp::start_config(
        vec![SourceSpec::ndjson("gp", "Riverside GP", "A81001", gp)],
        store,
        server_toml,
        Policies::ReadPath,
        extra,
    )
    .await
}

/// One answer, as a browser sees it.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The `Set-Cookie` line for a cookie, if the answer sets it.
    pub(crate) fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// Checks that the form on the page shows mistakes in exactly `fields` (ids, in the
    /// form's order), the NHS.UK way: an `nhsuk-error-summary` (`role="alert"`) before the
    /// page's heading, linking to each field in that order; beside each, its message
    /// (`{id}-error`, containing the matching text of `messages`); and the field (or, for
    /// radios, their group) `aria-invalid="true"` and `aria-describedby` the message. No
    /// other field is marked invalid.
    pub(crate) fn assert_mistakes(&self, fields: &[&str], messages: &[&str]) {
        let body = &self.body;
        let summary_at = body
            .find("<div class=\"nhsuk-error-summary")
            .unwrap_or_else(|| panic!("an error summary: {body}"));
        let h1 = body.find("<h1").expect("a heading");
        assert!(summary_at < h1, "the summary is at the top: {body}");
        let summary =
            &body[summary_at..summary_at + body[summary_at..].find("</ul>").expect("its list")];
        assert!(summary.contains("role=\"alert\""), "{summary}");
        assert!(summary.contains("There is a problem"), "{summary}");
        let links: Vec<&str> = summary
            .split("<a href=\"#")
            .skip(1)
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            links, fields,
            "the summary links each field, in order: {summary}"
        );
        for (field, message) in fields.iter().zip(messages) {
            let span = format!("<span class=\"nhsuk-error-message\" id=\"{field}-error\">");
            let at = body
                .find(&span)
                .unwrap_or_else(|| panic!("{field}'s message: {body}"));
            let rest = &body[at..];
            let end = rest
                .match_indices("</span>")
                .nth(1)
                .map(|(i, _)| i)
                .expect("the message's end");
            let text = &rest[..end];
            assert!(text.contains(message), "{field}: {text}");
            let described = format!("aria-describedby=\"{field}-error");
            let tag_at = body
                .find(&described)
                .unwrap_or_else(|| panic!("{field} is described by its message: {body}"));
            let open = body[..tag_at].rfind('<').expect("a tag");
            let tag = &body[open..tag_at + body[tag_at..].find('>').expect("its end")];
            assert!(tag.contains("aria-invalid=\"true\""), "{tag}");
            assert!(
                tag.contains(&format!("id=\"{field}\"")) || tag.starts_with("<fieldset"),
                "the field itself, or its radios' group: {tag}"
            );
        }
        assert_eq!(
            body.matches("aria-invalid=\"true\"").count(),
            fields.len(),
            "no other field is marked: {body}"
        );
    }

    /// The value of the page's first CSRF field.
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        self.body[at..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A browser without a window: keeps cookies (by name; paths are ignored), follows no
/// redirect by itself.
pub(crate) struct Visitor {
    client: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Visitor {
    pub(crate) fn new() -> Visitor {
        Visitor::with(reqwest::Client::builder())
    }

    pub(crate) fn with(builder: reqwest::ClientBuilder) -> Visitor {
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("client");
        Visitor {
            client,
            jar: BTreeMap::new(),
        }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<&String> {
        self.jar.get(name)
    }

    /// Sets a cookie as a page of another site (or someone at the keyboard) could.
    pub(crate) fn plant(&mut self, name: &str, value: &str) {
        self.jar.insert(name.to_owned(), value.to_owned());
    }

    pub(crate) fn forget(&mut self, name: &str) {
        self.jar.remove(name);
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, cookies)
        };
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let headers = response.headers().clone();
        for line in headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = line.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || line.contains("Max-Age=0") {
                    self.jar.remove(k);
                } else {
                    self.jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let body = response.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&mut self, url: &str) -> Page {
        let request = self.client.get(url);
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(request).await
    }
}

/// Walks the flow up to the identity provider's redirect back: the callback URL.
async fn to_callback(app: &TestApp, v: &mut Visitor) -> String {
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(
        home.status,
        StatusCode::SEE_OTHER,
        "no session: sent to sign in"
    );
    assert_eq!(home.location(), "/console/sign-in");
    let login = v.get(&format!("{}/console/login", app.origin)).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    let at_idp = v.get(login.location()).await;
    assert_eq!(at_idp.status, StatusCode::SEE_OTHER, "{}", at_idp.body);
    at_idp.location().to_owned()
}

/// Signs in through the provider: the page the callback answers.
pub(crate) async fn sign_in(app: &TestApp, v: &mut Visitor) -> Page {
    let callback = to_callback(app, v).await;
    v.get(&callback).await
}

/// The audit records, as `concord audit export` prints them.
async fn audit_lines(app: &TestApp) -> Vec<Value> {
    let (ok, out, err) = app.concord(&["audit", "export"]).await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

fn console_records(lines: &[Value], route: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["record"]["route"] == route)
        .map(|l| l["record"].clone())
        .collect()
}

#[tokio::test]
async fn signing_in_through_the_provider_shows_who_you_are() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let cookie = back
        .set_cookie("concord_console")
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(
        back.body.contains("http-equiv=\"refresh\""),
        "{}",
        back.body
    );
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(
        home.body.contains("Signed in as Isla Governance"),
        "{}",
        home.body
    );
    assert!(home.body.contains("<dd id=\"who-role\">ig-lead</dd>"));
    assert!(home.body.contains("<dd id=\"who-org\">A81001</dd>"));
    assert!(
        !home.body.contains("Demo sign-in"),
        "no demo without the demo key"
    );
    for page in [&home, &back] {
        let h = &page.headers;
        assert_eq!(h["content-security-policy"], CSP);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["cache-control"], "no-store");
        assert!(!page.body.contains("<script"), "no script");
        assert!(!page.body.contains("style="), "no inline style");
    }
    let css = v
        .get(&format!("{}/console/static/console.css", app.origin))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    // Only the session id's hash is stored.
    let id = v.cookie("concord_console").expect("kept").clone();
    let store = app.state.door.federation().store();
    assert!(store.console_session(&id).await.expect("store").is_none());
    let signed_in = console_records(&audit_lines(&app).await, "/console/callback");
    assert_eq!(signed_in.len(), 1, "one sign-in record");
    assert_eq!(signed_in[0]["user"], "ig-lead-1");
    assert_eq!(signed_in[0]["role"], "ig-lead");
    assert_eq!(signed_in[0]["outcome"], "success");
}

/// A sign-in whose ID token has `flaw` is refused with a page naming `reason`, and leaves
/// no session.
async fn refused(flaw: Flaw, reason: &str) {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    idp.set_flaw(flaw);
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(
        back.status,
        StatusCode::BAD_REQUEST,
        "{flaw:?}: {}",
        back.body
    );
    assert!(back.body.contains(reason), "{flaw:?}: {}", back.body);
    assert_eq!(back.headers["content-security-policy"], CSP);
    assert!(
        v.cookie("concord_console").is_none(),
        "{flaw:?}: no session"
    );
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER, "{flaw:?}");
}

#[tokio::test]
async fn a_tampered_id_token_is_refused() {
    refused(Flaw::Tampered, "signature is not valid").await;
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    refused(Flaw::WrongNonce, "wrong nonce").await;
}

#[tokio::test]
async fn an_id_token_for_another_client_is_refused() {
    refused(Flaw::WrongAudience, "meant for another audience").await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    refused(Flaw::Expired, "has expired").await;
}

#[tokio::test]
async fn a_replayed_callback_is_refused_without_asking_the_provider_again() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut v = Visitor::new();
    let callback = to_callback(&app, &mut v).await;
    let binding = v.cookie("concord_console_login").expect("bound").clone();
    let first = v.get(&callback).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    // The same code and state again, with the sign-in's browser cookie too.
    let mut replay = Visitor::new();
    replay.jar.insert("concord_console_login".into(), binding);
    let again = replay.get(&callback).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(replay.cookie("concord_console").is_none());
    assert_eq!(idp.token_requests(), 1, "the code was redeemed once");
}

#[tokio::test]
async fn a_callback_with_another_state_is_refused() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut v = Visitor::new();
    let callback = to_callback(&app, &mut v).await;
    let mut url = reqwest::Url::parse(&callback).expect("URL");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    url.query_pairs_mut().clear();
    for (k, value) in pairs {
        let value = if k == "state" {
            "forged".to_owned()
        } else {
            value
        };
        url.query_pairs_mut().append_pair(&k, &value);
    }
    let back = v.get(url.as_str()).await;
    assert_eq!(back.status, StatusCode::BAD_REQUEST, "{}", back.body);
    assert!(back.body.contains("sign-in is unknown"), "{}", back.body);
    assert!(v.cookie("concord_console").is_none());
    assert_eq!(
        idp.token_requests(),
        0,
        "no code is redeemed for an unknown state"
    );
}

#[tokio::test]
async fn a_callback_in_another_browser_than_the_one_that_began_is_refused() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut v = Visitor::new();
    let callback = to_callback(&app, &mut v).await;
    v.forget("concord_console_login");
    let back = v.get(&callback).await;
    assert_eq!(back.status, StatusCode::BAD_REQUEST, "{}", back.body);
    assert!(back.body.contains("another browser"), "{}", back.body);
    assert!(v.cookie("concord_console").is_none());
}

#[tokio::test]
async fn a_role_the_config_does_not_name_is_refused_and_recorded() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut clinician = ig_lead();
    clinician.insert("sub".into(), "dr-1".into());
    clinician.insert("role".into(), "clinician".into());
    idp.set_user(clinician);
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::FORBIDDEN, "{}", back.body);
    assert!(
        back.body.contains("role does not give you access"),
        "{}",
        back.body
    );
    assert!(v.cookie("concord_console").is_none());
    let refused = console_records(&audit_lines(&app).await, "/console/callback");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["user"], "dr-1");
    assert_eq!(refused[0]["outcome"], "refused");
    assert_eq!(refused[0]["status"], 403);
}

#[tokio::test]
async fn an_nhs_cis2_user_with_several_allowed_roles_chooses_one() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut user = serde_json::Map::new();
    user.insert("sub".into(), "555000111222".into());
    user.insert("name".into(), "Cara Smartcard".into());
    user.insert(
        "nhsid_nrbac_roles".into(),
        json!([
            {"person_roleid": "1", "org_code": "RY4", "role_code": "S8000:G8000:R8003", "role_name": "IG"},
            {"person_roleid": "2", "org_code": "A81001", "role_code": "S0030:G0100:R0570", "role_name": "Nurse"},
            {"person_roleid": "3", "org_code": "LA001", "role_code": "S8000:G8000:R8004", "role_name": "Caldicott"}
        ]),
    );
    idp.set_user(user);
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert!(back.body.contains("/console/role"), "{}", back.body);
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(
        home.location(),
        "/console/role",
        "nothing else until a role is chosen"
    );
    let choose = v.get(&format!("{}/console/role", app.origin)).await;
    assert_eq!(choose.status, StatusCode::OK);
    assert!(choose.body.contains("ig-lead at RY4"), "{}", choose.body);
    assert!(
        choose.body.contains("caldicott-guardian at LA001"),
        "{}",
        choose.body
    );
    assert!(
        !choose.body.contains("A81001"),
        "the nurse role is not offered"
    );
    let csrf = choose.csrf();
    let wrong = v
        .post(&format!("{}/console/role", app.origin), &[("choice", "1")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "no token, no choice");
    let chosen = v
        .post(
            &format!("{}/console/role", app.origin),
            &[("csrf", &csrf), ("choice", "1")],
        )
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.body);
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(
        home.body
            .contains("<dd id=\"who-role\">caldicott-guardian</dd>")
    );
    assert!(home.body.contains("<dd id=\"who-org\">LA001</dd>"));
    let records = console_records(&audit_lines(&app).await, "/console/role");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["org"], "LA001");
}

#[tokio::test]
async fn an_nhs_cis2_user_whose_roles_come_only_from_userinfo_signs_in() {
    // CIS2 gives `nhsid_nrbac_roles` (and the name) from its UserInfo endpoint, not in the ID
    // token: the console reads them there, for the user the ID token names.
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut user = serde_json::Map::new();
    user.insert("sub".into(), "555000111333".into());
    user.insert("name".into(), "Uma Userinfo".into());
    user.insert(
        "nhsid_nrbac_roles".into(),
        json!([{"person_roleid": "1", "org_code": "RY4", "role_code": "S8000:G8000:R8003"}]),
    );
    idp.set_user(user);
    idp.set_userinfo(Userinfo::Only);
    let mut v = Visitor::new();
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(
        home.body.contains("Signed in as Uma Userinfo"),
        "{}",
        home.body
    );
    assert!(home.body.contains("<dd id=\"who-role\">ig-lead</dd>"));
    assert!(home.body.contains("<dd id=\"who-org\">RY4</dd>"));
    let records = console_records(&audit_lines(&app).await, "/console/callback");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["user"], "555000111333");
    assert_eq!(records[0]["org"], "RY4");
}

#[tokio::test]
async fn userinfo_about_another_user_or_failing_refuses_the_sign_in() {
    for (mode, reason) in [
        (Userinfo::OtherSubject, "another user than the ID token"),
        (Userinfo::Fails, "userinfo: 500"),
    ] {
        let idp = OidcProvider::start("127.0.0.1").await;
        let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
        idp.set_userinfo(mode);
        let mut v = Visitor::new();
        let back = sign_in(&app, &mut v).await;
        assert_eq!(
            back.status,
            StatusCode::BAD_GATEWAY,
            "{mode:?}: {}",
            back.body
        );
        assert!(back.body.contains(reason), "{mode:?}: {}", back.body);
        assert!(
            v.cookie("concord_console").is_none(),
            "{mode:?}: no session"
        );
        let home = v.get(&format!("{}/console/", app.origin)).await;
        assert_eq!(home.status, StatusCode::SEE_OTHER, "{mode:?}");
    }
}

/// Moves a session's clock back by `secs`: `column` is `last_seen_s` or `created_s`.
async fn age_sessions(app: &TestApp, column: &str, secs: i64) {
    let sql = match column {
        "last_seen_s" => "UPDATE console_sessions SET last_seen_s = last_seen_s - $1",
        _ => "UPDATE console_sessions SET created_s = created_s - $1",
    };
    match app.state.door.federation().store() {
        concord::store::Store::Sqlite(pool) => {
            sqlx::query(sql)
                .bind(secs)
                .execute(pool)
                .await
                .expect("age");
        }
        concord::store::Store::Postgres(pool) => {
            sqlx::query(sql)
                .bind(secs)
                .execute(pool)
                .await
                .expect("age");
        }
    }
}

#[tokio::test]
async fn a_session_ends_after_its_idle_and_its_absolute_timeout() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let toml = format!(
        "{}idle_timeout_secs = 600\nabsolute_timeout_secs = 3600\n",
        console_toml(&idp)
    );
    let app = gateway(StoreChoice::Sqlite, "", &toml).await;
    let home = format!("{}/console/", app.origin);
    let mut v = Visitor::new();
    sign_in(&app, &mut v).await;
    // Idle for nearly the timeout: still in, and the use counts as activity.
    age_sessions(&app, "last_seen_s", 590).await;
    assert_eq!(v.get(&home).await.status, StatusCode::OK);
    age_sessions(&app, "last_seen_s", 590).await;
    assert_eq!(v.get(&home).await.status, StatusCode::OK, "used since");
    age_sessions(&app, "last_seen_s", 601).await;
    let idle = v.get(&home).await;
    assert_eq!(idle.status, StatusCode::SEE_OTHER, "idle too long");
    assert_eq!(idle.location(), "/console/sign-in");

    let mut v = Visitor::new();
    sign_in(&app, &mut v).await;
    age_sessions(&app, "created_s", 3590).await;
    assert_eq!(v.get(&home).await.status, StatusCode::OK);
    age_sessions(&app, "created_s", 11).await;
    assert_eq!(
        v.get(&home).await.status,
        StatusCode::SEE_OTHER,
        "past the absolute timeout"
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_and_needs_the_forms_token() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let home_url = format!("{}/console/", app.origin);
    let out_url = format!("{}/console/sign-out", app.origin);
    let mut v = Visitor::new();
    sign_in(&app, &mut v).await;
    let home = v.get(&home_url).await;
    let csrf = home.csrf();
    for form in [vec![], vec![("csrf", "not-the-token")]] {
        let refused = v.post(&out_url, &form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(
            refused.body.contains("form has expired"),
            "{}",
            refused.body
        );
        assert_eq!(
            v.get(&home_url).await.status,
            StatusCode::OK,
            "still signed in"
        );
    }
    let session = v.cookie("concord_console").expect("session").clone();
    let out = v.post(&out_url, &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/console/sign-in?signed-out");
    assert!(
        out.set_cookie("concord_console")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let page = v
        .get(&format!("{}/console/sign-in?signed-out", app.origin))
        .await;
    assert!(page.body.contains("You have signed out."));
    // The old cookie opens nothing any more.
    let mut thief = Visitor::new();
    thief.jar.insert("concord_console".into(), session);
    assert_eq!(thief.get(&home_url).await.status, StatusCode::SEE_OTHER);
    let records = console_records(&audit_lines(&app).await, "/console/sign-out");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["user"], "ig-lead-1");
}

#[tokio::test]
async fn the_demo_sign_in_exists_only_while_the_demo_key_is_trusted() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let mut v = Visitor::new();
    let page = v.get(&format!("{}/console/sign-in", app.origin)).await;
    assert!(!page.body.contains("demo-sign-in"), "{}", page.body);
    let demo = v
        .post(&format!("{}/console/demo-sign-in", app.origin), &[])
        .await;
    assert_eq!(demo.status, StatusCode::NOT_FOUND);

    let demo_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-signing-key.pub.pem"
    );
    let trusted = format!(
        "[[auth.key]]\nkid = \"concord-demo\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{demo_key}\"\n\n[console]\n"
    );
    let app = gateway(StoreChoice::Sqlite, "", &trusted).await;
    let mut v = Visitor::new();
    let page = v.get(&format!("{}/console/sign-in", app.origin)).await;
    assert!(
        page.body.contains("Demo sign-in as an IG lead"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("/console/login"),
        "no provider configured"
    );
    let url = format!("{}/console/demo-sign-in", app.origin);
    let forged = v.post(&url, &[("csrf", "guess")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let page = v.get(&format!("{}/console/sign-in", app.origin)).await;
    let signed = v.post(&url, &[("csrf", &page.csrf())]).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let home = v.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("Signed in as Demo IG Lead"),
        "{}",
        home.body
    );
    assert!(home.body.contains("Demo sign-in."), "marked as the demo");
}

#[tokio::test]
async fn under_tls_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::support::pki::Ca::new(dir.path(), "console");
    let server = ca.server();
    let tls = format!(
        "\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        server.cert.display(),
        server.key.display()
    );
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, &tls, &console_toml(&idp)).await;
    assert!(app.origin.starts_with("https://"));
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).expect("CA")).expect("CA");
    let mut v = Visitor::with(reqwest::Client::builder().add_root_certificate(root));
    let back = sign_in(&app, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let cookie = back.set_cookie("concord_console").expect("session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn a_fleet_on_postgresql_shares_its_sessions() {
    let Some(db) = crate::support::app::postgres().await else {
        return;
    };
    let idp = OidcProvider::start("127.0.0.1").await;
    let a = gateway(
        StoreChoice::Postgres(db.url().to_owned()),
        "",
        &console_toml(&idp),
    )
    .await;
    let b = gateway(
        StoreChoice::Postgres(db.url().to_owned()),
        "",
        &console_toml(&idp),
    )
    .await;
    let mut v = Visitor::new();
    let back = sign_in(&a, &mut v).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let home = v.get(&format!("{}/console/", b.origin)).await;
    assert_eq!(
        home.status,
        StatusCode::OK,
        "the other instance knows the session"
    );
    let out = v
        .post(
            &format!("{}/console/sign-out", b.origin),
            &[("csrf", &home.csrf())],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let home = v.get(&format!("{}/console/", a.origin)).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER, "signed out everywhere");
    drop((a, b));
    db.drop().await;
}

#[tokio::test]
async fn the_demo_offers_its_sign_in_and_a_console_with_no_way_in_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = concord::config::Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/concord.toml"
    )))
    .expect("the demo config is valid");
    config.store.url = format!("sqlite://{}/demo.db", dir.path().display());
    if let Some(audit) = config.audit.as_mut() {
        audit.spool_dir = dir.path().join("audit-spool");
        audit.witness_file = Some(dir.path().join("audit-witness.ndjson"));
    }
    let state = concord::server::build_state(&config)
        .await
        .expect("the demo starts");
    assert!(state.console.is_some(), "the demo serves the console");
    drop(state);
    // The same config trusting another key instead of the demo's: no issuer, no demo.
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let other = dir.path().join("other.pub.pem");
    std::fs::write(&other, pair.public_key_pem()).expect("write key");
    if let Some(auth) = config.auth.as_mut() {
        auth.keys[0].public_key_file = other;
    }
    let err = concord::server::build_state(&config)
        .await
        .expect_err("nobody could sign in");
    assert!(err.to_string().contains("demo key"), "{err}");
}

/// Every console route, as a GET or a POST, with the session cookie missing, made up, or
/// of a session that has ended: no page, no action. GETs go to the sign-in page; POSTs are
/// refused before their form is read.
#[tokio::test]
async fn no_console_page_answers_without_a_session() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    // A real session, ended by signing out: its cookie must open nothing either.
    let mut old = Visitor::new();
    let back = sign_in(&app, &mut old).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let ended = old.cookie("concord_console").expect("a session").clone();
    let home = old.get(&format!("{}/console/", app.origin)).await;
    let out = old
        .post(
            &format!("{}/console/sign-out", app.origin),
            &[("csrf", &home.csrf())],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);

    let gets = [
        "/console/",
        "/console/audit",
        "/console/audit?nhs=9990465630",
        "/console/audit.csv",
        "/console/audit/0.0",
        "/console/person",
        "/console/person?nhs=9990465630",
        "/console/person/9990465630/report",
        "/console/agreements",
        "/console/agreements/dsa-northshire-direct-care",
        "/console/health",
        "/console/health/verify",
        "/console/charts",
        "/console/review",
        "/console/review/0.0",
        "/console/reviewed",
    ];
    let posts = [
        "/console/health/verify",
        "/console/review/0.0",
        "/console/role",
    ];
    for cookie in [None, Some("made-up-session-id"), Some(ended.as_str())] {
        let mut v = Visitor::new();
        if let Some(value) = cookie {
            v.plant("concord_console", value);
        }
        for path in gets {
            let page = v.get(&format!("{}{path}", app.origin)).await;
            assert_eq!(
                (page.status, page.location()),
                (StatusCode::SEE_OTHER, "/console/sign-in"),
                "{cookie:?} GET {path}: {}",
                page.body
            );
            assert!(!page.body.contains("9990465630"), "{path}");
            assert_eq!(page.headers["cache-control"], "no-store", "{path}");
        }
        for path in posts {
            let page = v
                .post(&format!("{}{path}", app.origin), &[("csrf", "x")])
                .await;
            assert!(
                page.status == StatusCode::SEE_OTHER || page.status == StatusCode::FORBIDDEN,
                "{cookie:?} POST {path}: {} {}",
                page.status,
                page.body
            );
            if page.status == StatusCode::SEE_OTHER {
                assert_eq!(page.location(), "/console/sign-in", "POST {path}");
            }
        }
    }
    assert!(
        console_records(&audit_lines(&app).await, "/console/health/verify").is_empty(),
        "no check was started"
    );
}

/// Session fixation: a session id known to someone else before the user signs in (one
/// made up, or the other person's own live session) is never the user's session after it.
#[tokio::test]
async fn a_session_id_planted_before_sign_in_never_becomes_the_users() {
    let idp = OidcProvider::start("127.0.0.1").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    // The other person signs in, and plants their own session's cookie (or a made-up one)
    // in the user's browser.
    let mut mallory = ig_lead();
    mallory.insert("sub".into(), "ig-lead-9".into());
    mallory.insert("name".into(), "Mallory Planter".into());
    idp.set_user(mallory);
    let mut other = Visitor::new();
    assert_eq!(sign_in(&app, &mut other).await.status, StatusCode::OK);
    let theirs = other.cookie("concord_console").expect("a session").clone();
    idp.set_user(ig_lead());
    for planted in [theirs.as_str(), "chosen-by-someone-else"] {
        let mut v = Visitor::new();
        v.plant("concord_console", planted);
        let login = v.get(&format!("{}/console/login", app.origin)).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
        let at_idp = v.get(login.location()).await;
        let back = v.get(at_idp.location()).await;
        assert_eq!(back.status, StatusCode::OK, "{planted}: {}", back.body);
        let now = v.cookie("concord_console").expect("a session").clone();
        assert_ne!(now, planted, "a new session id at sign-in");
        let home = v.get(&format!("{}/console/", app.origin)).await;
        assert!(
            home.body.contains("Signed in as Isla Governance"),
            "{}",
            home.body
        );
        // The planted id leads to nobody's session but the one it was.
        let mut holder = Visitor::new();
        holder.plant("concord_console", planted);
        let theirs_now = holder.get(&format!("{}/console/", app.origin)).await;
        assert!(
            !theirs_now.body.contains("Isla Governance"),
            "{planted}: {}",
            theirs_now.body
        );
    }
    let home = other.get(&format!("{}/console/", app.origin)).await;
    assert!(
        home.body.contains("Signed in as Mallory Planter"),
        "{}",
        home.body
    );
}
