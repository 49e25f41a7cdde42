//! The HTML of the audit search and of one record. Everything shown from a record, a
//! session or the form goes through [`Html::text`].

use std::collections::HashMap;

use super::audit::{Filters, FormError, PAGE, mistakes};
use super::form_errors::{self, Mistake};
use super::html::Html;
use super::pages::layout;
use super::review::Standing;
use crate::audit::unsettled::WRITE_SETTLED;
use crate::audit::{Body, Row, WRITE_INTENT, WRITE_OUTCOME, Written};
use crate::store::ConsoleSession;

/// One record as a row of the results.
#[derive(Debug)]
pub(super) struct Listed {
    id: String,
    when: String,
    user: String,
    role: String,
    org: String,
    purpose: String,
    outcome: String,
    whose: String,
    what: String,
    disclosed: usize,
    withheld: usize,
}

impl Listed {
    /// The row of a record; `people` maps gateway ids to NHS numbers.
    pub(super) fn of(row: &Row, people: &HashMap<String, String>) -> Listed {
        let b: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
        let user = match (&b.user_name, &b.user) {
            (Some(name), Some(id)) => format!("{name} ({id})"),
            (None, Some(id)) => id.clone(),
            (Some(name), None) => name.clone(),
            (None, None) => b.caller.clone(),
        };
        let whose = match &b.person {
            Some(p) => people
                .get(p)
                .map_or_else(|| format!("gateway id {p}"), |nhs| format!("NHS {nhs}")),
            None => String::new(),
        };
        Listed {
            id: format!("{}.{}", row.record.chain, row.record.seq),
            when: when(row.columns.recorded_us),
            user,
            role: b.role.clone().unwrap_or_default(),
            org: b.org.clone().unwrap_or_default(),
            purpose: b.purpose.clone().unwrap_or_default(),
            outcome: format!("{} ({})", b.outcome, b.status),
            whose,
            what: what(&b),
            disclosed: b.disclosed.len(),
            withheld: b.withheld,
        }
    }
}

/// What a record says was asked: the method and route; for a write, also what it wrote and
/// which of its two records this is.
fn what(b: &Body) -> String {
    let asked = format!("{} {}", b.method, b.route);
    match &b.write {
        Some(w) => {
            let kind = super::person::resource_type(&b.target).unwrap_or("resource");
            format!("{asked}: {} {kind}, {}", action_word(&w.action), w.stage)
        }
        None => asked,
    }
}

/// A write's action code in words.
fn action_word(code: &str) -> &'static str {
    match code {
        "C" => "create",
        "U" => "update",
        _ => "write",
    }
}

/// A page of results and the cursor of the next, older page.
pub(super) struct Results<'a> {
    pub(super) rows: &'a [Listed],
    pub(super) next: Option<&'a str>,
}

/// A time as people read it, UTC, to the second.
pub(super) fn when(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map_or_else(
        |_| us.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A labelled text field of the form, with its mistake if it has one.
fn field(
    h: &mut Html,
    m: &[Mistake],
    (name, id): (&'static str, &'static str),
    label: &'static str,
    kind: &'static str,
    value: &str,
) {
    h.raw("<div class=\"");
    form_errors::group_class(h, m, id, "field");
    h.raw("\"><label for=\"")
        .raw(id)
        .raw("\">")
        .raw(label)
        .raw("</label>");
    form_errors::message(h, m, id);
    h.raw("<input type=\"")
        .raw(kind)
        .raw("\" id=\"")
        .raw(id)
        .raw("\" name=\"")
        .raw(name)
        .raw("\" value=\"")
        .text(value)
        .raw("\"");
    form_errors::attributes(h, m, id, None);
    h.raw("></div>\n");
}

/// A labelled choice of the form: (value, label) pairs, the first "any".
fn choice(
    h: &mut Html,
    m: &[Mistake],
    (name, id): (&'static str, &'static str),
    label: &'static str,
    options: &[(&'static str, &'static str)],
    value: &str,
) {
    h.raw("<div class=\"");
    form_errors::group_class(h, m, id, "field");
    h.raw("\"><label for=\"")
        .raw(id)
        .raw("\">")
        .raw(label)
        .raw("</label>");
    form_errors::message(h, m, id);
    h.raw("<select id=\"")
        .raw(id)
        .raw("\" name=\"")
        .raw(name)
        .raw("\"");
    form_errors::attributes(h, m, id, None);
    h.raw(">");
    let known = options.iter().any(|(v, _)| *v == value);
    for (v, l) in options {
        h.raw("<option value=\"").raw(v).raw("\"");
        if *v == value {
            h.raw(" selected");
        }
        h.raw(">").raw(l).raw("</option>");
    }
    if !known {
        // A value typed into the URL stays what it was.
        h.raw("<option selected value=\"")
            .text(value)
            .raw("\">")
            .text(value)
            .raw("</option>");
    }
    h.raw("</select></div>\n");
}

/// The agreement field: any agreement id may be typed (records name agreements since
/// retired); those of the set in force are offered.
fn agreement_field(h: &mut Html, m: &[Mistake], agreements: &[(String, String)], value: &str) {
    const ID: &str = "f-agreement";
    h.raw("<div class=\"");
    form_errors::group_class(h, m, ID, "field");
    h.raw("\"><label for=\"f-agreement\">Agreement (id)</label>");
    form_errors::message(h, m, ID);
    h.raw(
        "<input type=\"text\" id=\"f-agreement\" name=\"agreement\" list=\"agreements\" value=\"",
    )
    .text(value)
    .raw("\"");
    form_errors::attributes(h, m, ID, None);
    h.raw("><datalist id=\"agreements\">");
    for (id, title) in agreements {
        h.raw("<option value=\"")
            .text(id)
            .raw("\">")
            .text(title)
            .raw("</option>");
    }
    h.raw("</datalist></div>\n");
}

fn form(h: &mut Html, path: &str, f: &Filters, agreements: &[(String, String)], m: &[Mistake]) {
    h.raw("<form method=\"get\" action=\"")
        .text(path)
        .raw("/audit\" class=\"search\" id=\"audit-search\" novalidate>\n");
    field(h, m, ("nhs", "f-nhs"), "NHS number", "text", &f.nhs);
    field(h, m, ("user", "f-user"), "User id", "text", &f.user);
    field(
        h,
        m,
        ("org", "f-org"),
        "Organisation (ODS code)",
        "text",
        &f.org,
    );
    field(h, m, ("from", "f-from"), "Date from", "date", &f.from);
    field(h, m, ("to", "f-to"), "Date to", "date", &f.to);
    let outcomes = [
        ("", "Any"),
        ("success", "Success"),
        ("refused", "Refused"),
        ("error", "Error"),
    ];
    choice(
        h,
        m,
        ("outcome", "f-outcome"),
        "Outcome",
        &outcomes,
        &f.outcome,
    );
    let purposes = [
        ("", "Any"),
        ("TREAT", "TREAT: treatment"),
        ("ETREAT", "ETREAT: emergency (break-glass)"),
        ("CAREMGT", "CAREMGT: care management"),
        ("PATRQT", "PATRQT: the person's own request"),
        ("FAMRQT", "FAMRQT: a carer's request"),
    ];
    choice(
        h,
        m,
        ("purpose", "f-purpose"),
        "Purpose of use",
        &purposes,
        &f.purpose,
    );
    let reviews = [
        ("", "Any"),
        ("break-glass", "Break-glass"),
        ("consent-withdrawn-by-staff", "Consent withdrawn by staff"),
    ];
    choice(
        h,
        m,
        ("review", "f-review"),
        "Flagged for review",
        &reviews,
        &f.review,
    );
    agreement_field(h, m, agreements, &f.agreement);
    h.raw("<div class=\"actions\"><button type=\"submit\" class=\"button\" id=\"search\">Search</button></div>\n</form>\n");
}

fn table(h: &mut Html, path: &str, rows: &[Listed]) {
    h.raw("<table class=\"results\" id=\"results\">\n<caption>Newest first</caption>\n<thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">Role</th><th scope=\"col\">Organisation</th><th scope=\"col\">Purpose</th><th scope=\"col\">Outcome</th><th scope=\"col\">Whose record</th><th scope=\"col\">What was asked</th><th scope=\"col\">Disclosed</th><th scope=\"col\">Withheld</th></tr></thead>\n<tbody>\n");
    for r in rows {
        h.raw("<tr data-id=\"")
            .text(&r.id)
            .raw("\"><td><a href=\"")
            .text(path)
            .raw("/audit/")
            .text(&r.id)
            .raw("\">")
            .text(&r.when)
            .raw("</a></td><td>")
            .text(&r.user)
            .raw("</td><td>")
            .text(&r.role)
            .raw("</td><td>")
            .text(&r.org)
            .raw("</td><td>")
            .text(&r.purpose)
            .raw("</td><td>")
            .text(&r.outcome)
            .raw("</td><td>")
            .text(&r.whose)
            .raw("</td><td><code>")
            .text(&r.what)
            .raw("</code></td><td>")
            .text(&r.disclosed.to_string())
            .raw("</td><td>")
            .text(&r.withheld.to_string())
            .raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

/// What the search form offers and what it found.
pub(super) struct Search<'a> {
    /// True when the user's role sees every record.
    pub(super) region: bool,
    /// The fields as the user wrote them.
    pub(super) filters: &'a Filters,
    /// The agreements in force, (id, title), offered in the agreement field.
    pub(super) agreements: &'a [(String, String)],
}

/// `GET /console/audit`: the form, its mistakes summarised above it and shown at their
/// fields, and results below it.
pub(super) fn search(
    path: &str,
    session: &ConsoleSession,
    form_of: &Search<'_>,
    errors: &[FormError],
    results: Option<Results<'_>>,
) -> String {
    let (region, filters) = (form_of.region, form_of.filters);
    layout(path, "Audit search", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n");
        let m = mistakes(errors);
        form_errors::summary(h, &m);
        h.raw("<h1>Audit search</h1>\n<p class=\"scope\" id=\"scope\">");
        if region {
            h.raw("Your role sees every record in the audit log.");
        } else if let Some(org) = session.org.as_deref() {
            h.raw("You see the accesses made by the staff of your organisation, ")
                .text(org)
                .raw(", and the accesses by anyone to the data that ")
                .text(org)
                .raw(" discloses.");
        } else {
            h.raw("Your sign-in names no organisation, so you see no records.");
        }
        h.raw("</p>\n");
        form(h, path, filters, form_of.agreements, &m);
        let Some(results) = results else {
            return;
        };
        let query = filters.query_string();
        h.raw("<p><a id=\"csv\" href=\"")
            .text(path)
            .raw("/audit.csv?")
            .text(&query)
            .raw("\">Download this search as CSV</a></p>\n");
        if results.rows.is_empty() {
            h.raw("<p id=\"no-results\">No records match this search.</p>\n");
            return;
        }
        h.raw("<p>Showing ")
            .text(&results.rows.len().to_string())
            .raw(" records, at most ")
            .text(&PAGE.to_string())
            .raw(" a page.</p>\n");
        table(h, path, results.rows);
        if let Some(next) = results.next {
            let mut link = form_urlencoded::Serializer::new(query);
            link.append_pair("cursor", next);
            h.raw("<p><a class=\"button secondary\" id=\"older\" href=\"")
                .text(path)
                .raw("/audit?")
                .text(&link.finish())
                .raw("\">Older</a></p>\n");
        }
    })
}

/// A term and its description in a summary list.
fn item(h: &mut Html, term: &'static str, value: &str) {
    h.raw("<dt>")
        .raw(term)
        .raw("</dt><dd>")
        .text(if value.is_empty() { "—" } else { value })
        .raw("</dd>\n");
}

fn opt(value: Option<&String>) -> &str {
    value.map_or("", String::as_str)
}

/// `GET /console/audit/{id}`: one record in full, with its break-glass review when it is an
/// emergency access.
pub(super) fn record(
    path: &str,
    row: &Row,
    b: &Body,
    nhs: Option<&str>,
    review: Option<&Standing>,
) -> String {
    let r = &row.record;
    layout(path, "Audit record", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/audit\">Audit search</a></p>\n<h1>Audit record ")
            .text(&format!("{}.{}", r.chain, r.seq))
            .raw("</h1>\n<h2>Who and when</h2>\n<dl class=\"summary\" id=\"who\">\n");
        item(h, "When", &when(row.columns.recorded_us));
        item(h, "User id", opt(b.user.as_ref()));
        item(h, "Name", opt(b.user_name.as_ref()));
        item(h, "Role", opt(b.role.as_ref()));
        item(h, "Organisation", opt(b.org.as_ref()));
        item(h, "Caller", &b.caller);
        item(h, "Carer's relationship", opt(b.relationship.as_ref()));
        item(h, "Client address", opt(b.client_address.as_ref()));
        item(h, "Client certificate", opt(b.client_certificate.as_ref()));
        item(h, "Request id", &b.request_id);
        h.raw("</dl>\n<h2>What and why</h2>\n<dl class=\"summary\" id=\"what\">\n");
        item(h, "Whose record (NHS number)", nhs.unwrap_or(""));
        item(h, "Whose record (gateway id)", opt(b.person.as_ref()));
        item(h, "Asked", &format!("{} {}", b.method, b.target));
        item(h, "Route", &b.route);
        item(h, "Outcome", &format!("{} ({})", b.outcome, b.status));
        item(h, "Purpose of use", opt(b.purpose.as_ref()));
        item(h, "Break-glass reason", opt(b.break_glass_reason.as_ref()));
        item(h, "Flagged for review", opt(b.review.as_ref()));
        item(h, "Withheld", &b.withheld.to_string());
        item(h, "Policy set hash", &b.policy_hash);
        h.raw("</dl>\n");
        if let Some(review) = review {
            let id = format!("{}.{}", r.chain, r.seq);
            super::review_pages::standing(h, path, &id, review);
        }
        if let Some(w) = &b.write {
            written(h, w);
        }
        disclosed(h, b);
        sources(h, b);
        h.raw("<h2>Place in the audit chain</h2>\n<dl class=\"summary\" id=\"chain\">\n");
        item(h, "Chain", &r.chain);
        item(h, "Position", &r.seq.to_string());
        item(h, "Previous hash", &r.prev_hash);
        item(h, "Hash", &r.hash);
        h.raw("</dl>\n");
    })
}

/// What a write record holds: which of the write's two records it is, what was written
/// where, under which rule, and the hash of the bytes sent.
fn written(h: &mut Html, w: &Written) {
    h.raw("<h2>What was written</h2>\n<dl class=\"summary\" id=\"write\">\n");
    let stage = if w.stage == WRITE_INTENT {
        "intent: recorded before the write was sent to the source"
    } else if w.stage == WRITE_OUTCOME {
        "outcome: recorded before the answer"
    } else if w.stage == WRITE_SETTLED {
        "settled: found later by reading the source, not the source's answer at the time"
    } else {
        w.stage.as_str()
    };
    item(h, "Record of the write", stage);
    item(
        h,
        "Action",
        &format!("{} ({})", w.action, action_word(&w.action)),
    );
    item(h, "Resource", opt(w.resource.as_ref()));
    item(h, "Target source", opt(w.source.as_ref()));
    item(h, "New version", opt(w.version.as_ref()));
    item(h, "Version read (If-Match)", opt(w.read_version.as_ref()));
    item(h, "SHA-256 of what was sent", opt(w.sha256.as_ref()));
    item(h, "Agreement", opt(w.agreement.as_ref()));
    item(h, "Rule", opt(w.rule.as_ref()));
    h.raw("</dl>\n");
}

fn disclosed(h: &mut Html, b: &Body) {
    h.raw("<h2>Disclosed</h2>\n");
    if b.disclosed.is_empty() {
        h.raw("<p id=\"disclosed\">Nothing was disclosed.</p>\n");
        return;
    }
    h.raw("<table class=\"results\" id=\"disclosed\"><thead><tr><th scope=\"col\">Resource</th><th scope=\"col\">Agreement</th><th scope=\"col\">Rule</th><th scope=\"col\">Emergency only</th></tr></thead>\n<tbody>\n");
    for d in &b.disclosed {
        h.raw("<tr><td>")
            .text(&d.reference)
            .raw("</td><td>")
            .text(&d.agreement)
            .raw("</td><td>")
            .text(&d.rule)
            .raw("</td><td>")
            .raw(if d.emergency { "yes" } else { "no" })
            .raw("</td></tr>\n");
    }
    h.raw("</tbody></table>\n");
}

fn sources(h: &mut Html, b: &Body) {
    h.raw("<h2>Sources asked</h2>\n");
    if b.sources.is_empty() {
        h.raw("<p id=\"sources\">No source was asked.</p>\n");
        return;
    }
    h.raw("<table class=\"results\" id=\"sources\"><thead><tr><th scope=\"col\">Source</th><th scope=\"col\">How it answered</th></tr></thead>\n<tbody>\n");
    for s in &b.sources {
        h.raw("<tr><td>")
            .text(&s.source)
            .raw("</td><td>")
            .text(&s.outcome)
            .raw("</td></tr>\n");
    }
    h.raw("</tbody></table>\n");
}

/// A record that does not exist or is outside the user's scope.
pub(super) fn not_found(path: &str) -> String {
    layout(path, "Audit record not found", |h| {
        h.raw("<h1>Audit record not found</h1>\n<p id=\"reason\">There is no such record, or it is not one you may see.</p>\n<p><a href=\"")
            .text(path)
            .raw("/audit\">Audit search</a></p>\n");
    })
}
