//! The lexical forms of FHIR R4 primitives, after the patterns of the official R4 JSON schema,
//! checked byte by byte (no regular expressions). Dates must also exist (`2023-02-30` does
//! not), as FHIR requires.

use serde_json::Value;

/// A FHIR R4 primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prim {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Prim {
    /// The primitive of an R4 type name.
    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "base64Binary" => Prim::Base64Binary,
            "boolean" => Prim::Boolean,
            "canonical" => Prim::Canonical,
            "code" => Prim::Code,
            "date" => Prim::Date,
            "dateTime" => Prim::DateTime,
            "decimal" => Prim::Decimal,
            "id" => Prim::Id,
            "instant" => Prim::Instant,
            "integer" => Prim::Integer,
            "markdown" => Prim::Markdown,
            "oid" => Prim::Oid,
            "positiveInt" => Prim::PositiveInt,
            "string" => Prim::String,
            "time" => Prim::Time,
            "unsignedInt" => Prim::UnsignedInt,
            "uri" => Prim::Uri,
            "url" => Prim::Url,
            "uuid" => Prim::Uuid,
            "xhtml" => Prim::Xhtml,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Prim::Base64Binary => "base64Binary",
            Prim::Boolean => "boolean",
            Prim::Canonical => "canonical",
            Prim::Code => "code",
            Prim::Date => "date",
            Prim::DateTime => "dateTime",
            Prim::Decimal => "decimal",
            Prim::Id => "id",
            Prim::Instant => "instant",
            Prim::Integer => "integer",
            Prim::Markdown => "markdown",
            Prim::Oid => "oid",
            Prim::PositiveInt => "positiveInt",
            Prim::String => "string",
            Prim::Time => "time",
            Prim::UnsignedInt => "unsignedInt",
            Prim::Uri => "uri",
            Prim::Url => "url",
            Prim::Uuid => "uuid",
            Prim::Xhtml => "xhtml",
        }
    }
}

/// At most this many characters of a value are quoted in a message.
const QUOTE: usize = 64;

/// A value quoted for a message, cut at [`QUOTE`] characters.
pub(super) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE) {
        Some((at, _)) => format!("`{}…`", &text[..at]),
        None => format!("`{text}`"),
    }
}

/// Checks a primitive value; the error is the message to report.
pub(super) fn check(prim: Prim, value: &Value) -> Result<(), String> {
    match (prim, value) {
        (Prim::Boolean, Value::Bool(_)) => Ok(()),
        (Prim::Decimal, Value::Number(_)) => Ok(()),
        (Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt, Value::Number(n)) => {
            integer(prim, &n.to_string())
        }
        (
            Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt,
            _,
        ) => Err(format!(
            "expected a JSON {} ({}), found {}",
            if prim == Prim::Boolean {
                "boolean"
            } else {
                "number"
            },
            prim.name(),
            json_kind(value)
        )),
        (_, Value::String(s)) => text(prim, s),
        (_, _) => Err(format!(
            "expected a JSON string ({}), found {}",
            prim.name(),
            json_kind(value)
        )),
    }
}

/// `a string`, `a number`, … for messages.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn integer(prim: Prim, raw: &str) -> Result<(), String> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    let value = if canonical {
        raw.parse::<i32>().ok()
    } else {
        None
    };
    let fits = match (prim, value) {
        (_, None) => false,
        (Prim::PositiveInt, Some(v)) => v >= 1,
        (Prim::UnsignedInt, Some(v)) => v >= 0,
        (_, Some(_)) => true,
    };
    if fits {
        Ok(())
    } else {
        let range = match prim {
            Prim::PositiveInt => "1 to 2147483647",
            Prim::UnsignedInt => "0 to 2147483647",
            _ => "-2147483648 to 2147483647",
        };
        Err(format!(
            "{} is not a valid {} (a whole number, {range})",
            quote(raw),
            prim.name()
        ))
    }
}

fn text(prim: Prim, s: &str) -> Result<(), String> {
    let (ok, expected) = match prim {
        Prim::String | Prim::Markdown | Prim::Xhtml => (!s.is_empty(), "a non-empty string"),
        Prim::Code => (is_code(s), "no leading, trailing or double whitespace"),
        Prim::Id => (
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "1 to 64 of A-Z a-z 0-9 - .",
        ),
        Prim::Uri | Prim::Url | Prim::Canonical => (
            !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace()),
            "non-empty, without whitespace",
        ),
        Prim::Oid => (is_oid(s), "urn:oid: followed by dotted numbers"),
        Prim::Uuid => (is_uuid(s), "urn:uuid: followed by a lower-case UUID"),
        Prim::Base64Binary => (
            s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'+' | b'/' | b'=')
                    || b.is_ascii_whitespace()
            }),
            "base64 characters",
        ),
        Prim::Date => (
            date(s.as_bytes()) == Some(s.len()),
            "YYYY, YYYY-MM or YYYY-MM-DD",
        ),
        Prim::DateTime => (
            is_date_time(s.as_bytes()),
            "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone",
        ),
        Prim::Instant => (
            is_instant(s.as_bytes()),
            "YYYY-MM-DDThh:mm:ss with a time zone",
        ),
        Prim::Time => (time(s.as_bytes()) == Some(s.len()), "hh:mm:ss"),
        Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => {
            return Err(format!(
                "expected a JSON {} ({}), found a string",
                if prim == Prim::Boolean {
                    "boolean"
                } else {
                    "number"
                },
                prim.name()
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid {} ({expected})",
            quote(s),
            prim.name()
        ))
    }
}

fn is_code(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s.contains("  ")
        && !s.chars().any(|c| c.is_whitespace() && c != ' ')
}

fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut parts = rest.split('.');
    matches!(parts.next(), Some("0" | "1" | "2"))
        && rest.contains('.')
        && parts.all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'))
        })
}

fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// The length of a valid `YYYY[-MM[-DD]]` at the start of `b`.
fn date(b: &[u8]) -> Option<usize> {
    let year = digits(b, 0, 4)?;
    if year == 0 {
        return None;
    }
    if b.get(4) != Some(&b'-') {
        return Some(4);
    }
    let month = digits(b, 5, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if b.get(7) != Some(&b'-') {
        return Some(7);
    }
    let day = digits(b, 8, 2)?;
    let valid = i16::try_from(year)
        .ok()
        .zip(i8::try_from(month).ok())
        .zip(i8::try_from(day).ok())
        .is_some_and(|((y, m), d)| jiff::civil::Date::new(y, m, d).is_ok());
    valid.then_some(10)
}

/// The length of a valid `hh:mm:ss[.f+]` at the start of `b`.
fn time(b: &[u8]) -> Option<usize> {
    let ok = digits(b, 0, 2)? <= 23
        && b.get(2) == Some(&b':')
        && digits(b, 3, 2)? <= 59
        && b.get(5) == Some(&b':')
        && digits(b, 6, 2)? <= 60;
    if !ok {
        return None;
    }
    if b.get(8) != Some(&b'.') {
        return Some(8);
    }
    let fraction = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
    (fraction > 0).then_some(9 + fraction)
}

/// `Z`, or `±hh:mm` up to 14:00, exactly.
fn zone(b: &[u8]) -> bool {
    match b {
        [b'Z'] => true,
        [b'+' | b'-', ..] if b.len() == 6 && b[3] == b':' => {
            match (digits(b, 1, 2), digits(b, 4, 2)) {
                (Some(h), Some(m)) => (h <= 13 && m <= 59) || (h == 14 && m == 0),
                _ => false,
            }
        }
        _ => false,
    }
}

fn is_date_time(b: &[u8]) -> bool {
    match date(b) {
        Some(n) if n == b.len() => true,
        Some(10) if b.get(10) == Some(&b'T') => is_time_zone_from(b, 11),
        _ => false,
    }
}

fn is_instant(b: &[u8]) -> bool {
    date(b) == Some(10) && b.get(10) == Some(&b'T') && is_time_zone_from(b, 11)
}

fn is_time_zone_from(b: &[u8], at: usize) -> bool {
    let rest = &b[at.min(b.len())..];
    time(rest).is_some_and(|n| zone(&rest[n..]))
}
