//! An automated accessibility check for browser tests: Deque's `axe-core` (installed by
//! `.ci/run` with `npm ci` in `tests/browser/`, read from disk here, never downloaded) run in
//! the page the [`Browser`] shows, against the WCAG 2.0, 2.1 and 2.2 A and AA rules.
//!
//! [`check`] fails the test on any violation whose impact is `serious` or `critical`, naming
//! each rule and the elements it found; lesser ones are printed as notes. The script is
//! injected through WebDriver, which runs it outside the page's Content-Security-Policy: the
//! console itself still serves no script.
//!
//! Without `tests/browser/node_modules` (a plain `cargo test` on a fresh clone) the check
//! is skipped with a note.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::browser::Browser;

/// Where `npm ci` puts the browser tests' tools.
pub(crate) fn node_modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules")
}

/// The WCAG levels checked: every A and AA rule of WCAG 2.0, 2.1 and 2.2.
const TAGS: [&str; 6] = [
    "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa",
];

/// Impacts that fail the check.
const FAILING: [&str; 2] = ["serious", "critical"];

/// The script run in the page after axe's own source: it answers the violations, shortened to
/// what a report needs.
const RUN: &str = r"
const done = arguments[arguments.length - 1];
window.axe
  .run(document, { runOnly: { type: 'tag', values: arguments[0] }, resultTypes: ['violations'] })
  .then((r) => done({ violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map((n) => n.target.join(' ')),
  })) }))
  .catch((e) => done({ failed: String(e) }));
";

/// One rule broken, as a line of the report.
fn line(v: &Value) -> String {
    let targets: Vec<&str> = v["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "  {} ({}): {} at {}",
        v["id"].as_str().unwrap_or("?"),
        v["impact"].as_str().unwrap_or("?"),
        v["help"].as_str().unwrap_or(""),
        targets.join(", ")
    )
}

/// What axe-core finds on the page `browser` shows, as `{id, impact, help, targets}` objects,
/// or `None` (with a note) when axe-core is not installed.
pub(crate) async fn violations(browser: &Browser) -> Option<Vec<Value>> {
    let path = node_modules().join("axe-core/axe.min.js");
    let Ok(source) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipped an accessibility check: no {} (npm ci in tests/browser)",
            path.display()
        );
        return None;
    };
    let script = format!("{source}\n;{RUN}");
    let answer = browser.execute_async(&script, json!([TAGS])).await;
    let Some(found) = answer["violations"].as_array() else {
        panic!("axe-core did not run on {}: {answer}", browser.url().await);
    };
    Some(found.clone())
}

/// Runs axe-core on the page `browser` shows, called `page` in the report: the test fails on
/// any serious or critical WCAG A/AA violation.
pub(crate) async fn check(browser: &Browser, page: &str) {
    let Some(found) = violations(browser).await else {
        return;
    };
    let (failing, notes): (Vec<&Value>, Vec<&Value>) = found
        .iter()
        .partition(|v| FAILING.contains(&v["impact"].as_str().unwrap_or("")));
    if !notes.is_empty() {
        let lines: Vec<String> = notes.iter().map(|v| line(v)).collect();
        eprintln!("axe-core, {page}: lesser findings\n{}", lines.join("\n"));
    }
    let lines: Vec<String> = failing.iter().map(|v| line(v)).collect();
    assert!(
        failing.is_empty(),
        "axe-core found serious or critical WCAG violations on {page} ({}):\n{}",
        browser.url().await,
        lines.join("\n")
    );
}
