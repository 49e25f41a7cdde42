//! The HTML of the pictures: a range form, and per chart a heading, the SVG
//! ([`super::svg`]) and the same numbers in a table inside `<details>`, so that people who
//! do not see the picture get every figure.

use super::charts::{Counts, Days, MAX_DAYS, RangeError, RangeForm, date_of, series_of};
use super::form_errors::{self, Mistake};
use super::html::Html;
use super::pages::layout;
use super::svg::{Bars, Series, stacked_bars};
use crate::store::ConsoleSession;

/// The days and counts to draw.
pub(super) struct Shown<'a> {
    pub(super) days: Days,
    pub(super) counts: &'a Counts,
}

/// The week (Monday first) a day falls in; week `w` starts on day `7w - 3`.
fn week_of(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

fn field(
    h: &mut Html,
    m: &[Mistake],
    (name, id): (&'static str, &'static str),
    label: &'static str,
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
    h.raw("<input type=\"date\" id=\"")
        .raw(id)
        .raw("\" name=\"")
        .raw(name)
        .raw("\" value=\"")
        .text(value)
        .raw("\"");
    form_errors::attributes(h, m, id, Some("range-hint"));
    h.raw("></div>\n");
}

fn form(h: &mut Html, path: &str, f: &RangeForm, m: &[Mistake]) {
    h.raw("<form method=\"get\" action=\"")
        .text(path)
        .raw("/charts\" class=\"search\" id=\"range\" novalidate>\n");
    field(h, m, ("from", "f-from"), "Date from", &f.from);
    field(h, m, ("to", "f-to"), "Date to", &f.to);
    h.raw("<div class=\"actions\"><button type=\"submit\" class=\"button\" id=\"show\">Show</button></div>\n</form>\n")
        .raw("<p class=\"hint\" id=\"range-hint\">Whole days in UTC, both included, at most ")
        .text(&MAX_DAYS.to_string())
        .raw(". Left blank: the last 30 days up to today.</p>\n");
}

/// The mistake of a range, at the field it is in: a range too long or backwards is put
/// right at its end.
fn mistake(e: &RangeError) -> Mistake {
    match e {
        RangeError::Date("from") => Mistake::at("f-from", e),
        RangeError::Date(_) | RangeError::Backwards | RangeError::TooLong => Mistake::at("f-to", e),
    }
}

/// The table of a chart: one row per bucket, one column per series, and the total.
fn table(
    h: &mut Html,
    id: &'static str,
    bucket: &'static str,
    labels: &[String],
    series: &[Series],
) {
    h.raw("<details class=\"numbers\"><summary>The numbers in this picture</summary>\n<table class=\"results\" id=\"")
        .raw(id)
        .raw("\">\n<thead><tr><th scope=\"col\">")
        .raw(bucket)
        .raw("</th>");
    for s in series {
        h.raw("<th scope=\"col\">").text(&s.label).raw("</th>");
    }
    if series.len() != 1 {
        h.raw("<th scope=\"col\">Total</th>");
    }
    h.raw("</tr></thead>\n<tbody>\n");
    for (i, label) in labels.iter().enumerate() {
        h.raw("<tr data-bucket=\"")
            .text(label)
            .raw("\"><th scope=\"row\">")
            .text(label)
            .raw("</th>");
        let mut total = 0;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0);
            total += v;
            h.raw("<td data-key=\"")
                .text(&s.label)
                .raw("\">")
                .text(&v.to_string())
                .raw("</td>");
        }
        if series.len() != 1 {
            h.raw("<td data-key=\"total\">")
                .text(&total.to_string())
                .raw("</td>");
        }
        h.raw("</tr>\n");
    }
    h.raw("</tbody>\n</table>\n</details>\n");
}

fn total(series: &[Series]) -> i64 {
    series.iter().flat_map(|s| s.values.iter()).sum()
}

/// One chart's section: heading, summary, picture, numbers.
struct Section<'a> {
    id: &'static str,
    heading: &'static str,
    what: &'static str,
    bucket: &'static str,
    labels: &'a [String],
    series: &'a [Series],
    folded: &'a [String],
    folded_what: &'static str,
}

fn section(h: &mut Html, s: &Section<'_>, range: &str) {
    let sum = total(s.series);
    h.raw("<section class=\"picture\" aria-labelledby=\"")
        .raw(s.id)
        .raw("-heading\">\n<h2 id=\"")
        .raw(s.id)
        .raw("-heading\">")
        .raw(s.heading)
        .raw("</h2>\n<p id=\"")
        .raw(s.id)
        .raw("-total\">")
        .text(&sum.to_string())
        .raw(" ")
        .raw(s.what)
        .raw(", ")
        .text(range)
        .raw(".</p>\n");
    let desc = format!(
        "{sum} {} {range}, as bars; the numbers are in the table below the picture.",
        s.what
    );
    stacked_bars(
        h,
        &Bars {
            id: s.id,
            title: s.heading,
            desc: &desc,
            labels: s.labels,
            series: s.series,
        },
    );
    if !s.folded.is_empty() {
        h.raw("<p>").raw(s.folded_what).raw(": ");
        h.text(&s.folded.join(", "));
        h.raw(".</p>\n");
    }
    let table_id = match s.id {
        "accesses" => "accesses-table",
        "break-glass" => "break-glass-table",
        _ => "refusals-table",
    };
    table(h, table_id, s.bucket, s.labels, s.series);
    h.raw("</section>\n");
}

fn pictures(h: &mut Html, shown: &Shown<'_>) {
    let days = shown.days;
    let n_days = days.last - days.first + 1;
    let range = format!(
        "from {} to {} ({n_days} days, UTC)",
        date_of(days.first),
        date_of(days.last)
    );
    let day_labels: Vec<String> = (days.first..=days.last).map(date_of).collect();

    let (series, folded) = series_of(
        &shown.counts.accesses,
        days.first,
        n_days,
        "no purpose",
        "Other purposes",
    );
    section(
        h,
        &Section {
            id: "accesses",
            heading: "Accesses per day, by purpose of use",
            what: "answered requests to the FHIR API",
            bucket: "Day",
            labels: &day_labels,
            series: &series,
            folded: &folded,
            folded_what: "Other purposes",
        },
        &range,
    );

    let (first_week, last_week) = (week_of(days.first), week_of(days.last));
    let week_labels: Vec<String> = (first_week..=last_week)
        .map(|w| date_of(w * 7 - 3))
        .collect();
    let (series, folded) = series_of(
        &shown.counts.break_glass,
        first_week,
        last_week - first_week + 1,
        "no organisation",
        "Other organisations",
    );
    section(
        h,
        &Section {
            id: "break-glass",
            heading: "Break-glass accesses per week, by organisation",
            what: "answered emergency (ETREAT) requests",
            bucket: "Week starting",
            labels: &week_labels,
            series: &series,
            folded: &folded,
            folded_what: "Other organisations",
        },
        &range,
    );

    let (mut series, _) = series_of(
        &shown.counts.refusals,
        days.first,
        n_days,
        "Refused",
        "Refused",
    );
    if series.is_empty() {
        series.push(Series {
            label: "Refused".into(),
            values: vec![0; day_labels.len()],
        });
    }
    section(
        h,
        &Section {
            id: "refusals",
            heading: "Refusals per day",
            what: "refused requests",
            bucket: "Day",
            labels: &day_labels,
            series: &series,
            folded: &[],
            folded_what: "",
        },
        &range,
    );
}

/// `GET /console/charts`.
pub(super) fn charts(
    path: &str,
    session: &ConsoleSession,
    region: bool,
    f: &RangeForm,
    error: Option<&RangeError>,
    shown: Option<Shown<'_>>,
) -> String {
    layout(path, "Pictures of the audit log", |h| {
        h.raw("<p><a href=\"")
            .text(path)
            .raw("/\">Console home</a></p>\n");
        let m: Vec<Mistake> = error.iter().map(|e| mistake(e)).collect();
        form_errors::summary(h, &m);
        h.raw("<h1>Pictures of the audit log</h1>\n<p class=\"scope\" id=\"scope\">");
        if region {
            h.raw("Your role counts every record in the audit log.");
        } else if let Some(org) = session.org.as_deref() {
            h.raw("These count the requests made by the staff of your organisation, ")
                .text(org)
                .raw(", and the requests by anyone that disclosed data ")
                .text(org)
                .raw(" discloses: the records the audit search shows you.");
        } else {
            h.raw("Your sign-in names no organisation, so these count no records.");
        }
        h.raw("</p>\n<p>An access is a request to the FHIR API that was answered; a break-glass access is one made for emergency care (purpose of use ETREAT); a refusal is any request refused (4xx), the console's own included. Weeks start on Monday; the first and last may be cut by the range.</p>\n");
        form(h, path, f, &m);
        if let Some(shown) = &shown {
            pictures(h, shown);
        }
    })
}
