//! The agreements (issue 16, item 6): every agreement of the policy set in force, with what
//! needs an IG lead's attention marked in words (lapsing within `[console]
//! lapsing_within_days`, lapsed, not yet valid, not active, past its review date); a matrix of
//! who may see what, one row per rule; the set's hash, when it was loaded, and a reload that
//! failed. One page per agreement holds its rules in full.
//!
//! The pages name no person, so viewing them is not an audit record; they need a session like
//! every console page. The policy set is the operator's, not a caller's, so it is listed
//! whole.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::civil::Date;

use super::Console;
use super::agreements_pages;
use crate::policy::{Agreement, Status};

/// Something about an agreement an IG lead should see, on a given day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Flag {
    /// Active and within its dates: it permits what its rules say.
    InForce,
    /// Active and in force, and its last day is this close.
    Lapsing {
        /// Its last day in force.
        on: Date,
        /// Days from today to that day (0: today is the last).
        days: i64,
    },
    /// Active, but its last day has passed: it permits nothing.
    Lapsed(Date),
    /// Active, but its first day has not come: it permits nothing yet.
    NotYetValid(Date),
    /// Draft, suspended or retired: it permits nothing.
    NotActive(Status),
    /// Its review date has passed (any status but retired).
    ReviewOverdue(Date),
}

impl Flag {
    /// True when the flag calls for the IG lead's attention: dates that have passed or are
    /// near. A draft, suspended or retired agreement is so by someone's decision, and its row
    /// says it is not in force.
    pub(super) fn needs_attention(&self) -> bool {
        !matches!(self, Flag::InForce | Flag::NotActive(_))
    }
}

/// What to say about an agreement on `today`, with `window` days' notice of lapsing: its
/// standing first, then an overdue review.
pub(super) fn flags(a: &Agreement, today: Date, window: u16) -> Vec<Flag> {
    let mut out = Vec::new();
    if a.status != Status::Active {
        out.push(Flag::NotActive(a.status));
    } else if today < a.valid_from {
        out.push(Flag::NotYetValid(a.valid_from));
    } else if a.valid_until < today {
        out.push(Flag::Lapsed(a.valid_until));
    } else {
        let days = today
            .until(a.valid_until)
            .map_or(i64::MAX, |span| i64::from(span.get_days()));
        if days <= i64::from(window) {
            out.push(Flag::Lapsing {
                on: a.valid_until,
                days,
            });
        } else {
            out.push(Flag::InForce);
        }
    }
    if let Some(review) = a.review_by
        && review < today
        && a.status != Status::Retired
    {
        out.push(Flag::ReviewOverdue(review));
    }
    out
}

/// `GET /console/agreements`: every agreement, the matrix, and the policy set's state.
pub(super) async fn list(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Err(r) = console.active(&headers).await {
        return r;
    }
    let policies = &console.0.policies;
    let view = agreements_pages::View {
        set: &policies.current(),
        status: &policies.status(),
        today: crate::policy::live::today(),
        window: console.0.config.lapsing_within_days,
    };
    console.page(
        StatusCode::OK,
        agreements_pages::list_page(&console.0.path, &view),
    )
}

/// `GET /console/agreements/{id}`: one agreement and its rules in full (404 when the set in
/// force has no such agreement).
pub(super) async fn one(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = console.active(&headers).await {
        return r;
    }
    let policies = &console.0.policies;
    let set = policies.current();
    let path = &console.0.path;
    let Some(agreement) = set.agreements.iter().find(|a| *a.id == *id) else {
        return console.page(StatusCode::NOT_FOUND, agreements_pages::not_found(path));
    };
    let today = crate::policy::live::today();
    let flags = flags(agreement, today, console.0.config.lapsing_within_days);
    let html = agreements_pages::one(path, agreement, &flags, &set.hash, today);
    console.page(StatusCode::OK, html)
}

#[cfg(test)]
mod tests;
