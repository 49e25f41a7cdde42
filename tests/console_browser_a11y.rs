//! Every page of the IG console, in a real headless Chromium, checked by axe-core against
//! WCAG 2.2 A and AA (`support::axe`: no serious or critical violation) in a tablet's window
//! and a laptop's, walked with the Tab key (`support::keyboard`: every action reached, each
//! with a visible focus style), and photographed. Forms are checked with a mistake in them
//! too, and the pages that list things with something in them: the break-glass review
//! reviews an emergency access of the demo, and `audit verify` runs to its result. (Its
//! progress page, which needs a long log to be seen, is checked by
//! `console_browser_health`.)
//!
//! The gateway serves the demo: its three providers' exports under the repository's own
//! agreements, after a few known requests (reads, a break-glass read, a refused one), and
//! one emergency access nine days old, overdue for review, that another instance recorded.
//! It trusts the demo key (so the sign-in page shows the demo sign-in as well as the identity
//! provider's) and signs in through the test OpenID Connect provider.
//!
//! Screenshots go to `target/tmp/console-{page}.png` (`.ci/run` keeps them in
//! `target/console-screenshots/`). With `CONCORD_SCREENSHOTS=docs/console` the README's
//! few are also written there, relative to the repository: `docs/console/README.md` says how
//! they are made.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::console_toml;
use crate::console_browser_idp::wait_for_url;
use crate::console_review::old_accesses;
use crate::support::app::{Policies, SourceSpec, StoreChoice, TestApp};
use crate::support::axe;
use crate::support::browser::Browser;
use crate::support::keyboard;
use crate::support::oidc::OidcProvider;

/// Set to a folder (relative to the repository) to keep the screenshots there too.
const ENV_SCREENSHOTS: &str = "CONCORD_SCREENSHOTS";

/// Known to the demo GP.
const ANN: &str = "9990465630";
const BEN: &str = "9996656063";

/// The pages whose screenshots the README shows (`docs/console/`).
const FOR_THE_README: [&str; 11] = [
    "sign-in",
    "choose-role",
    "home",
    "audit-results",
    "audit-form-error",
    "audit-record",
    "break-glass-queue",
    "access-report",
    "agreements-list",
    "health-of-the-record",
    "pictures",
];

/// The width pages are photographed at: a laptop's.
const WIDTH: u32 = 1280;
/// A tablet's window, upright.
const TABLET: (u32, u32) = (768, 1024);
/// The tallest photograph.
const MOST_HEIGHT: u32 = 2400;

/// Makes the window as tall as the page (up to [`MOST_HEIGHT`]), so that a screenshot shows
/// all of it.
async fn fit_window(browser: &Browser) {
    browser.resize(WIDTH, 800).await;
    let measured = browser
        .execute_async(
            "arguments[arguments.length - 1]([window.outerHeight - window.innerHeight, \
             document.documentElement.scrollHeight]);",
            json!([]),
        )
        .await;
    let px = |i: usize| u32::try_from(measured[i].as_u64().unwrap_or(0)).unwrap_or(0);
    browser
        .resize(WIDTH, (px(0) + px(1)).clamp(800, MOST_HEIGHT))
        .await;
}

/// Checks the page the browser shows with axe-core as a tablet shows it, then as a laptop
/// does, saves its screenshot, and walks it with the Tab key.
async fn check(browser: &Browser, page: &str) {
    browser.resize(TABLET.0, TABLET.1).await;
    axe::check(browser, &format!("{page} (tablet)")).await;
    fit_window(browser).await;
    axe::check(browser, page).await;
    let name = format!("console-{page}.png");
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
    browser.screenshot(&tmp).await;
    if let Some(dir) = std::env::var_os(ENV_SCREENSHOTS)
        && FOR_THE_README.contains(&page)
    {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::create_dir_all(&dir).expect("the screenshots' folder");
        std::fs::copy(&tmp, dir.join(&name)).expect("copy the screenshot");
    }
    keyboard::check(browser, page).await;
}

/// The demo gateway: its three providers and its agreements, with `extra` at the end of its
/// config.
async fn demo(extra: &str) -> TestApp {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("examples/demo");
    let mut agreements = Vec::new();
    for entry in std::fs::read_dir(root.join("policies")).expect("the demo's agreements") {
        let path = entry.expect("an agreement").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        agreements.push((name, std::fs::read_to_string(&path).expect("readable")));
    }
    TestApp::start_config(
        vec![
            SourceSpec::ndjson(
                "gp",
                "Riverside Medical Practice",
                "A81001",
                demo.join("gp"),
            ),
            SourceSpec::ndjson(
                "community",
                "Northshire Community Health NHS Trust",
                "RY4",
                demo.join("community"),
            ),
            SourceSpec::ndjson(
                "socialcare",
                "Northshire County Council Adult Social Care",
                "LA001",
                demo.join("socialcare"),
            ),
        ],
        StoreChoice::Sqlite,
        "",
        Policies::Files(agreements),
        extra,
    )
    .await
}

/// Requests that leave records to find: the GP's clinician reads two people's records, once
/// in an emergency, and a receptionist is refused.
async fn traffic(app: &TestApp) {
    let ann = app.patient_id(ANN).await;
    let ben = app.patient_id(BEN).await;
    let gp = format!("Bearer {}", app.token_with(&[]));
    for path in [
        format!("Patient/{ann}"),
        format!("Patient/{ben}/$everything"),
        format!("Condition?patient={ann}"),
    ] {
        let a = app.get_raw(&path, &[("Authorization", &gp)]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
    }
    let glass = app
        .get_raw(
            &format!("Patient/{ben}/$everything"),
            &[
                ("Authorization", &gp),
                (
                    "X-Break-Glass-Reason",
                    "Unconscious in the emergency department",
                ),
            ],
        )
        .await;
    assert_eq!(glass.status, StatusCode::OK, "{}", glass.body);
    let receptionist = format!(
        "Bearer {}",
        app.token_with(&[
            ("sub", json!("rec-1")),
            ("name", json!("Robin Reception")),
            ("role", json!("receptionist")),
        ])
    );
    let refused = app
        .get_raw(
            &format!("Patient/{ann}"),
            &[("Authorization", &receptionist)],
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
}

#[tokio::test]
async fn axe_core_finds_what_a_page_gets_wrong() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // No language, an image without a text alternative, a field without a label, and grey
    // on white that few can read.
    browser
        .open(
            "data:text/html,<!doctype html><html><head><title>Broken</title></head><body>\
             <main><h1>Broken</h1><img src=\"x.png\"><input type=\"text\" name=\"q\">\
             <p style=\"color: rgb(220,220,220)\">Faint</p></main></body></html>",
        )
        .await;
    let Some(found) = axe::violations(&browser).await else {
        return;
    };
    let ids: Vec<&str> = found.iter().filter_map(|v| v["id"].as_str()).collect();
    for rule in ["html-has-lang", "image-alt", "label", "color-contrast"] {
        assert!(ids.contains(&rule), "{rule} in {ids:?}");
    }
    browser.close().await;
}

#[tokio::test]
async fn the_keyboard_check_finds_what_a_page_gets_wrong() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // A link whose focus does not show, a button taken out of the Tab order, and a link that
    // takes the focus while off the page; one button is right.
    browser
        .open(
            "data:text/html,<!doctype html><html lang=\"en\"><head><title>Keys</title><style>\
             a:focus { outline: none } .away { position: absolute; left: -999rem }\
             button:focus-visible { outline: 3px solid black }</style></head><body><main>\
             <h1>Keys</h1><a href=\"/a\" id=\"quiet\">Quiet</a> <button id=\"right\">Right</button>\
             <button id=\"skipped\" tabindex=\"-1\">Skipped</button>\
             <a href=\"/b\" id=\"away\" class=\"away\">Away</a></main></body></html>",
        )
        .await;
    let found = keyboard::problems(&browser).await;
    let about = |id: &str, what: &str| found.iter().any(|p| p.contains(id) && p.contains(what));
    assert!(about("a#quiet", "no visible focus style"), "{found:?}");
    assert!(about("button#skipped", "never reached by Tab"), "{found:?}");
    assert!(about("a#away", "focused off the page"), "{found:?}");
    assert!(!found.iter().any(|p| p.contains("#right")), "{found:?}");
    browser.close().await;
}

#[tokio::test]
async fn every_console_page_passes_axe_core() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = OidcProvider::start("localhost").await;
    let demo_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-signing-key.pub.pem"
    );
    let toml = format!(
        "[[auth.key]]\nkid = \"concord-demo\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{demo_key}\"\n\n{}",
        console_toml(&idp)
    );
    let app = demo(&toml).await;
    traffic(&app).await;
    let console = format!("{}/console", app.origin);

    // The sign-in page, with both ways in.
    browser.open(&format!("{console}/")).await;
    wait_for_url(&browser, |u| u.ends_with("/console/sign-in")).await;
    assert!(browser.text("#demo-sign-in").await.contains("Demo sign-in"));
    check(&browser, "sign-in").await;

    // A clinician is refused: the 403 page.
    let mut clinician = crate::support::oidc::ig_lead();
    clinician.insert("sub".into(), "dr-1".into());
    clinician.insert("name".into(), "Drew Clinician".into());
    clinician.insert("role".into(), "clinician".into());
    idp.set_user(clinician);
    browser.click("#sign-in").await;
    assert_eq!(browser.text("h1").await, "You cannot use the IG console");
    check(&browser, "refused").await;

    // An NHS smartcard user with two roles the console allows chooses one.
    let mut cara = serde_json::Map::new();
    cara.insert("sub".into(), "555000111222".into());
    cara.insert("name".into(), "Cara Smartcard".into());
    cara.insert(
        "nhsid_nrbac_roles".into(),
        json!([
            {"person_roleid": "1", "org_code": "A81001", "role_code": "S8000:G8000:R8003"},
            {"person_roleid": "2", "org_code": "LA001", "role_code": "S8000:G8000:R8004"}
        ]),
    );
    idp.set_user(cara);
    browser.open(&format!("{console}/sign-in")).await;
    browser.click("#sign-in").await;
    wait_for_url(&browser, |u| u.ends_with("/console/role")).await;
    assert!(browser.text("fieldset").await.contains("ig-lead at A81001"));
    check(&browser, "choose-role").await;
    browser.click("label[for=choice-0]").await;
    browser.click("#choose").await;

    // Home.
    assert_eq!(browser.text("#who-role").await, "ig-lead");
    check(&browser, "home").await;

    // The audit search: as it opens (every record in scope), a search through its form, one
    // that finds nothing, and one with a mistake in it.
    browser.click("#nav-audit").await;
    assert!(browser.text("#scope").await.contains("A81001"));
    assert!(browser.text("#results").await.contains("Robin Reception"));
    check(&browser, "audit-search").await;
    browser.fill("#f-nhs", ANN).await;
    browser.click("#search").await;
    wait_for_url(&browser, |u| u.contains("/console/audit?")).await;
    let found = browser.text("#results").await;
    assert!(found.contains(&format!("NHS {ANN}")), "{found}");
    assert!(!found.contains(BEN), "{found}");
    check(&browser, "audit-results").await;
    browser
        .open(&format!("{console}/audit?to=2000-01-01"))
        .await;
    assert_eq!(
        browser.text("#no-results").await,
        "No records match this search."
    );
    check(&browser, "audit-no-results").await;
    browser
        .open(&format!("{console}/audit?nhs=1234567890&from=yesterday"))
        .await;
    assert!(
        browser
            .text("#form-error")
            .await
            .contains("There is a problem")
    );
    check(&browser, "audit-form-error").await;
    browser
        .assert_mistake("#f-nhs", "f-nhs", "NHS number must be 10 digits")
        .await;
    browser
        .assert_mistake("#f-from", "f-from", "the date from must be a date")
        .await;
    // A range that ends before it starts: the date to is wrong, the date from is not.
    browser
        .open(&format!("{console}/audit?from=2026-11-02&to=2026-11-01"))
        .await;
    browser
        .assert_mistake("#f-to", "f-to", "the same as or after the date from")
        .await;
    assert_eq!(browser.attribute("#f-from", "aria-invalid").await, None);
    check(&browser, "audit-form-range-error").await;

    // One record in full: the break-glass read.
    browser
        .open(&format!("{console}/audit?purpose=ETREAT"))
        .await;
    browser.click("#results tbody a").await;
    wait_for_url(&browser, |u| {
        u.contains("/console/audit/") && !u.contains('?')
    })
    .await;
    assert!(
        browser
            .text("#what")
            .await
            .contains("Unconscious in the emergency department")
    );
    check(&browser, "audit-record").await;
    browser.open(&format!("{console}/audit/0.0")).await;
    assert_eq!(browser.text("h1").await, "Audit record not found");
    check(&browser, "audit-record-not-found").await;

    review(&browser, &app, &console).await;
    person(&browser, &console).await;
    agreements(&browser, &console).await;
    health(&browser, &console).await;
    pictures(&browser, &console).await;

    // Signed out: the sign-in page again, with its notice.
    browser.open(&format!("{console}/")).await;
    browser.click("#sign-out").await;
    assert_eq!(browser.text("p.notice").await, "You have signed out.");
    check(&browser, "signed-out").await;
    browser.close().await;
}

/// The break-glass review: the queue, the review form (first sent without the note a "not
/// appropriate" needs), the review on the access's record page, the queue and the list of
/// reviews made after it, and an access that is not there.
async fn review(browser: &Browser, app: &TestApp, console: &str) {
    old_accesses(app, &[9]).await;
    browser.open(&format!("{console}/")).await;
    browser.click("#nav-review").await;
    let waiting = browser.text("#waiting").await;
    assert!(
        waiting.starts_with("2 emergency accesses wait for review; 1 is overdue"),
        "{waiting}"
    );
    check(browser, "break-glass-queue-before-review").await;
    // Oldest first: the demo's own is the second.
    browser
        .click("#queue tbody tr:nth-child(2) a.review-link")
        .await;
    assert_eq!(browser.text("h1").await, "Review emergency access");
    assert!(
        browser
            .text("#access")
            .await
            .contains("Unconscious in the emergency department")
    );
    check(browser, "break-glass-review").await;
    browser.click("#f-outcome-not-appropriate").await;
    browser.click("#submit-review").await;
    assert!(
        browser
            .text("#form-error")
            .await
            .contains("write a note: it is needed"),
        "the form again, the note asked for"
    );
    check(browser, "break-glass-review-error").await;
    browser
        .assert_mistake("#f-note", "f-note", "write a note: it is needed")
        .await;
    browser
        .fill("#f-note", "Seen in a routine clinic: no emergency.")
        .await;
    browser.click("#submit-review").await;
    let review = browser.text("dl#review").await;
    assert!(review.contains("Not appropriate"), "{review}");
    assert!(review.contains("Cara Smartcard"), "{review}");
    check(browser, "break-glass-reviewed-record").await;
    browser.open(&format!("{console}/review")).await;
    assert!(browser.text("#queue").await.contains("Overdue"));
    assert!(
        browser
            .text("#recent")
            .await
            .contains("Seen in a routine clinic: no emergency.")
    );
    check(browser, "break-glass-queue").await;
    browser.click("#nav-reviewed").await;
    assert!(browser.text("#reviewed").await.contains("Not appropriate"));
    check(browser, "break-glass-reviews-made").await;
    browser.open(&format!("{console}/review/0.0")).await;
    assert_eq!(browser.text("h1").await, "Emergency access not found");
    check(browser, "break-glass-not-found").await;
}

/// "Who has looked at this record": the form, a person's accesses, the print-friendly report,
/// and a wrong NHS number.
async fn person(browser: &Browser, console: &str) {
    browser.open(&format!("{console}/")).await;
    browser.click("#nav-person").await;
    assert!(browser.text("#scope").await.contains("A81001"));
    check(browser, "who-looked").await;
    browser.fill("#f-nhs", BEN).await;
    browser.click("#show").await;
    assert_eq!(
        browser.text("#report-heading").await,
        "Accesses to the record of NHS number 999 665 6063"
    );
    let accesses = browser.text("#accesses").await;
    assert!(
        accesses.contains("Unconscious in the emergency department"),
        "{accesses}"
    );
    check(browser, "who-looked-results").await;
    browser.click("#print").await;
    assert_eq!(
        browser.text("h1").await,
        "Access report for NHS number 999 665 6063"
    );
    check(browser, "access-report").await;
    browser
        .open(&format!("{console}/person?nhs=1234567890"))
        .await;
    assert!(
        browser
            .text("#form-error")
            .await
            .contains("There is a problem")
    );
    check(browser, "who-looked-error").await;
    browser
        .assert_mistake("#f-nhs", "f-nhs", "NHS number must be 10 digits")
        .await;
}

/// The agreements: the list with the matrix, one agreement, and one that is not there.
async fn agreements(browser: &Browser, console: &str) {
    browser.open(&format!("{console}/")).await;
    browser.click("#nav-agreements").await;
    assert!(
        browser
            .text("#agreements")
            .await
            .contains("dsa-northshire-emergency-access")
    );
    check(browser, "agreements-list").await;
    browser
        .open(&format!("{console}/agreements/dsa-northshire-direct-care"))
        .await;
    assert!(
        browser
            .text("#rules")
            .await
            .contains("clinical-direct-care")
    );
    check(browser, "agreement").await;
    browser
        .open(&format!("{console}/agreements/no-such-agreement"))
        .await;
    assert_eq!(browser.text("h1").await, "Agreement not found");
    check(browser, "agreement-not-found").await;
}

/// The health of the record, and `audit verify` run from its button to the result (the
/// progress page, while the check runs, is followed with its own link).
async fn health(browser: &Browser, console: &str) {
    browser.open(&format!("{console}/")).await;
    browser.click("#nav-health").await;
    assert_eq!(browser.text("h1").await, "Health of the record");
    assert!(
        browser
            .text("#sources")
            .await
            .contains("Riverside Medical Practice")
    );
    check(browser, "health-of-the-record").await;
    browser.click("#verify").await;
    let mut result = String::new();
    for _ in 0..120 {
        let page = browser.source().await;
        if page.contains("id=\"verify-result\"") {
            result = browser.text("#verify-result").await;
            break;
        }
        if page.contains("id=\"verify-refresh\"") {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            browser.click("#verify-refresh").await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert!(result.contains("Passed"), "the check passed: {result}");
    check(browser, "verify-result").await;
}

/// The pictures, and a range that is not one.
async fn pictures(browser: &Browser, console: &str) {
    browser.open(&format!("{console}/")).await;
    browser.click("#nav-charts").await;
    assert_eq!(browser.text("h1").await, "Pictures of the audit log");
    let glass = browser.text("#break-glass-total").await;
    assert!(
        !glass.starts_with("0 "),
        "the demo's and the old one: {glass}"
    );
    check(browser, "pictures").await;
    browser
        .open(&format!("{console}/charts?from=2026-02-30"))
        .await;
    assert!(browser.text("#form-error").await.contains("must be a date"));
    check(browser, "pictures-form-error").await;
    browser
        .assert_mistake("#f-from", "f-from", "must be a date")
        .await;
}
