//! The IG console signed into through an OpenID Connect provider nobody on the team wrote:
//! panva's `oidc-provider` (OpenID Certified), run by Node from `tests/browser/` with the
//! configuration kept there (`oidc-provider.mjs`), in a real headless Chromium that fills in
//! the provider's own login and consent forms.
//!
//! Skipped, with a note, when the browser tests are off or `tests/browser/node_modules` is
//! missing (`npm ci` in `tests/browser/`, which `.ci/run` does).

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::console::gateway;
use crate::support::app::{StoreChoice, TestApp};
use crate::support::browser::{Browser, ENV_BROWSER_TESTS};
use crate::support::oidc::{CLIENT_ID, CLIENT_SECRET};

/// A running `oidc-provider`; Node ends when it is dropped.
pub(crate) struct ThirdPartyIdp {
    /// `http://localhost:{port}`: another site than a gateway on 127.0.0.1.
    pub(crate) issuer: String,
    port: u16,
    _node: Option<tokio::process::Child>,
}

impl ThirdPartyIdp {
    /// A provider's place, before it starts: the gateway's config needs the issuer and the
    /// provider needs the gateway's callback. `None` (with a note) when browser tests are off
    /// or Node's packages are not installed.
    pub(crate) fn reserve() -> Option<ThirdPartyIdp> {
        if !std::env::var(ENV_BROWSER_TESTS).is_ok_and(|v| v == "1") {
            eprintln!("skipped: set {ENV_BROWSER_TESTS}=1 to sign in through oidc-provider");
            return None;
        }
        let modules = crate::support::axe::node_modules();
        if !modules.join("oidc-provider").is_dir() {
            eprintln!(
                "skipped: no {} (npm ci in tests/browser, as .ci/run does)",
                modules.join("oidc-provider").display()
            );
            return None;
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr").port()
        };
        Some(ThirdPartyIdp {
            issuer: format!("http://localhost:{port}"),
            port,
            _node: None,
        })
    }

    /// The `[console]` table of a gateway signing in through this provider: the scopes that
    /// carry the role claims, IG leads and Caldicott guardians let in, CIS2's codes mapped.
    pub(crate) fn console_toml(&self) -> String {
        format!(
            "[console]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"profile\", \"nationalrbacaccess\"]\n\
             allowed_roles = [\"ig-lead\", \"caldicott-guardian\"]\ncis2_roles = {{ \"R8003\" = \"ig-lead\", \"R8004\" = \"caldicott-guardian\" }}\n",
            self.issuer
        )
    }

    /// Starts Node with the provider's configuration, its one client sending browsers back to
    /// `app`'s callback, and waits until it listens.
    pub(crate) async fn start(mut self, app: &TestApp) -> ThirdPartyIdp {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut node = tokio::process::Command::new("node")
            .arg(dir.join("oidc-provider.mjs"))
            .current_dir(&dir)
            .env("CONCORD_IDP_PORT", self.port.to_string())
            .env(
                "CONCORD_IDP_REDIRECT_URI",
                format!("{}/console/callback", app.origin),
            )
            .env("CONCORD_IDP_SECRET", CLIENT_SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(log.reopen().expect("the log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (apt-get install nodejs)");
        let stdout = node.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let said = match ready {
            Ok(Ok(Some(line))) => line,
            _ => String::new(),
        };
        assert_eq!(
            said,
            format!("ready {}", self.issuer),
            "oidc-provider did not start: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        self._node = Some(node);
        self
    }
}

/// Waits up to ten seconds for the browser to be at a URL that `wanted` accepts.
pub(crate) async fn wait_for_url(browser: &Browser, wanted: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let url = browser.url().await;
        if wanted(&url) {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser stayed at {}", browser.url().await);
}

/// Signs in at the provider's own pages: its login form (any password does), then its
/// consent form; returns once the browser has left the provider (reading the next page
/// before that could read the provider's own page on a busy machine).
async fn at_the_provider(browser: &Browser, idp: &ThirdPartyIdp, login: &str) {
    wait_for_url(browser, |u| u.starts_with(&idp.issuer)).await;
    browser.fill("input[name=login]", login).await;
    browser
        .fill("input[name=password]", "any password will do")
        .await;
    browser.click("button.login-submit").await;
    // The consent page has the same button; its `prompt` field says which form it is.
    browser.text("form input[name=prompt][value=consent]").await;
    browser.click("button.login-submit").await;
    wait_for_url(browser, |u| !u.starts_with(&idp.issuer)).await;
}

/// The records of a console route, as `concord audit export` prints them.
async fn records(app: &TestApp, route: &str) -> Vec<Value> {
    let (ok, out, err) = app.concord(&["audit", "export"]).await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|l| l["record"]["route"] == route)
        .map(|l| l["record"].clone())
        .collect()
}

#[tokio::test]
async fn an_ig_lead_signs_in_through_oidc_provider_and_out_again() {
    let Some(idp) = ThirdPartyIdp::reserve() else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = gateway(StoreChoice::Sqlite, "", &idp.console_toml()).await;
    let idp = idp.start(&app).await;

    browser.open(&format!("{}/console/", app.origin)).await;
    wait_for_url(&browser, |u| u.ends_with("/console/sign-in")).await;
    browser.click("#sign-in").await;
    at_the_provider(&browser, &idp, "isla").await;
    // Back through the callback, and on to the console.
    assert_eq!(browser.text("#who-name").await, "Isla Governance");
    assert_eq!(browser.text("#who-role").await, "ig-lead");
    assert_eq!(browser.text("#who-org").await, "A81001");
    assert_eq!(browser.url().await, format!("{}/console/", app.origin));
    let signed_in = records(&app, "/console/callback").await;
    assert_eq!(signed_in.len(), 1, "one sign-in record");
    assert_eq!(signed_in[0]["user"], "isla");
    assert_eq!(signed_in[0]["outcome"], "success");

    // The session works beyond the home page.
    browser.click("#nav-audit").await;
    assert!(browser.text("#scope").await.contains("A81001"));

    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-out").await;
    assert_eq!(browser.text("p.notice").await, "You have signed out.");
    browser.open(&format!("{}/console/", app.origin)).await;
    wait_for_url(&browser, |u| u.ends_with("/console/sign-in")).await;
    assert_eq!(records(&app, "/console/sign-out").await.len(), 1);
    browser.close().await;
}

#[tokio::test]
async fn through_oidc_provider_a_clinician_is_refused_and_a_smartcard_user_chooses_a_role() {
    let Some(idp) = ThirdPartyIdp::reserve() else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = gateway(StoreChoice::Sqlite, "", &idp.console_toml()).await;
    let idp = idp.start(&app).await;

    browser
        .open(&format!("{}/console/sign-in", app.origin))
        .await;
    browser.click("#sign-in").await;
    at_the_provider(&browser, &idp, "drew").await;
    assert_eq!(browser.text("h1").await, "You cannot use the IG console");
    assert!(
        browser
            .text("#reason")
            .await
            .contains("role does not give you access"),
        "the reason is given"
    );
    let refused = records(&app, "/console/callback").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["user"], "drew");
    assert_eq!(refused[0]["outcome"], "refused");
    browser.open(&format!("{}/console/", app.origin)).await;
    wait_for_url(&browser, |u| u.ends_with("/console/sign-in")).await;
    browser.close().await;

    // Another browser, so that the provider does not remember Drew.
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser
        .open(&format!("{}/console/sign-in", app.origin))
        .await;
    browser.click("#sign-in").await;
    at_the_provider(&browser, &idp, "cara").await;
    wait_for_url(&browser, |u| u.ends_with("/console/role")).await;
    let offered = browser.text("fieldset").await;
    assert!(offered.contains("ig-lead at RY4"), "{offered}");
    assert!(offered.contains("caldicott-guardian at LA001"), "{offered}");
    assert!(!offered.contains("A81001"), "the nurse role is not offered");
    browser.click("label[for=choice-1]").await;
    browser.click("#choose").await;
    assert_eq!(browser.text("#who-role").await, "caldicott-guardian");
    assert_eq!(browser.text("#who-org").await, "LA001");
    assert_eq!(browser.text("#who-name").await, "Cara Smartcard");
    let chosen = records(&app, "/console/role").await;
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0]["user"], "cara");
    assert_eq!(chosen[0]["org"], "LA001");
    browser.close().await;
}
