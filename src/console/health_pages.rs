//! The HTML of the health page and of `audit verify`'s progress and result. Everything shown
//! from the sources, the store or the verify goes through [`Html::text`].

use super::html::Html;
use super::pages::layout;
use super::verify::{Outcome, Run, Status, passed};
use crate::config::Conformance;
use crate::sources::BreakerState;
use crate::store::ChainHead;
use crate::telemetry::SourceHealth;

/// One source as the health page shows it.
#[derive(Debug)]
pub(super) struct SourceView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) ods: String,
    /// An export read at start-up (no calls, no breaker), not a FHIR server.
    pub(super) export: bool,
    pub(super) breaker: BreakerState,
    pub(super) conformance: Conformance,
    /// What this instance saw of it since start.
    pub(super) checked_here: SourceHealth,
}

/// This instance's own chain.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) chain: String,
    pub(super) signed_head: Option<i64>,
    pub(super) spooled: u64,
    pub(super) problem: Option<String>,
    /// Whether heads are signed at all (`[audit] head_signing_key_file`).
    pub(super) signing: bool,
}

/// One page of chains' last signed heads.
#[derive(Debug)]
pub(super) struct ChainHeads {
    pub(super) heads: Vec<ChainHead>,
    /// Chains with a signed head, in all.
    pub(super) chains: i64,
    /// The cursor of the next page.
    pub(super) next: Option<String>,
    pub(super) first_page: bool,
}

/// The writes of the last week whose outcome is not known and that nobody has settled.
#[derive(Debug)]
pub(super) struct Unsettled {
    pub(super) count: usize,
    /// Only the newest writes were looked at.
    pub(super) cut: bool,
}

/// A time as people read it, UTC, to the second.
pub(super) fn when(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(
        |_| us.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn number(h: &mut Html, n: impl ToString) {
    h.text(&n.to_string());
}

fn breaker(h: &mut Html, state: BreakerState, export: bool) {
    if export {
        h.raw("<span class=\"state\">No breaker</span> (files read at start-up)");
        return;
    }
    match state {
        BreakerState::Closed => {
            h.raw("<span class=\"state state-ok\">Closed</span> calls go through");
        }
        BreakerState::HalfOpen => {
            h.raw("<span class=\"state state-warn\">Half-open</span> one trial call decides");
        }
        BreakerState::Open => {
            h.raw("<span class=\"state state-bad\">Open</span> calls refused while it rests");
        }
    }
}

fn calls(h: &mut Html, s: &SourceView) {
    let c = &s.checked_here;
    if s.export {
        h.raw("not called (an export)");
        return;
    }
    number(h, c.calls);
    h.raw(" calls, ");
    number(h, c.failed);
    h.raw(" failed");
    if let Some(ok) = c.last_ok_us {
        h.raw("<br>last answered ").text(&when(ok));
    }
}

fn faults(h: &mut Html, c: &SourceHealth) {
    if c.recent.is_empty() {
        h.raw("None");
        return;
    }
    h.raw("<ul class=\"faults\">");
    for f in &c.recent {
        h.raw("<li>")
            .text(&when(f.at_us))
            .raw(": <code>")
            .text(f.kind)
            .raw("</code>");
        if let Some(op) = f.operation {
            h.raw(" on ").text(op);
        }
        if f.count > 1 {
            h.raw(" (");
            number(h, f.count);
            h.raw(" in a row)");
        }
        h.raw("</li>");
    }
    h.raw("</ul>");
}

fn conformance(h: &mut Html, s: &SourceView) {
    let c = &s.checked_here;
    match s.conformance {
        Conformance::Off => {
            h.raw("Off: not checked");
            return;
        }
        Conformance::Flag => h.raw("Flag: passed on, tagged"),
        Conformance::Drop => h.raw("Drop: withheld"),
    };
    match c.last_check {
        None => {
            h.raw("<br>no resource checked yet");
        }
        Some(last) => {
            h.raw("<br>last check ")
                .text(&when(last.at_us))
                .raw(if last.conformed {
                    ": conformed"
                } else {
                    ": did not conform"
                })
                .raw("<br>");
            number(h, c.checked);
            h.raw(" checked, ");
            number(h, c.nonconformant);
            h.raw(" did not conform");
        }
    }
}

fn sources(h: &mut Html, list: &[SourceView]) {
    h.raw("<h2 id=\"sources-heading\">Sources</h2>\n");
    if list.is_empty() {
        h.raw("<p id=\"sources\">This gateway has no sources configured.</p>\n");
        return;
    }
    h.raw("<table class=\"results\" id=\"sources\">\n<caption>Each source as this instance has seen it since it started; other instances keep their own view</caption>\n")
        .raw("<thead><tr><th scope=\"col\">Source</th><th scope=\"col\">Organisation</th><th scope=\"col\">Circuit breaker</th><th scope=\"col\">Calls</th><th scope=\"col\">Recent faults, newest first</th><th scope=\"col\">Conformance to profiles</th></tr></thead>\n<tbody>\n");
    for s in list {
        h.raw("<tr data-source=\"")
            .text(&s.id)
            .raw("\"><th scope=\"row\">")
            .text(&s.name)
            .raw(" <code>")
            .text(&s.id)
            .raw("</code></th><td>")
            .text(&s.ods)
            .raw("</td><td class=\"breaker\">");
        breaker(h, s.breaker, s.export);
        h.raw("</td><td>");
        calls(h, s);
        h.raw("</td><td>");
        faults(h, &s.checked_here);
        h.raw("</td><td>");
        conformance(h, s);
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

fn chains(h: &mut Html, path: &str, instance: &Instance, heads: &ChainHeads) {
    h.raw("<h2 id=\"chains-heading\">Audit chains</h2>\n<dl class=\"summary\" id=\"instance\">\n<dt>This instance's chain</dt><dd><code>")
        .text(&instance.chain)
        .raw("</code></dd>\n<dt>Its last signed head</dt><dd>");
    match instance.signed_head {
        Some(seq) => {
            h.raw("position ");
            number(h, seq);
        }
        None => {
            h.raw("none yet");
        }
    }
    h.raw("</dd>\n<dt>Records waiting in its spool</dt><dd>");
    number(h, instance.spooled);
    h.raw("</dd>\n");
    if let Some(problem) = &instance.problem {
        h.raw("<dt>Problem</dt><dd>").text(problem).raw("</dd>\n");
    }
    h.raw("</dl>\n");
    if !instance.signing {
        h.raw("<p class=\"notice\" id=\"unsigned\">Chain heads are not signed here (<code>[audit] head_signing_key_file</code> is not set), so records cut off the end of a chain cannot be detected.</p>\n");
    }
    if heads.heads.is_empty() {
        h.raw("<p id=\"heads\">")
            .raw(if heads.first_page {
                "No chain has a signed head yet."
            } else {
                "No older chains."
            })
            .raw("</p>\n");
        return;
    }
    h.raw("<table class=\"results\" id=\"heads\">\n<caption>Each chain's last signed head, most recently signed first (")
        .text(&heads.chains.to_string())
        .raw(if heads.chains == 1 {
            " chain in all)</caption>\n"
        } else {
            " chains in all)</caption>\n"
        })
        .raw("<thead><tr><th scope=\"col\">Chain</th><th scope=\"col\">Position signed</th><th scope=\"col\">Signed at</th><th scope=\"col\">Last record now</th></tr></thead>\n<tbody>\n");
    for head in &heads.heads {
        h.raw("<tr data-chain=\"")
            .text(&head.chain)
            .raw("\"><th scope=\"row\"><code>")
            .text(&head.chain)
            .raw("</code></th><td>");
        number(h, head.seq);
        h.raw("</td><td>")
            .text(&when(head.signed_us))
            .raw("</td><td>");
        match head.last_seq {
            Some(last) => number(h, last),
            None => {
                h.raw("no records");
            }
        }
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
    if let Some(next) = &heads.next {
        let mut link = form_urlencoded::Serializer::new(String::new());
        link.append_pair("heads", next);
        h.raw("<p><a class=\"button secondary\" id=\"older-heads\" href=\"")
            .text(path)
            .raw("/health?")
            .text(&link.finish())
            .raw("#chains-heading\">Older chains</a></p>\n");
    }
}

fn verify_form(h: &mut Html, path: &str, csrf: &str, label: &'static str) {
    h.raw("<form method=\"post\" action=\"")
        .text(path)
        .raw("/health/verify\">\n<input type=\"hidden\" name=\"csrf\" value=\"")
        .text(csrf)
        .raw("\">\n<button type=\"submit\" class=\"button\" id=\"verify\">")
        .raw(label)
        .raw("</button>\n</form>\n");
}

/// What a verify's outcome says in one line.
fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed(v) => format!("Passed: {}", passed(v)),
        Outcome::Broken(b) => format!("Failed: audit log BROKEN: {b}"),
        Outcome::Failed(why) => format!("Could not run: {why}"),
        Outcome::Unrecorded => {
            "Ended, but its result could not be recorded, so it is not shown".into()
        }
    }
}

/// `GET /console/health`.
pub(super) fn health(
    path: &str,
    csrf: &str,
    list: &[SourceView],
    instance: &Instance,
    heads: &ChainHeads,
    unsettled: &Unsettled,
    last: Option<&Status>,
) -> String {
    layout(path, "Health of the record", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n<h1>Health of the record</h1>\n");
        sources(h, list);
        unsettled_writes(h, unsettled);
        chains(h, path, instance, heads);
        h.raw("<h2 id=\"verify-heading\">Check the audit log</h2>\n")
            .raw("<p>Runs the check <code>concord audit verify</code> runs, in the background on this instance: every chain walked in order, every record's hash, every signed head (and the witness file's), and the search projection against the records. One check runs at a time; its start and result are recorded in the audit log.</p>\n");
        if let Some(status) = last {
            h.raw("<p id=\"last-verify\">Last check: ");
            match &status.ended {
                None => {
                    h.raw("running now.");
                }
                Some((_, outcome)) => {
                    h.text(&outcome_line(outcome));
                }
            }
            h.raw(" <a href=\"")
                .text(path)
                .raw("/health/verify\">See the check</a></p>\n");
        }
        verify_form(h, path, csrf, "Check the audit log now");
    })
}

fn unsettled_writes(h: &mut Html, unsettled: &Unsettled) {
    h.raw("<h2 id=\"writes-heading\">Writes whose outcome is not known</h2>\n<p id=\"unsettled-writes\">");
    if unsettled.count == 0 {
        h.raw("None in the last ");
        number(h, super::health::UNSETTLED_DAYS);
        h.raw(" days: every write has its outcome, or was settled.");
    } else {
        h.raw("<strong>");
        number(h, unsettled.count);
        h.raw("</strong> in the last ");
        number(h, super::health::UNSETTLED_DAYS);
        h.raw(" days: the gateway stopped after sending them, or their source timed out or failed, so whether each is at its source is not known. <code>concord audit writes --unsettled</code> reads each source and says what it holds; <code>--settle</code> records it.");
    }
    if unsettled.cut {
        h.raw(" Only the newest ");
        number(h, super::health::UNSETTLED_CAP);
        h.raw(" writes were looked at.");
    }
    h.raw("</p>\n");
}

fn progress(h: &mut Html, path: &str, status: &Status) {
    h.raw("<p id=\"verify-state\" role=\"status\">Running</p>\n");
    match status.total {
        Some(total) => {
            h.raw("<p><label for=\"verify-progress\">Records checked</label> <progress id=\"verify-progress\" max=\"")
                .text(&total.max(1).to_string())
                .raw("\" value=\"")
                .text(&status.checked.min(total).to_string())
                .raw("\"></progress></p>\n<p id=\"verify-count\">");
            number(h, status.checked);
            h.raw(" of ");
            number(h, total);
            h.raw(" records checked");
        }
        None => {
            h.raw("<p id=\"verify-count\">");
            number(h, status.checked);
            h.raw(" records checked (the records in the log are still being counted)");
        }
    }
    match &status.chain {
        Some(chain) => {
            h.raw("; now walking chain <code id=\"verify-chain\">")
                .text(chain)
                .raw("</code>.</p>\n");
        }
        None => {
            h.raw(".</p>\n");
        }
    }
    // INVARIANT: no `<meta http-equiv="refresh">`: a page that reloads itself takes the
    // reader's place and the keyboard's focus back to the top each time (WCAG 2.2.1, failure
    // F41). The reader asks for the latest progress instead (technique G76).
    h.raw("<p><a class=\"button secondary\" id=\"verify-refresh\" href=\"")
        .text(path)
        .raw("/health/verify\">Show the latest progress</a></p>\n<p class=\"hint\" id=\"verify-refresh-hint\">This page stays as it is while you read it; the result is shown here when the check ends.</p>\n");
}

fn result(h: &mut Html, path: &str, ended_us: i64, outcome: &Outcome) {
    match outcome {
        Outcome::Passed(v) => {
            h.raw(
                "<div class=\"verified\" id=\"verify-result\" role=\"status\"><h2>Passed</h2><p>",
            )
            .text(&passed(v))
            .raw(".</p></div>\n");
        }
        Outcome::Broken(b) => {
            h.raw("<div class=\"error-summary\" id=\"verify-result\" role=\"alert\"><h2>The audit log does not verify</h2><p>audit log BROKEN: ")
                .text(&b.to_string())
                .raw("</p>\n<dl class=\"summary\"><dt>Chain</dt><dd><code id=\"broken-chain\">")
                .text(&b.chain)
                .raw("</code></dd><dt>Position</dt><dd id=\"broken-position\">");
            number(h, b.seq);
            h.raw("</dd><dt>Problem</dt><dd>")
                .text(&b.problem)
                .raw("</dd></dl>\n");
            if b.seq >= 0 && !b.chain.is_empty() {
                h.raw("<p><a href=\"")
                    .text(path)
                    .raw("/audit/")
                    .text(&format!("{}.{}", b.chain, b.seq))
                    .raw("\">Open the record at that position</a>, if it is still there and one you may see.</p>\n");
            }
            h.raw("<p>Keep the database as it is and tell whoever looks after this gateway's security: the log was changed outside the gateway, or a record was lost.</p></div>\n");
        }
        Outcome::Failed(why) => {
            h.raw("<div class=\"error-summary\" id=\"verify-result\" role=\"alert\"><h2>The check could not run</h2><p>")
                .text(why)
                .raw("</p></div>\n");
        }
        Outcome::Unrecorded => {
            h.raw("<div class=\"error-summary\" id=\"verify-result\" role=\"alert\"><h2>The result is not shown</h2><p>The check ended, but its result could not be recorded in the audit log, so it is not shown. Run <code>concord audit verify</code>.</p></div>\n");
        }
    }
    h.raw("<p>Ended ").text(&when(ended_us)).raw(".</p>\n");
}

/// `GET /console/health/verify`: the check running now, or the last one's result.
pub(super) fn verify(path: &str, csrf: &str, run: Option<(&Run, Status)>, joined: bool) -> String {
    layout(path, "Audit log check", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/health\">Health of the record</a></p>\n<h1>Audit log check</h1>\n");
        let Some((run, status)) = &run else {
            h.raw(
                "<p id=\"verify-state\">No check has run on this instance since it started.</p>\n",
            );
            verify_form(h, path, csrf, "Check the audit log now");
            return;
        };
        if joined && status.ended.is_none() {
            h.raw("<p class=\"notice\" id=\"joined\">A check was already running, so no second one was started: this is its progress. One check runs at a time.</p>\n");
        }
        h.raw("<p>Started ")
            .text(&when(run.started_us))
            .raw(" by ")
            .text(&run.by)
            .raw(".</p>\n");
        match &status.ended {
            None => progress(h, path, status),
            Some((ended_us, outcome)) => {
                result(h, path, *ended_us, outcome);
                verify_form(h, path, csrf, "Check again");
            }
        }
    })
}
