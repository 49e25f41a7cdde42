//! Calendar arithmetic on plain day numbers, with no clock and no time-zone
//! database: every date is relative to the fixed [`REFERENCE`] date, so the
//! output never depends on when the generator runs.

use std::fmt;

/// A calendar date, stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date(pub(crate) i64);

/// The fixed "today" of the demo: 2026-11-01.
pub(crate) const REFERENCE: Date = Date(days_from_civil(2026, 11, 1));

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Date {
    /// The date of a year, month (1-12) and day (1-31).
    pub(crate) const fn ymd(y: i64, m: i64, d: i64) -> Self {
        Self(days_from_civil(y, m, d))
    }

    /// Year, month and day of this date.
    pub(crate) fn to_ymd(self) -> (i64, i64, i64) {
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }

    /// This date moved by `n` days (negative moves back).
    pub(crate) fn plus(self, n: i64) -> Self {
        Self(self.0 + n)
    }

    /// Day of the week, 0 = Sunday .. 6 = Saturday.
    pub(crate) fn weekday(self) -> i64 {
        (self.0 + 4).rem_euclid(7)
    }

    /// This date, or the following Monday when it falls on a weekend.
    pub(crate) fn weekday_or_next(self) -> Self {
        match self.weekday() {
            0 => self.plus(1),
            6 => self.plus(2),
            _ => self,
        }
    }

    /// Whole years from `self` (a birth date) to `on`.
    pub(crate) fn age_on(self, on: Date) -> i64 {
        let (by, bm, bd) = self.to_ymd();
        let (y, m, d) = on.to_ymd();
        let before_birthday = (m, d) < (bm, bd);
        y - by - i64::from(before_birthday)
    }

    /// True when UK clocks show British Summer Time on this date
    /// (from the last Sunday of March to the day before the last Sunday of
    /// October; the hour of the change does not matter for daytime events).
    fn is_bst(self) -> bool {
        let (y, _, _) = self.to_ymd();
        let last_sunday = |month: i64| {
            let end = Date::ymd(y, month, 31);
            end.plus(-end.weekday())
        };
        self >= last_sunday(3) && self < last_sunday(10)
    }

    /// A FHIR `dateTime` at local UK time `minutes` after midnight, with the
    /// offset that applied that day (`Z` in winter, `+01:00` in summer).
    pub(crate) fn at(self, minutes: i64) -> String {
        let zone = if self.is_bst() { "+01:00" } else { "Z" };
        format!(
            "{self}T{:02}:{:02}:00{zone}",
            minutes / 60 % 24,
            minutes % 60
        )
    }

    /// A FHIR `instant` in UTC, `minutes` after midnight UTC.
    pub(crate) fn instant(self, minutes: i64) -> String {
        format!("{self}T{:02}:{:02}:00Z", minutes / 60 % 24, minutes % 60)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}
