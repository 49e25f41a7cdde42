//! The HTML of the break-glass review: the queue, the review form, the reviews made, the
//! refusals, and the review's part of an audit record's page. Everything shown from a
//! record, a review, a session or the form goes through [`Html::text`].

use std::collections::HashMap;

use super::audit_pages::when;
use super::form_errors::{self, Mistake};
use super::html::Html;
use super::pages::layout;
use super::review::{
    Check, Form, FormError, MAX_NOTE, NOTE_FIELD, OUTCOME_FIELD, Outcome, PAGE, Standing,
};
use crate::audit::{Body, Row, event};
use crate::store::{BreakGlassReview, ConsoleSession};

/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

/// One emergency access as the review pages show it.
#[derive(Debug, Clone)]
pub(super) struct Access {
    id: String,
    when: String,
    overdue: bool,
    waited_days: i64,
    user: String,
    role: String,
    org: String,
    whose: String,
    reason: String,
    asked: String,
    outcome: String,
    disclosed: usize,
    /// The signed-in user made it.
    own: bool,
}

impl Access {
    /// The access `row` records (its body `b`); `people` maps gateway ids to NHS numbers;
    /// overdue when made before `overdue_before_us`; `now_us` for how long it has waited.
    pub(super) fn of(
        row: &Row,
        b: &Body,
        people: &HashMap<String, String>,
        own: bool,
        overdue_before_us: i64,
        now_us: i64,
    ) -> Access {
        let recorded = row.columns.recorded_us;
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
        Access {
            id: event::id(&row.record.chain, row.record.seq),
            when: when(recorded),
            overdue: recorded < overdue_before_us,
            waited_days: now_us.saturating_sub(recorded) / DAY_US,
            user,
            role: b.role.clone().unwrap_or_default(),
            org: b.org.clone().unwrap_or_default(),
            whose,
            reason: b
                .break_glass_reason
                .clone()
                .unwrap_or_else(|| "none given".into()),
            asked: format!("{} {}", b.method, b.target),
            outcome: format!("{} ({})", b.outcome, b.status),
            disclosed: b.disclosed.len(),
            own,
        }
    }
}

/// A review made, with the access it reviewed.
#[derive(Debug, Clone)]
pub(super) struct Done {
    when: String,
    reviewer: String,
    reviewer_role: String,
    reviewer_org: String,
    outcome: String,
    note: String,
    record: String,
    access: Access,
}

impl Done {
    /// The review `r` of `access`.
    pub(super) fn of(r: &BreakGlassReview, access: Access) -> Done {
        Done {
            when: when(r.reviewed_us),
            reviewer: reviewer(r),
            reviewer_role: r.reviewer_role.clone().unwrap_or_default(),
            reviewer_org: r.reviewer_org.clone().unwrap_or_default(),
            outcome: Outcome::label_of(&r.outcome).to_owned(),
            note: r.note.clone(),
            record: event::id(&r.review_chain, r.review_seq),
            access,
        }
    }
}

/// A reviewer as people read them: name and user id.
fn reviewer(r: &BreakGlassReview) -> String {
    match &r.reviewer_name {
        Some(name) => format!("{name} ({})", r.reviewer_subject),
        None => r.reviewer_subject.clone(),
    }
}

/// A page of the queue: its rows, the cursor of the next (newer) page, the counts, and the
/// latest reviews.
pub(super) struct Queue<'a> {
    pub(super) rows: &'a [Access],
    /// The latest reviews made.
    pub(super) recent: &'a [Done],
    pub(super) next: Option<&'a str>,
    pub(super) waiting: i64,
    pub(super) overdue: i64,
}

/// "1 thing" or "n things".
fn count(n: i64, one: &'static str, many: &'static str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The link back to the queue and the scope of what the user reviews.
fn scope(h: &mut Html, path: &str, session: &ConsoleSession, region: bool) {
    h.raw("<p class=\"scope\" id=\"scope\">");
    if region {
        h.raw("Your role reviews every emergency access in the audit log.");
    } else {
        h.raw("You review the emergency accesses made by the staff of your organisation, ")
            .text(session.org.as_deref().unwrap_or("none given"))
            .raw(".");
    }
    h.raw(" Nobody reviews their own access.</p>\n<nav aria-label=\"Break-glass review\"><ul class=\"nav\"><li><a id=\"nav-queue\" href=\"")
        .text(path)
        .raw("/review\">Waiting for review</a></li><li><a id=\"nav-reviewed\" href=\"")
        .text(path)
        .raw("/reviewed\">Reviews made</a></li></ul></nav>\n");
}

/// The overdue label: words, not colour alone.
fn overdue_tag(h: &mut Html, a: &Access) {
    if a.overdue {
        h.raw("<strong class=\"tag overdue\">Overdue</strong> ");
    }
    h.raw("<span class=\"waited\">waiting ")
        .text(&count(a.waited_days, "day", "days"))
        .raw("</span>");
}

/// `GET /console/review`: the queue, or (with `None`) a cursor this console did not make,
/// and the latest reviews made.
pub(super) fn queue(
    path: &str,
    session: &ConsoleSession,
    region: bool,
    days: u32,
    shown: Option<Queue<'_>>,
) -> String {
    layout(path, "Break-glass review", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n<h1>Break-glass review</h1>\n");
        scope(h, path, session, region);
        let Some(q) = shown else {
            h.raw("<div class=\"error-summary\" role=\"alert\" id=\"form-error\"><h2>There is a problem</h2><p>This link to more accesses was not made by this console. <a href=\"")
                .text(path)
                .raw("/review\">Start again from the oldest</a>.</p></div>\n");
            return;
        };
        h.raw("<h2>Waiting for review</h2>\n<p id=\"waiting\">")
            .text(&count(
                q.waiting,
                "emergency access waits",
                "emergency accesses wait",
            ))
            .raw(" for review; ")
            .text(&q.overdue.to_string())
            .raw(if q.overdue == 1 { " is" } else { " are" })
            .raw(" overdue (made more than ")
            .text(&count(i64::from(days), "day", "days"))
            .raw(" ago).</p>\n");
        if q.rows.is_empty() {
            h.raw("<p id=\"no-results\">No emergency access waits for review.</p>\n");
        } else {
            queue_table(h, path, &q);
        }
        if !q.recent.is_empty() {
            h.raw("<h2>Reviewed lately</h2>\n");
            reviews_table(
                h,
                path,
                q.recent,
                "recent",
                "data-reviewed",
                "The latest reviews",
            );
            h.raw("<p><a href=\"")
                .text(path)
                .raw("/reviewed\">Every review made</a></p>\n");
        }
    })
}

/// The queue's table and its link to the next, newer page.
fn queue_table(h: &mut Html, path: &str, q: &Queue<'_>) {
    h.raw("<table class=\"results\" id=\"queue\">\n<caption>Oldest first, at most ")
        .text(&PAGE.to_string())
        .raw(" a page</caption>\n<thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">Role</th><th scope=\"col\">Organisation</th><th scope=\"col\">Whose record</th><th scope=\"col\">Reason given</th><th scope=\"col\">Outcome</th><th scope=\"col\">Review</th></tr></thead>\n<tbody>\n");
    for a in q.rows {
        h.raw("<tr data-id=\"").text(&a.id).raw("\"");
        if a.overdue {
            h.raw(" class=\"overdue\"");
        }
        h.raw("><td>").text(&a.when).raw("<br>");
        overdue_tag(h, a);
        h.raw("</td><td>")
            .text(&a.user)
            .raw("</td><td>")
            .text(&a.role)
            .raw("</td><td>")
            .text(&a.org)
            .raw("</td><td>")
            .text(&a.whose)
            .raw("</td><td class=\"note\">")
            .text(&a.reason)
            .raw("</td><td>")
            .text(&a.outcome)
            .raw("</td><td>");
        if a.own {
            h.raw("Your own access: another reviewer reviews it");
        } else {
            h.raw("<a class=\"review-link\" href=\"")
                .text(path)
                .raw("/review/")
                .text(&a.id)
                .raw("\">Review<span class=\"visually-hidden\"> the access of ")
                .text(&a.when)
                .raw(" by ")
                .text(&a.user)
                .raw("</span></a>");
        }
        h.raw("</td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
    if let Some(next) = q.next {
        let link = form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", next)
            .finish();
        h.raw("<p><a class=\"button secondary\" id=\"newer\" href=\"")
            .text(path)
            .raw("/review?")
            .text(&link)
            .raw("\">Newer</a></p>\n");
    }
}

/// A term and its description in a summary list.
fn item(h: &mut Html, term: &'static str, value: &str) {
    h.raw("<dt>")
        .raw(term)
        .raw("</dt><dd>")
        .text(if value.is_empty() { "—" } else { value })
        .raw("</dd>\n");
}

/// `GET /console/review/{id}`: the access and the form to review it, its mistakes
/// summarised above it and shown at their fields.
pub(super) fn form(
    path: &str,
    a: &Access,
    form: &Form,
    errors: &[FormError],
    csrf: &str,
) -> String {
    layout(path, "Review emergency access", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/review\">Break-glass review</a></p>\n");
        let m: Vec<Mistake> = errors.iter().map(FormError::mistake).collect();
        form_errors::summary(h, &m);
        h.raw("<h1>Review emergency access</h1>\n<p>");
        overdue_tag(h, a);
        h.raw("</p>\n<dl class=\"summary\" id=\"access\">\n");
        item(h, "When", &a.when);
        item(h, "Who", &a.user);
        item(h, "Role", &a.role);
        item(h, "Organisation", &a.org);
        item(h, "Whose record", &a.whose);
        item(h, "Reason given", &a.reason);
        item(h, "Asked", &a.asked);
        item(h, "Outcome", &a.outcome);
        item(h, "Resources disclosed", &a.disclosed.to_string());
        // `novalidate`: the server checks the form and shows every mistake the NHS.UK way,
        // rather than the browser stopping at the first in its own words.
        h.raw("</dl>\n<p><a id=\"full-record\" href=\"")
            .text(path)
            .raw("/audit/")
            .text(&a.id)
            .raw("\">The access's audit record in full</a></p>\n<form method=\"post\" action=\"")
            .text(path)
            .raw("/review/")
            .text(&a.id)
            .raw("\" id=\"review-form\" novalidate>\n<input type=\"hidden\" name=\"csrf\" value=\"")
            .text(csrf)
            .raw("\">\n<div class=\"");
        form_errors::group_class(h, &m, OUTCOME_FIELD, "radios");
        // A radio group carries `aria-invalid` as a `radiogroup` (a fieldset may take that
        // role), where ARIA allows it.
        h.raw("\"><fieldset role=\"radiogroup\" aria-labelledby=\"f-outcome-legend\"");
        form_errors::attributes(h, &m, OUTCOME_FIELD, None);
        h.raw(
            ">\n<legend id=\"f-outcome-legend\">Was this emergency access appropriate?</legend>\n",
        );
        form_errors::message(h, &m, OUTCOME_FIELD);
        for o in Outcome::ALL {
            h.raw("<div class=\"choice\"><input type=\"radio\" name=\"outcome\" id=\"f-outcome-")
                .raw(o.code())
                .raw("\" value=\"")
                .raw(o.code())
                .raw("\" required");
            if form.outcome == o.code() {
                h.raw(" checked");
            }
            h.raw("><label for=\"f-outcome-")
                .raw(o.code())
                .raw("\">")
                .raw(o.label())
                .raw("</label></div>\n");
        }
        h.raw("</fieldset></div>\n<div class=\"");
        form_errors::group_class(h, &m, NOTE_FIELD, "field");
        h.raw("\"><label for=\"f-note\">Note</label>")
            .raw("<p class=\"hint\" id=\"f-note-hint\">Needed when the access was not appropriate or needs follow-up; at most ")
            .text(&format!("{},{:03}", MAX_NOTE / 1000, MAX_NOTE % 1000))
            .raw(" characters. It is kept with the review and shown to IG leads who may see this access; the audit log keeps only a keyed hash of it.</p>");
        form_errors::message(h, &m, NOTE_FIELD);
        h.raw("<textarea id=\"f-note\" name=\"note\" rows=\"6\" maxlength=\"")
            .text(&MAX_NOTE.to_string())
            .raw("\"");
        form_errors::attributes(h, &m, NOTE_FIELD, Some("f-note-hint"));
        h.raw(">")
            .text(&form.note)
            .raw("</textarea></div>\n<button type=\"submit\" class=\"button\" id=\"submit-review\">Record the review</button>\n</form>\n");
    })
}

/// `GET /console/reviewed`: the reviews made, newest first; `bad_cursor` when the link was
/// not made by this console.
pub(super) fn reviewed(
    path: &str,
    session: &ConsoleSession,
    region: bool,
    rows: &[Done],
    next: Option<&str>,
    bad_cursor: bool,
) -> String {
    layout(path, "Reviews made", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n<h1>Reviews made</h1>\n");
        scope(h, path, session, region);
        if bad_cursor {
            h.raw("<div class=\"error-summary\" role=\"alert\" id=\"form-error\"><h2>There is a problem</h2><p>This link to older reviews was not made by this console. <a href=\"")
                .text(path)
                .raw("/reviewed\">Start again from the newest</a>.</p></div>\n");
            return;
        }
        if rows.is_empty() {
            h.raw("<p id=\"no-results\">No review has been made yet.</p>\n");
            return;
        }
        reviews_table(h, path, rows, "reviewed", "data-id", "Newest review first");
        if let Some(next) = next {
            let link = form_urlencoded::Serializer::new(String::new())
                .append_pair("cursor", next)
                .finish();
            h.raw("<p><a class=\"button secondary\" id=\"older\" href=\"")
                .text(path)
                .raw("/reviewed?")
                .text(&link)
                .raw("\">Older</a></p>\n");
        }
    })
}

/// A table of reviews made: `id` the table's, `attribute` the one naming each row's access.
fn reviews_table(
    h: &mut Html,
    path: &str,
    rows: &[Done],
    id: &'static str,
    attribute: &'static str,
    caption: &'static str,
) {
    h.raw("<table class=\"results\" id=\"")
        .raw(id)
        .raw("\">\n<caption>")
        .raw(caption)
        .raw("</caption>\n<thead><tr><th scope=\"col\">Reviewed</th><th scope=\"col\">Reviewer</th><th scope=\"col\">Outcome</th><th scope=\"col\">Note</th><th scope=\"col\">Emergency access</th><th scope=\"col\">Whose record</th><th scope=\"col\">Review record</th></tr></thead>\n<tbody>\n");
    for d in rows {
        h.raw("<tr ")
            .raw(attribute)
            .raw("=\"")
            .text(&d.access.id)
            .raw("\"><td>")
            .text(&d.when)
            .raw("</td><td>")
            .text(&d.reviewer)
            .raw("<br>")
            .text(&d.reviewer_role)
            .raw(", ")
            .text(&d.reviewer_org)
            .raw("</td><td>")
            .text(&d.outcome)
            .raw("</td><td class=\"note\">")
            .text(&d.note)
            .raw("</td><td><a href=\"")
            .text(path)
            .raw("/audit/")
            .text(&d.access.id)
            .raw("\">")
            .text(&d.access.when)
            .raw("</a><br>")
            .text(&d.access.user)
            .raw(", ")
            .text(&d.access.role)
            .raw(", ")
            .text(&d.access.org)
            .raw("</td><td>")
            .text(&d.access.whose)
            .raw("</td><td><a href=\"")
            .text(path)
            .raw("/audit/")
            .text(&d.record)
            .raw("\"><code>")
            .text(&d.record)
            .raw("</code></a></td></tr>\n");
    }
    h.raw("</tbody>\n</table>\n");
}

/// The review's part of an emergency access's audit record page (`id` is the record's).
pub(super) fn standing(h: &mut Html, path: &str, id: &str, s: &Standing) {
    h.raw("<h2 id=\"break-glass-review\">Break-glass review</h2>\n");
    match s {
        Standing::Waiting { own, overdue } => {
            h.raw("<p id=\"review\">Not reviewed yet.");
            if *overdue {
                h.raw(" <strong class=\"tag overdue\">Overdue</strong>");
            }
            if *own {
                h.raw(" This is your own emergency access: another reviewer must review it.</p>\n");
            } else {
                h.raw(" <a id=\"review-this\" href=\"")
                    .text(path)
                    .raw("/review/")
                    .text(id)
                    .raw("\">Review this access</a></p>\n");
            }
        }
        Standing::Reviewed(r, check) => {
            let record = event::id(&r.review_chain, r.review_seq);
            h.raw("<dl class=\"summary\" id=\"review\">\n");
            item(h, "Outcome", Outcome::label_of(&r.outcome));
            item(h, "Reviewed by", &reviewer(r));
            item(
                h,
                "Reviewer's role",
                r.reviewer_role.as_deref().unwrap_or(""),
            );
            item(
                h,
                "Reviewer's organisation",
                r.reviewer_org.as_deref().unwrap_or(""),
            );
            item(h, "Reviewed", &when(r.reviewed_us));
            h.raw("<dt>Note</dt><dd class=\"note\" id=\"review-note\">")
                .text(if r.note.is_empty() { "—" } else { &r.note })
                .raw("</dd>\n<dt>Review record</dt><dd><a id=\"review-record\" href=\"")
                .text(path)
                .raw("/audit/")
                .text(&record)
                .raw("\"><code>")
                .text(&record)
                .raw("</code></a></dd>\n<dt>Check</dt><dd id=\"review-check\">")
                .raw(match check {
                    Check::Matches => "The review matches its record in the audit chain.",
                    Check::Differs => {
                        "<strong class=\"tag overdue\">Warning</strong> The stored review does not match its record in the audit chain: it was changed after it was made."
                    }
                    Check::Missing => {
                        "Its record in the audit chain cannot be read yet (it may still be on its way into the store), so it cannot be checked."
                    }
                })
                .raw("</dd>\n</dl>\n");
        }
    }
}

/// A page that refuses a review, with a way back.
fn refused(path: &str, title: &'static str, reason: impl FnOnce(&mut Html), back: bool) -> String {
    layout(path, title, |h| {
        h.raw("<h1>").raw(title).raw("</h1>\n<p id=\"reason\">");
        reason(h);
        h.raw("</p>\n");
        if back {
            h.raw("<p><a href=\"")
                .text(path)
                .raw("/review\">Back to the break-glass review</a></p>\n");
        }
    })
}

/// 404: no emergency access with this id within the user's scope.
pub(super) fn not_found(path: &str) -> String {
    refused(
        path,
        "Emergency access not found",
        |h| {
            h.raw("There is no emergency access with this id, or it is not one you may review.");
        },
        true,
    )
}

/// 403: the user's own access.
pub(super) fn own(path: &str, id: &str) -> String {
    refused(
        path,
        "You cannot review your own emergency access",
        |h| {
            h.raw("The emergency access ")
                .text(id)
                .raw(" was made under your own identity (the same identity provider and user id). Another reviewer must review it. Nothing has been recorded as a review.");
        },
        true,
    )
}

/// 409: reviewed already; the first review is the one that counts.
pub(super) fn already(path: &str, id: &str, r: &BreakGlassReview) -> String {
    layout(path, "Already reviewed", |h| {
        h.raw("<h1>This emergency access has already been reviewed</h1>\n<p id=\"reason\">")
            .text(&reviewer(r))
            .raw(" reviewed it on ")
            .text(&when(r.reviewed_us))
            .raw(": ")
            .text(Outcome::label_of(&r.outcome))
            .raw(". The first review of an access is the one that counts; yours was not recorded as a review.</p>\n<p><a href=\"")
            .text(path)
            .raw("/audit/")
            .text(id)
            .raw("\">See the review</a></p>\n<p><a href=\"")
            .text(path)
            .raw("/review\">Back to the break-glass review</a></p>\n");
    })
}

/// 503: the review's record is in the chain, but the review could not be stored.
pub(super) fn not_kept(path: &str, id: &str) -> String {
    refused(
        path,
        "The review was not kept",
        |h| {
            h.raw("The review of ")
                .text(id)
                .raw(" could not be stored, so it does not count and the access is still waiting for review. The attempt is in the audit log. Please try again in a moment.");
        },
        true,
    )
}
