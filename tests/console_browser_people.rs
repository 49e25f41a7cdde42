//! "Who has looked at this record" and the agreements in a real headless Chromium: an IG lead
//! signs in through the test OpenID Connect provider, opens a person's access report, prints
//! it (the print stylesheet leaves the console's banner and links out; the PDF is kept), and
//! sees an agreement that lapses in ten days flagged. Screenshots and the PDF go to
//! `target/tmp/console-person*` and `target/tmp/console-agreements*`.

use jiff::ToSpan;

use crate::console::console_toml;
use crate::support::app::{Policies, SourceSpec, StoreChoice, TestApp};
use crate::support::browser::Browser;
use crate::support::oidc::OidcProvider;

/// Known to the demo GP.
const ANN: &str = "9990465630";

/// The GP's clinicians see everything for treatment and, with a reason, in an emergency,
/// under an agreement that lapses ten days from today.
fn lapsing_agreement(until: jiff::civil::Date) -> (String, String) {
    let text = format!(
        "[agreement]\nid = \"dsa-riverside-direct-care\"\ntitle = \"Riverside direct care\"\nversion = \"3.0.0\"\n\
         status = \"active\"\nlegal_basis = [\"UK GDPR 6(1)(e)\", \"UK GDPR 9(2)(h)\"]\nvalid_from = \"2020-01-01\"\n\
         valid_until = \"{until}\"\nreview_by = \"2099-01-01\"\nowner = \"Riverside IG\"\n\n\
         [parties]\ndisclosers = [\"A81001\"]\nrecipients = [\"A81001\"]\n\n\
         [[rule]]\nid = \"direct-care\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"emergency\"\npurpose_of_use = [\"ETREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n"
    );
    ("dsa-riverside-direct-care.toml".into(), text)
}

#[tokio::test]
async fn a_browser_prints_a_persons_access_report_and_sees_a_lapsing_agreement() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let idp = OidcProvider::start("localhost").await;
    let until = concord::policy::live::today()
        .checked_add(10.days())
        .expect("a date");
    let gp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/gp");
    let app = TestApp::start_config(
        vec![SourceSpec::ndjson("gp", "Riverside GP", "A81001", gp)],
        StoreChoice::Sqlite,
        "",
        Policies::Files(vec![lapsing_agreement(until)]),
        &console_toml(&idp),
    )
    .await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));

    // Accesses to Ann's record: reads, and one break-glass read.
    let ann = app.patient_id(ANN).await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("Patient/{ann}")).await.status, 200);
    }
    let glass = [(
        "X-Break-Glass-Reason",
        "Unconscious in the emergency department",
    )];
    let everything = format!("Patient/{ann}/$everything");
    assert_eq!(app.get_with(&everything, &glass).await.status, 200);

    browser.resize(1280, 1400).await;
    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#sign-in").await;
    assert_eq!(browser.text("#who-name").await, "Isla Governance");

    // The report, from the home page's link and the form (as the form sends it).
    browser.click("#nav-person").await;
    assert!(browser.text("#scope").await.contains("A81001"));
    browser
        .open(&format!("{}/console/person?nhs={ANN}", app.origin))
        .await;
    assert_eq!(
        browser.text("#report-heading").await,
        "Accesses to the record of NHS number 999 046 5630"
    );
    let table = browser.text("#accesses").await;
    for part in [
        "Dr Test (dr-test)",
        "Break-glass reason given: Unconscious in the emergency department",
        "Purpose ETREAT",
        "dsa-riverside-direct-care, rule direct-care: ",
        "the whole record ($everything)",
    ] {
        assert!(table.contains(part), "{part}: {table}");
    }
    browser.screenshot(&shots.join("console-person.png")).await;

    // The print-friendly report, and what the printer gets.
    browser.click("#print").await;
    assert!(
        browser
            .text("#meta-by")
            .await
            .contains("Isla Governance (ig-lead-1), ig-lead, A81001")
    );
    assert_eq!(
        browser.text("h1").await,
        "Access report for NHS number 999 046 5630"
    );
    assert!(
        browser
            .url()
            .await
            .ends_with(&format!("/console/person/{ANN}/report"))
    );
    browser
        .screenshot(&shots.join("console-person-report.png"))
        .await;
    assert!(browser.displayed(".banner").await, "on screen, the banner");
    browser.emulate_print(true).await;
    assert!(!browser.displayed(".banner").await, "printed: no banner");
    assert!(!browser.displayed("#print-help").await, "printed: no links");
    assert!(
        browser.displayed("#report-meta").await,
        "printed: who, when, scope"
    );
    assert!(browser.displayed("#accesses").await, "printed: the table");
    browser
        .screenshot(&shots.join("console-person-report-print.png"))
        .await;
    browser.emulate_print(false).await;
    let pdf = browser
        .print_pdf(&shots.join("console-person-report.pdf"))
        .await;
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    assert!(pdf.len() > 1_000, "{} bytes", pdf.len());

    // The agreements: the lapsing one stands out, in words.
    browser.open(&format!("{}/console/", app.origin)).await;
    browser.click("#nav-agreements").await;
    let attention = browser.text("#attention").await;
    assert!(
        attention.contains(&format!("Lapses on {until}, in 10 days")),
        "{attention}"
    );
    assert!(
        attention.contains("dsa-riverside-direct-care"),
        "{attention}"
    );
    browser
        .screenshot(&shots.join("console-agreements.png"))
        .await;
    browser.click("#attention a").await;
    assert!(
        browser
            .text("#standing")
            .await
            .contains(&format!("Lapses on {until}, in 10 days"))
    );
    browser
        .screenshot(&shots.join("console-agreements-one.png"))
        .await;
    browser.close().await;
}
