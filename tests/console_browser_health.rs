//! The health of the record and the pictures in a real headless Chromium: signed in through
//! the test OpenID Connect provider, `audit verify` run from the health page's button until
//! its result page says it passed (the progress page does not reload itself: its link shows
//! the latest progress), and the pictures opened from the home page. A long chain written
//! beforehand keeps the check running long enough to be seen running, and its progress page
//! checked by axe-core and walked with the Tab key (`console_browser_a11y` checks the others).
//! Then a record is edited in the store file and verify, run again from the button, names
//! it. Screenshots go to `target/tmp/console-health*.png` and `target/tmp/console-charts*.png`.

use serde_json::json;

use crate::console::{console_toml, gateway};
use crate::console_health::{bulk_chain, exec, records};
use crate::support::app::StoreChoice;
use crate::support::browser::Browser;
use crate::support::oidc::OidcProvider;
use crate::support::{axe, keyboard};

/// Known to the demo GP.
const ANN: &str = "9990465630";

#[tokio::test]
async fn a_browser_runs_verify_from_the_health_page_and_sees_the_pictures() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = OidcProvider::start("localhost").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Some traffic for the pictures: reads, a break-glass search and a refusal.
    let ann = app.patient_id(ANN).await;
    let gp = app.token_with(&[]);
    let bearer = format!("Bearer {gp}");
    for _ in 0..3 {
        app.get_raw(&format!("Patient/{ann}"), &[("Authorization", &bearer)])
            .await;
    }
    app.get_raw(
        &format!("Observation?patient={ann}"),
        &[
            ("Authorization", &bearer),
            ("X-Break-Glass-Reason", "unconscious in A&E"),
        ],
    )
    .await;
    let receptionist = app.token_with(&[("role", json!("receptionist"))]);
    app.get_raw(
        &format!("Patient/{ann}"),
        &[("Authorization", &format!("Bearer {receptionist}"))],
    )
    .await;

    // Enough records for the check to be seen running.
    bulk_chain(&app, 60_000).await;

    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#who-name").await, "Isla Governance");

    browser.click("#nav-health").await;
    assert!(
        browser.text("#sources").await.contains("Riverside GP"),
        "the source is listed"
    );
    assert_eq!(browser.text("h1").await, "Health of the record");
    browser.screenshot(&shots.join("console-health.png")).await;

    browser.click("#verify").await;
    // The progress page stays put; its link shows the latest progress, until the result.
    assert_eq!(browser.text("#verify-state").await, "Running");
    assert!(
        browser
            .text("#verify-count")
            .await
            .contains(" records checked")
    );
    browser
        .screenshot(&shots.join("console-health-verify-progress.png"))
        .await;
    axe::check(&browser, "health verify running").await;
    keyboard::check(&browser, "health verify running").await;
    let mut result = String::new();
    // Up to 75 s: a debug build's verify of the bulk records beside Chromium and other tests.
    for _ in 0..150 {
        let page = browser.source().await;
        if browser.url().await.ends_with("/console/health/verify")
            && page.contains("id=\"verify-result\"")
        {
            result = browser.text("#verify-result").await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if page.contains("id=\"verify-refresh\"") {
            browser.click("#verify-refresh").await;
        }
    }
    assert!(result.contains("Passed"), "the check passed: {result}");
    assert!(result.contains("audit log verified:"), "{result}");
    browser
        .screenshot(&shots.join("console-health-verify.png"))
        .await;

    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#nav-charts").await;
    let total = browser.text("#accesses-total").await;
    let answered: i64 = total
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {total}"));
    assert!(
        answered >= 4,
        "the lookup and three reads at least: {total}"
    );
    assert_eq!(browser.text("h1").await, "Pictures of the audit log");
    browser.screenshot(&shots.join("console-charts.png")).await;

    // A read of the record edited in the store file: verify, run again from the button,
    // names the record, in the words of `concord audit verify`.
    let chain = app.state.audit.chain().to_owned();
    let (victim, _) = records(&app)
        .await
        .into_iter()
        .find(|(r, b)| {
            r.chain == chain && b.caller == "staff" && b.target.starts_with("/fhir/Patient/")
        })
        .expect("a read of a record");
    exec(
        &app,
        &format!(
            "UPDATE audit_records SET body = replace(body, '\"caller\":\"staff\"', '\"caller\":\"patient\"') WHERE chain = '{chain}' AND seq = {}",
            victim.seq
        ),
    )
    .await;
    browser
        .open(&format!("{}/console/health", app.origin))
        .await;
    browser.click("#verify").await;
    let mut result = String::new();
    // Up to 75 s: a debug build's verify of the bulk records beside Chromium and other tests.
    for _ in 0..150 {
        let page = browser.source().await;
        if browser.url().await.ends_with("/console/health/verify")
            && page.contains("id=\"verify-result\"")
        {
            result = browser.text("#verify-result").await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if page.contains("id=\"verify-refresh\"") {
            browser.click("#verify-refresh").await;
        }
    }
    let said = format!(
        "audit log BROKEN: chain {chain} at position {}: its content was modified (hash mismatch)",
        victim.seq
    );
    assert!(result.contains("does not verify"), "{result}");
    assert!(result.contains(&said), "{result}");
    assert_eq!(
        browser.text("#broken-position").await,
        victim.seq.to_string()
    );
    browser
        .screenshot(&shots.join("console-health-verify-broken.png"))
        .await;
    axe::check(&browser, "health verify broken").await;
    browser.close().await;
}
