//! The HTML of "who has looked at this record": the page with its form, and the
//! print-friendly report. Everything shown from a record, a session or the form goes through
//! [`Html::text`].

use super::audit::{FormError, mistakes};
use super::form_errors::{self, Mistake};
use super::html::Html;
use super::pages::layout;
use super::person::{Access, Asked, Kind, REPORT_PAGE};
use crate::store::ConsoleSession;

/// One part of a person's report.
pub(super) struct Report<'a> {
    /// The ten digits.
    pub(super) nhs: &'a str,
    pub(super) accesses: &'a [Access],
    /// The cursor of the next, older part.
    pub(super) next: Option<&'a str>,
    /// This is not the first part.
    pub(super) later_part: bool,
    /// When it was produced, as people read it.
    pub(super) produced: String,
}

/// An NHS number in the 3-3-4 groups people read.
fn spaced(nhs: &str) -> String {
    match (nhs.get(..3), nhs.get(3..6), nhs.get(6..)) {
        (Some(a), Some(b), Some(c)) if nhs.len() == 10 => format!("{a} {b} {c}"),
        _ => nhs.to_owned(),
    }
}

/// What the report covers, in a sentence; `print`: for the document's reader, who is not the
/// user.
fn scope(h: &mut Html, session: &ConsoleSession, region: bool, print: bool) {
    if region {
        h.raw("Every access recorded by this gateway, by the staff of every organisation, by the person and their carers, and by information-governance staff.");
        return;
    }
    h.raw("The accesses made by the staff of ")
        .text(session.org.as_deref().unwrap_or("no organisation"))
        .raw(if print {
            ", the organisation that produced this report,"
        } else {
            " (your organisation),"
        })
        .raw(" including its information-governance staff, and the accesses by other organisations' staff to records this organisation shares. Other organisations' staff's accesses to other organisations' records are not in this report: the region's information-governance team can produce a report that covers them.");
}

fn form(h: &mut Html, path: &str, asked: &Asked, m: &[Mistake]) {
    const ID: &str = "f-nhs";
    h.raw("<form method=\"get\" action=\"")
        .text(path)
        .raw("/person\" class=\"search\" id=\"person-search\" novalidate>\n<div class=\"");
    form_errors::group_class(h, m, ID, "field");
    h.raw("\"><label for=\"f-nhs\">NHS number</label>");
    form_errors::message(h, m, ID);
    h.raw("<input type=\"text\" id=\"f-nhs\" name=\"nhs\" inputmode=\"numeric\" autocomplete=\"off\" value=\"")
        .text(&asked.nhs)
        .raw("\"");
    form_errors::attributes(h, m, ID, None);
    h.raw("></div>\n<div class=\"actions\"><button type=\"submit\" class=\"button\" id=\"show\">Show accesses</button></div>\n</form>\n");
}

/// The link to the next, older part of a report.
fn next_link(path: &str, report: &Report<'_>, print: bool, next: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if !print {
        query.append_pair("nhs", report.nhs);
    }
    query.append_pair("cursor", next);
    if print {
        format!("{path}/person/{}/report?{}", report.nhs, query.finish())
    } else {
        format!("{path}/person?{}", query.finish())
    }
}

/// The table of accesses; `links`: each row's time opens its audit record.
fn table(h: &mut Html, path: &str, accesses: &[Access], links: bool) {
    h.raw("<table class=\"results report\" id=\"accesses\">\n<caption>Accesses to the record, newest first</caption>\n<thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">By whom</th><th scope=\"col\">What was done</th><th scope=\"col\">Why</th><th scope=\"col\">Resources disclosed / withheld</th><th scope=\"col\">Outcome</th><th scope=\"col\">Audit record</th></tr></thead>\n<tbody>\n");
    for a in accesses {
        h.raw("<tr data-id=\"").text(&a.id).raw("\"><td>");
        if links {
            h.raw("<a href=\"")
                .text(path)
                .raw("/audit/")
                .text(&a.id)
                .raw("\">")
                .text(&a.when)
                .raw("</a>");
        } else {
            h.text(&a.when);
        }
        h.raw("</td><td>");
        who(h, a);
        h.raw("</td><td>");
        if a.kind == Kind::Console {
            h.raw("<strong class=\"tag muted\">IG console</strong> ");
        }
        h.text(&a.action).raw("</td><td>");
        why(h, a);
        h.raw("</td><td>")
            .text(&a.disclosed.to_string())
            .raw(" / ")
            .text(&a.withheld.to_string())
            .raw("</td><td>")
            .text(&a.outcome)
            .raw("</td><td>")
            .text(&a.id)
            .raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

fn who(h: &mut Html, a: &Access) {
    match a.kind {
        Kind::Patient => {
            match &a.relationship {
                Some(rel) => h.raw("A carer acting for the person (").text(rel).raw(")"),
                None => h.raw("The person themselves"),
            };
            h.raw("<br>").text(&a.who);
        }
        Kind::Unauthenticated => {
            h.raw("Someone without a valid token (refused)");
        }
        Kind::Staff | Kind::Console => {
            h.text(&a.who);
            let place = match (a.role.is_empty(), a.org.is_empty()) {
                (false, false) => format!("{}, {}", a.role, a.org),
                (false, true) => a.role.clone(),
                (true, false) => a.org.clone(),
                (true, true) => String::new(),
            };
            if !place.is_empty() {
                h.raw("<br>").text(&place);
            }
        }
    }
}

fn why(h: &mut Html, a: &Access) {
    if let Some(reason) = &a.break_glass {
        h.raw("<strong class=\"tag warning\">Break-glass</strong> reason given: ")
            .text(reason)
            .raw("<br>");
    }
    if !a.purpose.is_empty() {
        h.raw("Purpose ").text(&a.purpose);
    }
    if a.grounds.is_empty() {
        return;
    }
    h.raw("<ul class=\"grounds\">");
    for g in &a.grounds {
        h.raw("<li>")
            .text(&g.agreement)
            .raw(", rule ")
            .text(&g.rule)
            .raw(": ")
            .text(&g.resources.to_string())
            .raw(if g.resources == 1 {
                " resource"
            } else {
                " resources"
            });
        if g.emergency {
            h.raw(" (emergency access only)");
        }
        h.raw("</li>");
    }
    h.raw("</ul>");
}

/// What this part of the report covers, and whether older accesses follow.
fn extent(h: &mut Html, report: &Report<'_>) {
    let n = report.accesses.len();
    match (report.accesses.first(), report.accesses.last()) {
        (Some(newest), Some(oldest)) => {
            h.raw("<p id=\"extent\">This part lists ")
                .text(&n.to_string())
                .raw(if n == 1 { " access" } else { " accesses" })
                .raw(", recorded from ")
                .text(&oldest.when)
                .raw(" to ")
                .text(&newest.when)
                .raw(", newest first, at most ")
                .text(&REPORT_PAGE.to_string())
                .raw(" a part.");
            if report.later_part {
                h.raw(" Newer accesses are in the parts before it.");
            }
            h.raw("</p>\n");
        }
        _ if report.later_part => {
            h.raw(
                "<p id=\"extent\">No older accesses are recorded within this report's scope.</p>\n",
            );
        }
        _ => {
            h.raw("<p id=\"extent\">No access to this person's record is recorded within this report's scope.</p>\n");
        }
    }
}

/// Whether the report ends here, or where it goes on.
fn more(h: &mut Html, path: &str, report: &Report<'_>, print: bool) {
    match report.next {
        Some(next) => {
            h.raw("<p class=\"notice\" id=\"more\">The report goes on: older accesses are in the next part. <a id=\"older\" href=\"")
                .text(&next_link(path, report, print, next))
                .raw("\">Next part (older accesses)</a></p>\n");
        }
        None if !report.accesses.is_empty() => {
            h.raw("<p id=\"complete\">End of the report: no older access is recorded within its scope.</p>\n");
        }
        None => {}
    }
}

/// `GET /console/person`: the form, its mistakes summarised above it and shown at the field,
/// and a part of the report below it.
pub(super) fn page(
    path: &str,
    session: &ConsoleSession,
    region: bool,
    asked: &Asked,
    errors: &[FormError],
    report: Option<&Report<'_>>,
) -> String {
    layout(path, "Who has looked at this record", |h| {
        h.raw("<p class=\"no-print\"><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n");
        let m = mistakes(errors);
        form_errors::summary(h, &m);
        h.raw("<h1>Who has looked at this record</h1>\n<p class=\"scope\" id=\"scope\">");
        scope(h, session, region, false);
        h.raw("</p>\n");
        form(h, path, asked, &m);
        let Some(report) = report else {
            return;
        };
        h.raw("<h2 id=\"report-heading\">Accesses to the record of NHS number ")
            .text(&spaced(report.nhs))
            .raw("</h2>\n<p class=\"no-print\" id=\"print-help\"><a class=\"button secondary\" id=\"print\" href=\"")
            .text(path)
            .raw("/person/")
            .text(report.nhs)
            .raw("/report\">Print-friendly report</a> Open it, then use your browser's Print command (Ctrl+P, or ⌘P on a Mac) to print it or save it as a PDF for a subject access request.</p>\n<p class=\"no-print\"><a id=\"csv\" href=\"")
            .text(path)
            .raw("/audit.csv?nhs=")
            .text(report.nhs)
            .raw("\">Download every access in this scope as CSV</a></p>\n");
        extent(h, report);
        if !report.accesses.is_empty() {
            table(h, path, report.accesses, true);
        }
        more(h, path, report, false);
    })
}

/// `GET /console/person/{nhs}/report`: the report as a document to print.
pub(super) fn print(
    path: &str,
    session: &ConsoleSession,
    region: bool,
    report: &Report<'_>,
) -> String {
    let title = format!("Access report for NHS number {}", spaced(report.nhs));
    layout(path, &title, |h| {
        h.raw("<p class=\"no-print\" id=\"print-help\"><a href=\"")
            .text(path)
            .raw("/person?nhs=")
            .text(report.nhs)
            .raw("\">Back to the console</a>. To print this report or save it as a PDF, use your browser's Print command (Ctrl+P, or ⌘P on a Mac); the console's banner and links are left out of the printout.</p>\n<h1 id=\"report-heading\">")
            .text(&title)
            .raw("</h1>\n<dl class=\"summary\" id=\"report-meta\">\n<dt>Whose record</dt><dd id=\"meta-nhs\">NHS number ")
            .text(&spaced(report.nhs))
            .raw("</dd>\n<dt>Produced</dt><dd id=\"meta-produced\">")
            .text(&report.produced)
            .raw("</dd>\n<dt>Produced by</dt><dd id=\"meta-by\">")
            .text(session.name.as_deref().unwrap_or(&session.subject))
            .raw(" (")
            .text(&session.subject)
            .raw("), ")
            .text(session.role.as_deref().unwrap_or("no role"))
            .raw(", ")
            .text(session.org.as_deref().unwrap_or("no organisation"))
            .raw("</dd>\n<dt>Scope</dt><dd id=\"meta-scope\">");
        scope(h, session, region, true);
        h.raw("</dd>\n<dt>Source</dt><dd>The gateway's hash-chained audit log. Each row names its audit record, which the information-governance team can open in full.</dd>\n</dl>\n");
        h.raw("<p>Each row is one request that concerned this person's record: who made it (their name, user id, role and organisation), when, what they did, why (the purpose of use, and the data-sharing agreement and rule under which each disclosed item was shared; break-glass is emergency access, with the reason the person who used it gave), how many items were disclosed and withheld, and how it ended. Rows marked <strong>IG console</strong> are information-governance staff looking at this person's audit trail, not at their care record.</p>\n");
        extent(h, report);
        if !report.accesses.is_empty() {
            table(h, path, report.accesses, false);
        }
        more(h, path, report, true);
    })
}
