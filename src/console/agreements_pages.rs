//! The HTML of the agreements pages. Everything that comes from the policy files goes through
//! [`Html::text`]; what needs attention is said in words (a tag's text), never by colour
//! alone.

use jiff::civil::Date;

use super::agreements::{Flag, flags};
use super::html::Html;
use super::pages::layout;
use crate::policy::live::ReloadStatus;
use crate::policy::{Agreement, Audience, Finding, PolicySet, Rule, Status};

/// What the agreements page shows.
pub(super) struct View<'a> {
    pub(super) set: &'a PolicySet,
    pub(super) status: &'a ReloadStatus,
    pub(super) today: Date,
    /// `[console] lapsing_within_days`.
    pub(super) window: u16,
}

/// An RFC 3339 time as people read it, UTC, to the second (as written when it is not one).
fn readable(time: &str) -> String {
    time.parse::<jiff::Timestamp>().map_or_else(
        |_| time.to_owned(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A finding of the policy check, naming its file without the server's directories.
fn finding(f: &Finding) -> String {
    let file = f.file.file_name().map_or_else(
        || f.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
    let field = if f.field.is_empty() {
        String::new()
    } else {
        format!(" {}:", f.field)
    };
    format!("{file}{line}:{field} {}", f.message)
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Draft => "draft",
        Status::Active => "active",
        Status::Suspended => "suspended",
        Status::Retired => "retired",
    }
}

/// A flag as a tag: its words, and a class for its look.
fn tag(h: &mut Html, flag: &Flag) {
    let (class, text) = match flag {
        Flag::InForce => ("tag ok", "In force".to_owned()),
        Flag::Lapsing { on, days: 0 } => ("tag warning", format!("Lapses today ({on})")),
        Flag::Lapsing { on, days: 1 } => ("tag warning", format!("Lapses on {on}, tomorrow")),
        Flag::Lapsing { on, days } => ("tag warning", format!("Lapses on {on}, in {days} days")),
        Flag::Lapsed(on) => ("tag warning", format!("Lapsed on {on}: not in force")),
        Flag::NotYetValid(from) => ("tag attention", format!("Not yet in force: from {from}")),
        Flag::NotActive(s) => ("tag muted", format!("Not in force: {}", status_word(*s))),
        Flag::ReviewOverdue(on) => ("tag warning", format!("Review overdue: due {on}")),
    };
    h.raw("<strong class=\"").raw(class).raw("\">");
    h.text(&text).raw("</strong> ");
}

fn tags(h: &mut Html, flags: &[Flag]) {
    for f in flags {
        tag(h, f);
    }
}

/// A list of codes, or a dash.
fn list(h: &mut Html, items: &[String]) {
    if items.is_empty() {
        h.raw("—");
    } else {
        h.text(&items.join(", "));
    }
}

/// The link to an agreement's own page.
fn agreement_link(h: &mut Html, path: &str, a: &Agreement) {
    h.raw("<a href=\"")
        .text(path)
        .raw("/agreements/")
        .text(&a.id)
        .raw("\">")
        .text(&a.id)
        .raw("</a>");
}

/// Who a rule discloses to: roles at the recipients, or the person and their carers.
fn to_whom(h: &mut Html, a: &Agreement, r: &Rule) {
    match a.access {
        Audience::Staff => list(h, &a.recipients),
        Audience::Patient if r.relationships.is_empty() => {
            h.raw("The person themselves");
        }
        Audience::Patient => {
            h.raw("Carers acting for the person");
        }
    }
}

fn roles(h: &mut Html, a: &Agreement, r: &Rule) {
    match a.access {
        Audience::Staff => list(h, &r.roles),
        Audience::Patient if r.relationships.is_empty() => {
            h.raw("patient");
        }
        Audience::Patient => {
            h.raw("carer: ").text(&r.relationships.join(", "));
        }
    }
}

/// The policy set in force, and a reload that failed.
fn set_state(h: &mut Html, view: &View<'_>) {
    let set = view.set;
    let in_force = set
        .agreements
        .iter()
        .filter(|a| a.in_force(view.today))
        .count();
    h.raw("<h2>The policy set in force</h2>\n<dl class=\"summary\" id=\"policy-set\">\n<dt>Hash</dt><dd><code id=\"policy-hash\">")
        .text(&set.hash)
        .raw("</code></dd>\n<dt>Loaded</dt><dd id=\"loaded-at\">")
        .text(&readable(&view.status.loaded_at))
        .raw("</dd>\n<dt>Agreements</dt><dd>")
        .text(&set.agreements.len().to_string())
        .raw(", of which ")
        .text(&in_force.to_string())
        .raw(" in force today (")
        .text(&view.today.to_string())
        .raw(")</dd>\n<dt>Last reload</dt><dd id=\"reload\">");
    let failed_at = readable(
        view.status
            .failed_at
            .as_deref()
            .unwrap_or("an unknown time"),
    );
    match &view.status.error {
        None => {
            h.raw("No reload has failed since this set was loaded.");
        }
        Some(_) => {
            h.raw("<strong class=\"tag warning\">Failed</strong> at ")
                .text(&failed_at);
        }
    }
    h.raw("</dd>\n</dl>\n");
    if let Some(error) = &view.status.error {
        h.raw("<div class=\"error-summary\" role=\"alert\" id=\"reload-failed\"><h2>The newest policy files could not be loaded</h2>\n<p>A reload failed at ")
            .text(&failed_at)
            .raw(". The set above, loaded at ")
            .text(&readable(&view.status.loaded_at))
            .raw(", stays in force until the files are fixed. Why:</p>\n<pre id=\"reload-error\">")
            .text(error)
            .raw("</pre></div>\n");
    }
    if !set.warnings.is_empty() {
        h.raw("<h3>Warnings when the set was loaded</h3>\n<ul id=\"warnings\">\n");
        for w in &set.warnings {
            h.raw("<li>").text(&finding(w)).raw("</li>\n");
        }
        h.raw("</ul>\n");
    }
}

/// The agreements that need attention, as a list of links to their rows.
fn attention(h: &mut Html, path: &str, view: &View<'_>) {
    let needing: Vec<(&Agreement, Vec<Flag>)> = view
        .set
        .agreements
        .iter()
        .map(|a| (a, flags(a, view.today, view.window)))
        .filter(|(_, f)| f.iter().any(Flag::needs_attention))
        .collect();
    if needing.is_empty() {
        h.raw("<p class=\"notice\" id=\"attention\">No agreement lapses within ")
            .text(&view.window.to_string())
            .raw(" days, and none is past its review date.</p>\n");
        return;
    }
    h.raw("<div class=\"notice\" id=\"attention\"><h2>Needs attention</h2>\n<ul>\n");
    for (a, f) in &needing {
        h.raw("<li>");
        agreement_link(h, path, a);
        h.raw(" (").text(&a.title).raw("): ");
        let attention: Vec<Flag> = f.iter().filter(|f| f.needs_attention()).cloned().collect();
        tags(h, &attention);
        h.raw("</li>\n");
    }
    h.raw("</ul></div>\n");
}

fn agreements_table(h: &mut Html, path: &str, view: &View<'_>) {
    h.raw("<h2>Agreements</h2>\n<table class=\"results\" id=\"agreements\">\n<caption>Every agreement of the set in force, by id</caption>\n<thead><tr><th scope=\"col\">Agreement</th><th scope=\"col\">Version and status</th><th scope=\"col\">Parties</th><th scope=\"col\">Valid</th><th scope=\"col\">Review by</th><th scope=\"col\">Legal basis</th></tr></thead>\n<tbody>\n");
    for a in &view.set.agreements {
        let f = flags(a, view.today, view.window);
        h.raw("<tr data-id=\"")
            .text(&a.id)
            .raw("\"><th scope=\"row\">");
        agreement_link(h, path, a);
        h.raw("<br>")
            .text(&a.title)
            .raw("</th><td>")
            .text(&a.version)
            .raw(", ")
            .raw(status_word(a.status))
            .raw("<br>");
        tags(h, &f);
        h.raw("</td><td>");
        parties(h, a);
        h.raw("</td><td>")
            .text(&a.valid_from.to_string())
            .raw(" to ")
            .text(&a.valid_until.to_string())
            .raw("</td><td>")
            .text(
                &a.review_by
                    .map_or_else(|| "—".to_owned(), |d| d.to_string()),
            )
            .raw("</td><td>");
        list(h, &a.legal_basis);
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

fn parties(h: &mut Html, a: &Agreement) {
    h.raw("Owner: ").text(&a.owner).raw("<br>Disclosers: ");
    list(h, &a.disclosers);
    h.raw("<br>Recipients: ");
    match a.access {
        Audience::Staff => list(h, &a.recipients),
        Audience::Patient => {
            h.raw("the people themselves, and carers where a rule says");
        }
    }
}

/// Who may see what: one row per rule of every agreement.
fn matrix(h: &mut Html, path: &str, view: &View<'_>) {
    h.raw("<h2>Who may see what</h2>\n<p>One row per rule. A rule of an agreement that is not in force permits nothing; its row says so. Each agreement's page adds the rules' conditions (care relationship, FHIRPath condition, redaction).</p>\n<table class=\"results matrix\" id=\"matrix\">\n<caption>Rules of every agreement</caption>\n<thead><tr><th scope=\"col\">Agreement and rule</th><th scope=\"col\">From (disclosers)</th><th scope=\"col\">To (recipients)</th><th scope=\"col\">Roles</th><th scope=\"col\">Purposes of use</th><th scope=\"col\">Resource types</th><th scope=\"col\">Excluded labels</th></tr></thead>\n<tbody>\n");
    for a in &view.set.agreements {
        let in_force = a.in_force(view.today);
        for r in &a.rules {
            h.raw("<tr data-rule=\"")
                .text(&a.id)
                .raw("/")
                .text(&r.id)
                .raw("\"><th scope=\"row\">");
            agreement_link(h, path, a);
            h.raw("<br>rule ").text(&r.id);
            if !in_force {
                h.raw("<br><strong class=\"tag muted\">Not in force</strong>");
            }
            h.raw("</th><td>");
            list(h, &a.disclosers);
            h.raw("</td><td>");
            to_whom(h, a, r);
            h.raw("</td><td>");
            roles(h, a, r);
            h.raw("</td><td>");
            list(h, &r.purpose_of_use);
            h.raw("</td><td>");
            resources(h, r);
            h.raw("</td><td>");
            list(h, &r.exclude_labels);
            h.raw("</td></tr>\n");
        }
    }
    h.raw("</tbody>\n</table>\n");
}

fn resources(h: &mut Html, r: &Rule) {
    if r.resources.iter().any(|t| t == "*") {
        h.raw("every type (*)");
    } else {
        list(h, &r.resources);
    }
}

/// `GET /console/agreements`.
pub(super) fn list_page(path: &str, view: &View<'_>) -> String {
    layout(path, "Agreements", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n<h1>Agreements</h1>\n<p>The data-sharing agreements this gateway enforces now. An agreement whose last day is ")
            .text(&view.window.to_string())
            .raw(" days away or fewer is marked as lapsing, as is one past its review date.</p>\n");
        attention(h, path, view);
        set_state(h, view);
        agreements_table(h, path, view);
        matrix(h, path, view);
    })
}

/// `GET /console/agreements/{id}`.
pub(super) fn one(path: &str, a: &Agreement, flags: &[Flag], hash: &str, today: Date) -> String {
    layout(path, &a.title, |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/agreements\">Agreements</a></p>\n<h1>")
            .text(&a.title)
            .raw("</h1>\n<p id=\"standing\">");
        tags(h, flags);
        h.raw("</p>\n<dl class=\"summary\" id=\"agreement\">\n<dt>Id</dt><dd>")
            .text(&a.id)
            .raw("</dd>\n<dt>Version</dt><dd>")
            .text(&a.version)
            .raw("</dd>\n<dt>Status</dt><dd>")
            .raw(status_word(a.status))
            .raw("</dd>\n<dt>Discloses to</dt><dd>")
            .raw(match a.access {
                Audience::Staff => "staff of the recipient organisations",
                Audience::Patient => "the people themselves and, where a rule says, their carers",
            })
            .raw("</dd>\n<dt>Owner</dt><dd>")
            .text(&a.owner)
            .raw("</dd>\n<dt>Disclosers</dt><dd>");
        list(h, &a.disclosers);
        h.raw("</dd>\n<dt>Recipients</dt><dd>");
        match a.access {
            Audience::Staff => list(h, &a.recipients),
            Audience::Patient => {
                h.raw("the people themselves, and carers where a rule says");
            }
        }
        h.raw("</dd>\n<dt>Valid</dt><dd>")
            .text(&a.valid_from.to_string())
            .raw(" to ")
            .text(&a.valid_until.to_string())
            .raw("</dd>\n<dt>Review by</dt><dd>")
            .text(
                &a.review_by
                    .map_or_else(|| "—".to_owned(), |d| d.to_string()),
            )
            .raw("</dd>\n<dt>Legal basis</dt><dd>");
        list(h, &a.legal_basis);
        h.raw("</dd>\n<dt>Today</dt><dd>")
            .text(&today.to_string())
            .raw("</dd>\n<dt>Policy set hash</dt><dd><code>")
            .text(hash)
            .raw("</code></dd>\n</dl>\n<h2>Rules</h2>\n<table class=\"results matrix\" id=\"rules\">\n<caption>In the order of the file</caption>\n<thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">To (recipients)</th><th scope=\"col\">Roles</th><th scope=\"col\">Purposes of use</th><th scope=\"col\">Resource types</th><th scope=\"col\">Excluded labels</th><th scope=\"col\">Conditions</th></tr></thead>\n<tbody>\n");
        for r in &a.rules {
            h.raw("<tr data-rule=\"")
                .text(&r.id)
                .raw("\"><th scope=\"row\">")
                .text(&r.id)
                .raw("</th><td>");
            to_whom(h, a, r);
            h.raw("</td><td>");
            roles(h, a, r);
            h.raw("</td><td>");
            list(h, &r.purpose_of_use);
            h.raw("</td><td>");
            resources(h, r);
            h.raw("</td><td>");
            list(h, &r.exclude_labels);
            h.raw("</td><td>");
            conditions(h, r);
            h.raw("</td></tr>\n");
        }
        h.raw("</tbody>\n</table>\n");
    })
}

fn conditions(h: &mut Html, r: &Rule) {
    let mut any = false;
    if r.requires_care_relationship {
        h.raw("The person must be known to the user's own organisation.");
        any = true;
    }
    if let Some(condition) = &r.where_ {
        if any {
            h.raw("<br>");
        }
        h.raw("Only where <code>")
            .text(condition.text())
            .raw("</code>");
        any = true;
    }
    if !r.redact.is_empty() {
        if any {
            h.raw("<br>");
        }
        h.raw("Removed before disclosure: ")
            .text(&r.redact.join(", "));
        any = true;
    }
    if !any {
        h.raw("—");
    }
}

/// An agreement the set in force does not hold.
pub(super) fn not_found(path: &str) -> String {
    layout(path, "Agreement not found", |h| {
        h.raw("<h1>Agreement not found</h1>\n<p id=\"reason\">The policy set in force holds no agreement with this id.</p>\n<p><a href=\"")
            .text(path)
            .raw("/agreements\">Agreements</a></p>\n");
    })
}
