//! FHIR `date`, `dateTime` and `instant` values as ranges of time.
//!
//! A FHIR date is as precise as it is written: `2024` means the whole year, `2024-03-05` the
//! whole day. Search compares such ranges, so every value becomes a half-open range
//! `[start, end)` in milliseconds since the Unix epoch. Values without a time zone are taken
//! as UTC.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::Offset;

/// A half-open range of time in milliseconds since the epoch. `i64::MIN` / `i64::MAX` stand
/// for an open start or end (a Period with no start or no end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
}

/// Parses a FHIR `date`, `dateTime` or `instant` into the range it stands for.
/// Returns `None` for anything that is not one (including impossible dates like `2023-02-30`).
pub fn parse(value: &str) -> Option<Range> {
    let b = value.as_bytes();
    let year = i16::try_from(digits(value, 0, 4)?).ok()?;
    match b.len() {
        4 => return whole_year(year),
        7 if b[4] == b'-' => return whole_month(value, year),
        _ => {}
    }
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = Date::new(
        year,
        i8::try_from(digits(value, 5, 2)?).ok()?,
        i8::try_from(digits(value, 8, 2)?).ok()?,
    )
    .ok()?;
    if b.len() == 10 {
        return Some(Range {
            start: midnight_ms(date)?,
            end: midnight_ms(date.tomorrow().ok()?)?,
        });
    }
    date_time(value, date)
}

/// The number written by the `len` ASCII digits of `value` from byte `from`; `None` when
/// they are not all digits or run past the end.
fn digits(value: &str, from: usize, len: usize) -> Option<i32> {
    let s = value.get(from..from + len)?;
    if !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Milliseconds since the epoch at the start of a day, in UTC.
fn midnight_ms(d: Date) -> Option<i64> {
    Some(
        Offset::UTC
            .to_timestamp(d.to_datetime(Time::midnight()))
            .ok()?
            .as_millisecond(),
    )
}

/// `YYYY`: the whole year.
fn whole_year(year: i16) -> Option<Range> {
    let start = Date::new(year, 1, 1).ok()?;
    let end = Date::new(year.checked_add(1)?, 1, 1).ok()?;
    Some(Range {
        start: midnight_ms(start)?,
        end: midnight_ms(end)?,
    })
}

/// `YYYY-MM`: the whole month (`value` is the text, `year` its year, already read).
fn whole_month(value: &str, year: i16) -> Option<Range> {
    let month = i8::try_from(digits(value, 5, 2)?).ok()?;
    let start = Date::new(year, month, 1).ok()?;
    let end = if month == 12 {
        Date::new(year.checked_add(1)?, 1, 1)
    } else {
        Date::new(year, month + 1, 1)
    }
    .ok()?;
    Some(Range {
        start: midnight_ms(start)?,
        end: midnight_ms(end)?,
    })
}

/// `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]` (`value` is the text, `date` its day, already
/// read): a minute, second or millisecond, as precise as it is written.
fn date_time(value: &str, date: Date) -> Option<Range> {
    let b = value.as_bytes();
    if b.get(10) != Some(&b'T') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let hour = i8::try_from(digits(value, 11, 2)?).ok()?;
    let minute = i8::try_from(digits(value, 14, 2)?).ok()?;
    let seconds = seconds(value, 16)?;
    let offset = offset(value, seconds.end)?;
    let time = Time::new(hour, minute, seconds.second, seconds.millis * 1_000_000).ok()?;
    let start = offset
        .to_timestamp(DateTime::from_parts(date, time))
        .ok()?
        .as_millisecond();
    Some(Range {
        start,
        end: start + seconds.width,
    })
}

/// The optional seconds of a time, and how precise the time is.
struct Seconds {
    /// The second (0 when left out).
    second: i8,
    /// The millisecond (0 when left out; digits after the third are dropped).
    millis: i32,
    /// The width of the time's range in milliseconds: a minute, a second or a millisecond.
    width: i64,
    /// The byte after the seconds, where the time zone starts.
    end: usize,
}

/// Reads `[:ss[.fff…]]` from byte `pos` of `value`; `None` when written wrongly.
fn seconds(value: &str, mut pos: usize) -> Option<Seconds> {
    let b = value.as_bytes();
    let (mut second, mut millis, mut width) = (0i8, 0i32, 60_000i64);
    if b.get(pos) == Some(&b':') {
        second = i8::try_from(digits(value, pos + 1, 2)?).ok()?;
        width = 1_000;
        pos += 3;
        if b.get(pos) == Some(&b'.') {
            let count = b[pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if count == 0 || count > 9 {
                return None;
            }
            let frac = &value[pos + 1..pos + 1 + count];
            let padded = format!("{frac:0<3}");
            millis = padded[..3].parse().ok()?;
            width = 1;
            pos += 1 + count;
        }
    }
    Some(Seconds {
        second,
        millis,
        width,
        end: pos,
    })
}

/// Reads the time zone that is the rest of `value` from byte `pos`: none or `Z` (UTC), or
/// `±hh:mm` up to 14 hours; `None` for anything else.
fn offset(value: &str, pos: usize) -> Option<Offset> {
    match value.get(pos..)? {
        "" | "Z" => Some(Offset::UTC),
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[3] == b':' =>
        {
            let h = digits(value, pos + 1, 2)?;
            let m = digits(value, pos + 4, 2)?;
            if h > 14 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) * if tz.starts_with('-') { -1 } else { 1 };
            Offset::from_seconds(secs).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn precision_sets_the_width() {
        let y = parse("2024").expect("year");
        assert_eq!(y.end - y.start, 366 * DAY);
        let m = parse("2024-02").expect("month");
        assert_eq!(m.end - m.start, 29 * DAY);
        let d = parse("2024-02-29").expect("day");
        assert_eq!(d.end - d.start, DAY);
        let s = parse("2024-02-29T10:00:00Z").expect("second");
        assert_eq!(s.end - s.start, 1000);
        let ms = parse("2024-02-29T10:00:00.5Z").expect("millis");
        assert_eq!(ms.end - ms.start, 1);
    }

    #[test]
    fn offsets_shift_the_instant() {
        let utc = parse("2024-06-01T10:00:00Z").expect("utc");
        let bst = parse("2024-06-01T11:00:00+01:00").expect("bst");
        assert_eq!(utc, bst);
        assert_eq!(parse("1970-01-01T00:00:00Z").map(|r| r.start), Some(0));
    }

    #[test]
    fn rejects_nonsense() {
        for v in [
            "",
            "20",
            "2024-13",
            "2023-02-29",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00+15:00",
            "2024/01/01",
            "2024-01-01T10:00:00.Z",
            "2024-01-01x",
            "２０２４",
        ] {
            assert_eq!(parse(v), None, "{v}");
        }
    }
}
