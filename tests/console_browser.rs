//! The IG console in a real headless Chromium: signed in through the test OpenID Connect
//! provider, the audit search opened from the home page, and signed out again. The provider
//! is named `localhost` and the gateway `127.0.0.1`, so that, as in production, they are
//! different sites and the browser applies its `SameSite` rules to the redirect back.
//! (`console_browser_a11y` photographs every page.)

use crate::console::{console_toml, gateway};
use crate::support::app::StoreChoice;
use crate::support::browser::Browser;
use crate::support::oidc::OidcProvider;

#[tokio::test]
async fn a_browser_signs_in_through_the_provider_and_out_again() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = OidcProvider::start("localhost").await;
    let app = gateway(StoreChoice::Sqlite, "", &console_toml(&idp)).await;

    browser.open(&format!("{}/console/", app.origin)).await;
    assert!(
        browser.url().await.ends_with("/console/sign-in"),
        "sent to sign in: {}",
        browser.url().await
    );
    browser.click("#sign-in").await;
    // To the provider and back; the page after the callback moves on to the console.
    assert_eq!(browser.text("#who-name").await, "Isla Governance");
    assert_eq!(browser.text("#who-role").await, "ig-lead");
    assert_eq!(browser.text("#who-org").await, "A81001");
    assert_eq!(browser.url().await, format!("{}/console/", app.origin));

    // The audit search, from the home page's link; its form searches the sign-in's record.
    browser.click("#nav-audit").await;
    // `#scope` is on the audit search only: waiting for it waits for the navigation.
    assert!(browser.text("#scope").await.contains("A81001"));
    assert_eq!(browser.text("h1").await, "Audit search");
    browser.click("#search").await;
    let mut searched = false;
    for _ in 0..100 {
        searched = browser.url().await.contains("/console/audit?");
        if searched {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(searched, "the form's search: {}", browser.url().await);
    assert!(
        browser.text("#results").await.contains("/console/callback"),
        "the sign-in is listed"
    );
    browser.open(&format!("{}/console/", app.origin)).await;

    browser.click("#sign-out").await;
    assert_eq!(browser.text("p.notice").await, "You have signed out.");
    browser.open(&format!("{}/console/", app.origin)).await;
    assert!(
        browser.url().await.ends_with("/console/sign-in"),
        "signed out: {}",
        browser.url().await
    );
    browser.close().await;
}
