//! The pictures (issue 16, item 8): answered accesses per day by purpose of use, break-glass
//! accesses per organisation per week, and refusals per day, over the last 30 days or a
//! chosen range of at most 366. Each is one aggregate query over the audit log's search
//! projection ([`crate::store::Store::audit_accesses_per_day`] and its neighbours), within
//! the audit search's scope, by the same rule and the same SQL ([`crate::audit::Readers`],
//! [`crate::store::AuditScope`]): a region-wide role counts every record, anyone else the
//! records of accesses made by their own organisation's staff and of accesses by anyone to
//! the data their organisation discloses.
//!
//! The page shows counts only and names no person, so viewing it is not an audit record.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jiff::civil::Date;

use super::audit::sees_everything;
use super::charts_pages;
use super::svg::{COLOURS, Series};
use super::{Console, ConsoleError};
use crate::store::{AuditCount, AuditScope, DAY_US};

/// Days shown when no range is chosen.
pub(super) const DEFAULT_DAYS: i64 = 30;
/// The longest range, in days.
pub(super) const MAX_DAYS: i64 = 366;

/// The range form's fields as written.
#[derive(Debug, Default, Clone)]
pub(super) struct RangeForm {
    pub(super) from: String,
    pub(super) to: String,
}

/// Why a range cannot be used: shown above the form, status 400.
#[derive(Debug, thiserror::Error)]
pub(super) enum RangeError {
    /// Not a date.
    #[error("the date {0} must be a date such as 2026-11-25")]
    Date(&'static str),
    /// Ends before it starts.
    #[error("the range must not end before it starts")]
    Backwards,
    /// Too long.
    #[error("the range can be at most 366 days")]
    TooLong,
}

/// A range of whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Days {
    /// The first day, as days since 1970-01-01.
    pub(super) first: i64,
    /// The last day.
    pub(super) last: i64,
}

impl Days {
    fn count(self) -> i64 {
        self.last - self.first + 1
    }
}

fn day_number(date: Date) -> Option<i64> {
    let us = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_microsecond();
    Some(us.div_euclid(DAY_US))
}

/// The date of a day number.
pub(super) fn date_of(day: i64) -> String {
    jiff::Timestamp::from_microsecond(day.saturating_mul(DAY_US))
        .map_or_else(|_| day.to_string(), |t| t.strftime("%Y-%m-%d").to_string())
}

fn parse_date(text: &str, name: &'static str) -> Result<Option<i64>, RangeError> {
    if text.is_empty() {
        return Ok(None);
    }
    let date: Date = text.parse().map_err(|_| RangeError::Date(name))?;
    day_number(date).map(Some).ok_or(RangeError::Date(name))
}

impl RangeForm {
    fn from_query(raw: Option<&str>) -> RangeForm {
        let mut f = RangeForm::default();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "from" => f.from = value.trim().to_owned(),
                "to" => f.to = value.trim().to_owned(),
                _ => {}
            }
        }
        f
    }

    /// The days asked for: `to` defaults to `today`, `from` to 30 days ending at `to`.
    pub(super) fn days(&self, today: i64) -> Result<Days, RangeError> {
        let last = parse_date(&self.to, "to")?.unwrap_or(today);
        let first = parse_date(&self.from, "from")?.unwrap_or(last - (DEFAULT_DAYS - 1));
        let days = Days { first, last };
        if last < first {
            return Err(RangeError::Backwards);
        }
        if days.count() > MAX_DAYS {
            return Err(RangeError::TooLong);
        }
        Ok(days)
    }
}

/// The bucket labels and the series of a set of counts: buckets `first..first + n`, one
/// series per key, largest first; past [`COLOURS`] keys, the smallest are summed into one
/// "Other" series, whose members are returned too.
pub(super) fn series_of(
    counts: &[AuditCount],
    first: i64,
    n: i64,
    unkeyed: &str,
    other: &str,
) -> (Vec<Series>, Vec<String>) {
    let len = usize::try_from(n).unwrap_or(0);
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for c in counts {
        let Some(i) = usize::try_from(c.bucket - first).ok().filter(|i| *i < len) else {
            continue;
        };
        let key = c.key.clone().unwrap_or_else(|| unkeyed.to_owned());
        let values = by_key.entry(key).or_insert_with(|| vec![0; len]);
        values[i] += c.count;
    }
    let mut series: Vec<Series> = by_key
        .into_iter()
        .map(|(label, values)| Series { label, values })
        .collect();
    // Largest first; ties by name, so the order is stable.
    series.sort_by(|a, b| {
        let total = |s: &Series| s.values.iter().sum::<i64>();
        total(b).cmp(&total(a)).then_with(|| a.label.cmp(&b.label))
    });
    if series.len() <= COLOURS {
        return (series, Vec::new());
    }
    let folded = series.split_off(COLOURS - 1);
    let mut rest = Series {
        label: other.to_owned(),
        values: vec![0; len],
    };
    for s in &folded {
        for (sum, v) in rest.values.iter_mut().zip(&s.values) {
            *sum += v;
        }
    }
    series.push(rest);
    (series, folded.into_iter().map(|s| s.label).collect())
}

/// The counts of the three charts.
pub(super) struct Counts {
    pub(super) accesses: Vec<AuditCount>,
    pub(super) break_glass: Vec<AuditCount>,
    pub(super) refusals: Vec<AuditCount>,
}

impl Console {
    /// The three charts' counts over `days`, within `scope` (`None`: every record).
    async fn counts(&self, days: Days, scope: Option<&AuditScope>) -> Result<Counts, ConsoleError> {
        let (from, to) = (days.first * DAY_US, (days.last + 1) * DAY_US);
        // Every record this instance has answered for is counted from here on.
        self.0.audit.settle().await;
        let store = &self.0.store;
        Ok(Counts {
            accesses: store.audit_accesses_per_day(from, to, scope).await?,
            break_glass: store.audit_break_glass_per_week(from, to, scope).await?,
            refusals: store.audit_refusals_per_day(from, to, scope).await?,
        })
    }
}

/// `GET /console/charts?from=&to=`: the three pictures and their numbers.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = RangeForm::from_query(raw.as_deref());
    let today = jiff::Timestamp::now().as_microsecond().div_euclid(DAY_US);
    let region = sees_everything(&console, &session);
    let path = &console.0.path;
    let days = match form.days(today) {
        Ok(days) => days,
        Err(e) => {
            let html = charts_pages::charts(path, &session, region, &form, Some(&e), None);
            return console.page(StatusCode::BAD_REQUEST, html);
        }
    };
    // INVARIANT: outside the region-wide roles, only the records of accesses by the user's
    // own organisation's staff and to its data; no organisation, nothing. The audit search's
    // scope, from the same rule.
    let scope = console
        .0
        .readers
        .scope(session.role.as_deref(), session.org.as_deref());
    match console.counts(days, scope.as_ref()).await {
        Ok(counts) => {
            let shown = charts_pages::Shown {
                days,
                counts: &counts,
            };
            let html = charts_pages::charts(path, &session, region, &form, None, Some(shown));
            console.page(StatusCode::OK, html)
        }
        Err(e) => console.refusal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-02.
    const MONDAY: i64 = 20_759;

    fn form(from: &str, to: &str) -> RangeForm {
        RangeForm {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn ranges_default_to_thirty_days_and_are_bounded() {
        assert_eq!(date_of(MONDAY), "2026-11-02");
        let d = form("", "").days(MONDAY).expect("default");
        assert_eq!((d.first, d.last, d.count()), (MONDAY - 29, MONDAY, 30));
        let d = form("2026-11-01", "2026-11-02")
            .days(MONDAY + 100)
            .expect("two days");
        assert_eq!((d.first, d.last), (MONDAY - 1, MONDAY));
        assert!(
            form("2025-11-02", "2026-11-02").days(MONDAY).is_ok(),
            "366 days"
        );
        assert!(matches!(
            form("2025-11-01", "2026-11-02").days(MONDAY),
            Err(RangeError::TooLong)
        ));
        assert!(matches!(
            form("2026-11-03", "2026-11-02").days(MONDAY),
            Err(RangeError::Backwards)
        ));
        assert!(matches!(
            form("02/11/2026", "").days(MONDAY),
            Err(RangeError::Date("from"))
        ));
        assert!(matches!(
            form("", "9999999-01-01").days(MONDAY),
            Err(RangeError::Date("to"))
        ));
    }

    fn count(bucket: i64, key: &str, count: i64) -> AuditCount {
        AuditCount {
            bucket,
            key: Some(key.into()),
            count,
        }
    }

    #[test]
    fn series_are_largest_first_and_the_smallest_folded_into_other() {
        let counts = [
            count(10, "TREAT", 3),
            count(11, "ETREAT", 1),
            count(11, "TREAT", 2),
            count(99, "X", 5),
        ];
        let (series, folded) = series_of(&counts, 10, 2, "none", "Other");
        assert!(folded.is_empty());
        assert_eq!(series[0].label, "TREAT");
        assert_eq!(series[0].values, [3, 2]);
        assert_eq!(series[1].values, [0, 1]);
        assert_eq!(series.len(), 2, "a bucket outside the range is left out");

        let many: Vec<AuditCount> = (0..10)
            .map(|i| count(0, &format!("k{i}"), 10 + i))
            .collect();
        let (series, folded) = series_of(&many, 0, 1, "none", "Other");
        assert_eq!(series.len(), COLOURS);
        assert_eq!(series[0].label, "k9");
        let other = series.last().expect("other");
        assert_eq!(other.label, "Other");
        assert_eq!(other.values, [10 + 11 + 12]);
        assert_eq!(folded, ["k2", "k1", "k0"]);
    }
}
