//! The break-glass review in a real headless Chromium: a clinician breaks the glass through
//! the gateway, an IG lead of the same organisation signs in through the test OpenID Connect
//! provider, opens the queue from the home page, reviews the access with the keyboard-usable
//! form (first with mistakes in it), and sees the review on the access's audit record page;
//! then the clinician, an IG lead too, is refused the review of their own emergency access.
//! Screenshots go to
//! `target/tmp/console-review-*.png`.

use crate::console_review::{BEN, break_glass, gateway_trusting, old_accesses, user};
use crate::support::app::StoreChoice;
use crate::support::browser::Browser;
use crate::support::oidc::OidcProvider;

#[tokio::test]
async fn a_browser_reviews_a_break_glass_access_and_sees_the_review_on_its_record() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = OidcProvider::start("localhost").await;
    let app = gateway_trusting(&idp, StoreChoice::Sqlite).await;
    let id = break_glass(&app).await;
    // And one made nine days ago, overdue for review.
    let old = old_accesses(&app, &[9]).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    browser.resize(1280, 1100).await;

    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#who-name").await, "Isla Governance");
    assert_eq!(
        browser.text("#review-waiting").await,
        "(2 waiting, 1 overdue)"
    );
    browser.click("#nav-review").await;
    // `#waiting` is on the queue only: waiting for it waits for the navigation.
    let waiting = browser.text("#waiting").await;
    assert!(
        waiting.starts_with("2 emergency accesses wait"),
        "{waiting}"
    );
    let overdue = browser.text(&format!("tr[data-id=\"{}\"]", old[0])).await;
    assert!(overdue.contains("Overdue waiting 9 days"), "{overdue}");
    let queue = browser.text("#queue").await;
    assert!(queue.contains(&format!("NHS {BEN}")), "{queue}");
    assert!(queue.contains("Collapsed in clinic"), "{queue}");
    browser
        .screenshot(&shots.join("console-review-queue.png"))
        .await;

    browser
        .click(&format!("tr[data-id=\"{id}\"] a.review-link"))
        .await;
    assert_eq!(browser.text("h1").await, "Review emergency access");
    // Sent with nothing chosen: the browser lets it go (the form is `novalidate`) and the
    // console says what is wrong, at the top and at the radios.
    browser.click("#submit-review").await;
    browser
        .assert_mistake(
            "fieldset[role=\"radiogroup\"]",
            "f-outcome-appropriate",
            "choose whether the access was appropriate",
        )
        .await;
    assert_eq!(
        browser.attribute("#f-note", "aria-invalid").await,
        None,
        "the note is not wrong"
    );
    browser
        .screenshot(&shots.join("console-review-form-error.png"))
        .await;
    // A note longer than 2,000 characters (set as a script would, past the field's
    // `maxlength`): the outcome is kept, the note is wrong.
    browser.click("#f-outcome-not-appropriate").await;
    browser
        .execute_async(
            "document.getElementById('f-note').value = 'x'.repeat(2001); arguments[arguments.length - 1](null);",
            serde_json::json!([]),
        )
        .await;
    browser.click("#submit-review").await;
    browser
        .assert_mistake(
            "#f-note",
            "f-note",
            "the note must be at most 2,000 characters",
        )
        .await;
    assert_eq!(
        browser
            .attribute("#f-outcome-not-appropriate", "checked")
            .await
            .as_deref(),
        Some("true"),
        "the choice is kept"
    );
    assert_eq!(
        browser.attribute("fieldset", "aria-invalid").await,
        None,
        "the outcome is not wrong now"
    );
    browser
        .execute_async(
            "document.getElementById('f-note').value = ''; arguments[arguments.length - 1](null);",
            serde_json::json!([]),
        )
        .await;
    browser
        .fill(
            "#f-note",
            "No emergency: the patient was seen in a routine clinic.",
        )
        .await;
    browser
        .screenshot(&shots.join("console-review-form.png"))
        .await;
    browser.click("#submit-review").await;

    // Sent on to the review on the access's audit record page.
    let review = browser.text("dl#review").await;
    assert!(review.contains("Not appropriate"), "{review}");
    assert!(review.contains("Isla Governance (ig-lead-1)"), "{review}");
    assert!(
        review.contains("The review matches its record in the audit chain."),
        "{review}"
    );
    assert_eq!(
        browser.text("#review-note").await,
        "No emergency: the patient was seen in a routine clinic."
    );
    assert_eq!(
        browser.url().await,
        format!("{}/console/audit/{id}#break-glass-review", app.origin)
    );
    browser
        .screenshot(&shots.join("console-review-record.png"))
        .await;

    // It has left the queue, which shows it among the latest reviews, as does the list of
    // reviews made.
    browser
        .open(&format!("{}/console/review", app.origin))
        .await;
    let rest = browser.text("#queue").await;
    assert!(
        rest.contains("9 days ago") && !rest.contains("Collapsed in clinic"),
        "the old one only: {rest}"
    );
    assert!(browser.text("#recent").await.contains("Not appropriate"));
    browser.click("#nav-reviewed").await;
    assert!(browser.text("#reviewed").await.contains("Not appropriate"));
    browser
        .screenshot(&shots.join("console-review-reviewed.png"))
        .await;

    // The clinician who breaks the glass again is an IG lead too (the same issuer and
    // subject): signed in, they see their own access in the queue with no way to review it,
    // and its review page refuses them.
    let own = break_glass(&app).await;
    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-out").await;
    assert_eq!(browser.text("p.notice").await, "You have signed out.");
    idp.set_user(user("dr-test", "Dr Test", "A81001", "ig-lead"));
    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#who-name").await, "Dr Test");
    browser.click("#nav-review").await;
    let row = browser.text(&format!("tr[data-id=\"{own}\"]")).await;
    assert!(
        row.contains("Your own access: another reviewer reviews it"),
        "{row}"
    );
    assert!(
        !browser
            .source()
            .await
            .contains(&format!("/console/review/{own}\"")),
        "no link to review it"
    );
    browser
        .open(&format!("{}/console/review/{own}", app.origin))
        .await;
    assert!(
        browser
            .text("main")
            .await
            .contains("You cannot review your own emergency access"),
    );
    assert!(!browser.source().await.contains("id=\"review-form\""));
    browser
        .screenshot(&shots.join("console-review-own-refused.png"))
        .await;
    browser.close().await;
}
