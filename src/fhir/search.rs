//! The search parameters Concord understands, how they match resources, and the total order
//! and cursors that page merged results.
//!
//! The gateway never trusts an upstream to have applied a filter: every parameter is evaluated
//! here on every resource. Parameters follow the FHIR R4 definitions for each type: `date`
//! exists on Observation but not on Condition (which has `onset-date`), and so on. The same
//! table drives the CapabilityStatement, so it lists exactly what works.

use std::cmp::Ordering;

use serde_json::Value;

use super::date::{self, Range};

/// The kind of a search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Compared as ranges of time, with prefixes `eq ne gt lt ge le sa eb`.
    Date,
    /// `[system]|[code]` against codes, Codings and CodeableConcepts.
    Token,
}

impl ParamKind {
    /// The FHIR `SearchParamType` code.
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::Date => "date",
            ParamKind::Token => "token",
        }
    }
}

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct ParamDef {
    /// The parameter name as used in URLs.
    pub name: &'static str,
    /// How values compare.
    pub kind: ParamKind,
    /// Element paths (dotted; choice types spelled out) whose values the parameter reads.
    pub paths: &'static [&'static str],
}

/// A resource type the gateway serves, with its search parameters.
#[derive(Debug)]
pub struct TypeDef {
    /// The FHIR resource type.
    pub name: &'static str,
    /// The element that names the person the resource is about (`subject` or `patient`).
    pub patient_element: &'static str,
    /// Type-specific search parameters (besides `patient`, `subject` and the common ones).
    pub params: &'static [ParamDef],
    /// Elements giving the resource's clinical date, used for the default newest-first order.
    pub clinical_date: &'static [&'static str],
}

const fn token(name: &'static str, paths: &'static [&'static str]) -> ParamDef {
    ParamDef {
        name,
        kind: ParamKind::Token,
        paths,
    }
}

const fn date(name: &'static str, paths: &'static [&'static str]) -> ParamDef {
    ParamDef {
        name,
        kind: ParamKind::Date,
        paths,
    }
}

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 32;
/// Most times one parameter may be repeated (each repetition is an AND).
pub const MAX_REPEATS: usize = 8;
/// Most comma-separated alternatives in one parameter's value (an OR).
pub const MAX_ALTERNATIVES: usize = 20;
/// Most alternatives in the whole query, over every parameter: what a search can make the
/// store or the filters do is bounded by this, whatever the caller sends.
pub const MAX_TOTAL_ALTERNATIVES: usize = 64;

/// `_lastUpdated`, which every type has.
pub static LAST_UPDATED: ParamDef = date("_lastUpdated", &["meta.lastUpdated"]);

const OBS_DATE: &[&str] = &["effectiveDateTime", "effectivePeriod", "effectiveInstant"];
const PROC_DATE: &[&str] = &["performedDateTime", "performedPeriod"];

/// Every patient-compartment type the gateway serves (Patient itself is handled apart).
pub static TYPES: &[TypeDef] = &[
    TypeDef {
        name: "AllergyIntolerance",
        patient_element: "patient",
        params: &[
            token("clinical-status", &["clinicalStatus"]),
            token("category", &["category"]),
            token("code", &["code", "reaction.substance"]),
            date("date", &["recordedDate"]),
        ],
        clinical_date: &["recordedDate", "onsetDateTime"],
    },
    TypeDef {
        name: "CarePlan",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            date("date", &["period"]),
            token("intent", &["intent"]),
            token("status", &["status"]),
        ],
        clinical_date: &["period", "created"],
    },
    TypeDef {
        name: "Condition",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("clinical-status", &["clinicalStatus"]),
            token("code", &["code"]),
            date("onset-date", &["onsetDateTime", "onsetPeriod"]),
            date("recorded-date", &["recordedDate"]),
            token("verification-status", &["verificationStatus"]),
        ],
        clinical_date: &["onsetDateTime", "onsetPeriod", "recordedDate"],
    },
    TypeDef {
        name: "DiagnosticReport",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("code", &["code"]),
            date("date", &["effectiveDateTime", "effectivePeriod"]),
            token("status", &["status"]),
        ],
        clinical_date: &["effectiveDateTime", "effectivePeriod", "issued"],
    },
    TypeDef {
        name: "DocumentReference",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            date("date", &["date"]),
            token("status", &["status"]),
            token("type", &["type"]),
        ],
        clinical_date: &["date"],
    },
    TypeDef {
        name: "Encounter",
        patient_element: "subject",
        params: &[
            token("class", &["class"]),
            date("date", &["period"]),
            token("status", &["status"]),
            token("type", &["type"]),
        ],
        clinical_date: &["period"],
    },
    TypeDef {
        name: "EpisodeOfCare",
        patient_element: "patient",
        params: &[
            date("date", &["period"]),
            token("status", &["status"]),
            token("type", &["type"]),
        ],
        clinical_date: &["period"],
    },
    TypeDef {
        name: "Flag",
        patient_element: "subject",
        params: &[date("date", &["period"])],
        clinical_date: &["period"],
    },
    TypeDef {
        name: "Goal",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("lifecycle-status", &["lifecycleStatus"]),
            date("start-date", &["startDate"]),
        ],
        clinical_date: &["startDate"],
    },
    TypeDef {
        name: "Immunization",
        patient_element: "patient",
        params: &[
            date("date", &["occurrenceDateTime"]),
            token("status", &["status"]),
            token("vaccine-code", &["vaccineCode"]),
        ],
        clinical_date: &["occurrenceDateTime", "recorded"],
    },
    TypeDef {
        name: "MedicationRequest",
        patient_element: "subject",
        params: &[
            date("authoredon", &["authoredOn"]),
            token("category", &["category"]),
            token("code", &["medicationCodeableConcept"]),
            token("intent", &["intent"]),
            token("status", &["status"]),
        ],
        clinical_date: &["authoredOn"],
    },
    TypeDef {
        name: "MedicationStatement",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("code", &["medicationCodeableConcept"]),
            date("effective", &["effectiveDateTime", "effectivePeriod"]),
            token("status", &["status"]),
        ],
        clinical_date: &["effectiveDateTime", "effectivePeriod", "dateAsserted"],
    },
    TypeDef {
        name: "Observation",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("code", &["code"]),
            date("date", OBS_DATE),
            token("status", &["status"]),
        ],
        clinical_date: OBS_DATE,
    },
    TypeDef {
        name: "Procedure",
        patient_element: "subject",
        params: &[
            token("category", &["category"]),
            token("code", &["code"]),
            date("date", PROC_DATE),
            token("status", &["status"]),
        ],
        clinical_date: PROC_DATE,
    },
    TypeDef {
        name: "RelatedPerson",
        patient_element: "patient",
        params: &[token("relationship", &["relationship"])],
        clinical_date: &["period"],
    },
];

/// The definition of a served patient-compartment type.
pub fn type_def(name: &str) -> Option<&'static TypeDef> {
    TYPES.iter().find(|t| t.name == name)
}

impl TypeDef {
    /// The named search parameter of this type, including `_lastUpdated`.
    pub fn param(&self, name: &str) -> Option<&'static ParamDef> {
        if name == LAST_UPDATED.name {
            return Some(&LAST_UPDATED);
        }
        self.params.iter().find(|p| p.name == name)
    }
}

/// The local id of the patient a resource is about: its type's patient element (`subject` or
/// `patient`), or for a type the gateway does not serve, whichever of the two names a Patient.
/// The reference may be relative or absolute under `base`.
pub fn patient_id_of<'a>(resource: &'a Value, base: Option<&str>) -> Option<&'a str> {
    let rtype = resource.get("resourceType").and_then(Value::as_str)?;
    let candidates: &[&str] = match type_def(rtype).map(|t| t.patient_element) {
        Some("patient") => &["patient"],
        Some(_) => &["subject"],
        None => &["subject", "patient"],
    };
    candidates.iter().find_map(|e| {
        let reference = resource.get(*e)?.get("reference")?.as_str()?;
        let r = super::reference::parse_under_base(reference, base)?;
        (r.resource_type == "Patient").then_some(r.id)
    })
}

/// Every value found at a dotted element path, flattening arrays on the way.
pub fn values_at<'a>(resource: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for step in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(other) => next.push(other),
                None => {}
            }
        }
        current = next;
    }
    current
}

/// Why a search parameter value could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A date that is not a FHIR date, or an unknown prefix.
    #[error("`{0}` is not a FHIR date with an optional prefix (eq, ne, gt, lt, ge, le, sa, eb)")]
    Date(String),
    /// The `ap` prefix, which this gateway does not implement.
    #[error("the `ap` (approximately) date prefix is not supported")]
    Approximate,
    /// An empty token.
    #[error("a token search value may not be empty")]
    EmptyToken,
}

/// A date comparison prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Within the range.
    Eq,
    /// Not within the range.
    Ne,
    /// After the range ends.
    Gt,
    /// Before the range starts.
    Lt,
    /// After the range ends, or within it.
    Ge,
    /// Before the range starts, or within it.
    Le,
    /// Starts after the range.
    Sa,
    /// Ends before the range.
    Eb,
}

/// One comparison of a date search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateCriterion {
    /// How to compare.
    pub prefix: Prefix,
    /// The range the value stands for.
    pub range: Range,
}

/// Parses `ge2024-01-01`, `2024`, `lt2024-03-01T10:00:00Z`, …
pub fn parse_date_criterion(raw: &str) -> Result<DateCriterion, ParamError> {
    let (prefix, rest) = match raw.get(..2) {
        Some("eq") => (Prefix::Eq, &raw[2..]),
        Some("ne") => (Prefix::Ne, &raw[2..]),
        Some("gt") => (Prefix::Gt, &raw[2..]),
        Some("lt") => (Prefix::Lt, &raw[2..]),
        Some("ge") => (Prefix::Ge, &raw[2..]),
        Some("le") => (Prefix::Le, &raw[2..]),
        Some("sa") => (Prefix::Sa, &raw[2..]),
        Some("eb") => (Prefix::Eb, &raw[2..]),
        Some("ap") => return Err(ParamError::Approximate),
        _ => (Prefix::Eq, raw),
    };
    let range = date::parse(rest).ok_or_else(|| ParamError::Date(raw.to_owned()))?;
    Ok(DateCriterion { prefix, range })
}

impl DateCriterion {
    /// Whether a resource value's range satisfies this criterion (FHIR R4 search, 3.1.1.4.2).
    pub fn matches(&self, r: Range) -> bool {
        let p = self.range;
        let within = p.start <= r.start && r.end <= p.end;
        match self.prefix {
            Prefix::Eq => within,
            Prefix::Ne => !within,
            Prefix::Gt => r.end > p.end,
            Prefix::Lt => r.start < p.start,
            Prefix::Ge => r.end > p.end || within,
            Prefix::Le => r.start < p.start || within,
            Prefix::Sa => r.start >= p.end,
            Prefix::Eb => r.end <= p.start,
        }
    }
}

/// The range a date-bearing element stands for: a date/dateTime/instant string, or a Period.
pub fn value_range(value: &Value) -> Option<Range> {
    match value {
        Value::String(s) => date::parse(s),
        Value::Object(period) => {
            let start = period.get("start").and_then(Value::as_str);
            let end = period.get("end").and_then(Value::as_str);
            if start.is_none() && end.is_none() {
                return None;
            }
            Some(Range {
                start: match start {
                    Some(s) => date::parse(s)?.start,
                    None => i64::MIN,
                },
                end: match end {
                    Some(e) => date::parse(e)?.end,
                    None => i64::MAX,
                },
            })
        }
        _ => None,
    }
}

/// One alternative of a token search value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCriterion {
    /// `None`: any system. `Some("")`: no system. `Some(s)`: that system.
    pub system: Option<String>,
    /// `None`: any code in the system.
    pub code: Option<String>,
}

/// Splits on `sep` where it is not escaped with a backslash, unescaping `\,` `\|` `\$` `\\`.
fn split_escaped(raw: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), parts.last_mut()) {
                    if !matches!(next, ',' | '|' | '$' | '\\') {
                        last.push('\\');
                    }
                    last.push(next);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

/// Splits a parameter value into its comma-separated alternatives (OR), honouring `\,`.
pub fn alternatives(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    out.push(current);
    out
}

/// Parses one token alternative: `code`, `system|code`, `|code` or `system|`.
pub fn parse_token(raw: &str) -> Result<TokenCriterion, ParamError> {
    let parts = split_escaped(raw, '|');
    let criterion = match parts.as_slice() {
        [code] => TokenCriterion {
            system: None,
            code: Some(code.clone()),
        },
        [system, code] => TokenCriterion {
            system: Some(system.clone()),
            code: (!code.is_empty()).then(|| code.clone()),
        },
        _ => return Err(ParamError::EmptyToken),
    };
    if criterion.code.as_deref().is_some_and(str::is_empty)
        || (criterion.code.is_none() && criterion.system.as_deref() == Some(""))
    {
        return Err(ParamError::EmptyToken);
    }
    Ok(criterion)
}

impl TokenCriterion {
    fn matches_coding(&self, system: Option<&str>, code: Option<&str>) -> bool {
        let system_ok = match self.system.as_deref() {
            None => true,
            Some("") => system.is_none(),
            Some(s) => system == Some(s),
        };
        let code_ok = match self.code.as_deref() {
            None => true,
            Some(c) => code == Some(c),
        };
        system_ok && code_ok
    }

    /// Whether an element value (code, Coding, CodeableConcept or Identifier) matches.
    pub fn matches(&self, value: &Value) -> bool {
        match value {
            // A plain `code`: its system is implicit in the element, so only the code counts.
            Value::String(code) => self.code.as_deref().is_none_or(|c| c == code),
            Value::Object(obj) => {
                if let Some(Value::Array(codings)) = obj.get("coding") {
                    return codings.iter().any(|c| {
                        self.matches_coding(
                            c.get("system").and_then(Value::as_str),
                            c.get("code").and_then(Value::as_str),
                        )
                    });
                }
                let code = obj
                    .get("code")
                    .or_else(|| obj.get("value"))
                    .and_then(Value::as_str);
                self.matches_coding(obj.get("system").and_then(Value::as_str), code)
            }
            _ => false,
        }
    }
}

/// A parsed filter on one parameter: the resource matches when any alternative matches.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Date alternatives.
    Date(&'static ParamDef, Vec<DateCriterion>),
    /// Token alternatives.
    Token(&'static ParamDef, Vec<TokenCriterion>),
}

impl Filter {
    /// Parses the raw value of `param`.
    pub fn parse(param: &'static ParamDef, raw: &str) -> Result<Filter, ParamError> {
        let alts = alternatives(raw);
        Ok(match param.kind {
            ParamKind::Date => Filter::Date(
                param,
                alts.iter()
                    .map(|a| parse_date_criterion(a))
                    .collect::<Result<_, _>>()?,
            ),
            ParamKind::Token => Filter::Token(
                param,
                alts.iter()
                    .map(|a| parse_token(a))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Whether the resource satisfies the filter.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::Date(def, criteria) => def
                .paths
                .iter()
                .flat_map(|p| values_at(resource, p))
                .filter_map(value_range)
                .any(|r| criteria.iter().any(|c| c.matches(r))),
            Filter::Token(def, criteria) => def
                .paths
                .iter()
                .flat_map(|p| values_at(resource, p))
                .any(|v| criteria.iter().any(|c| c.matches(v))),
        }
    }
}

/// One part of a resource's position in a sorted result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// Text, compared byte-wise (resource types, gateway ids).
    Text(String),
    /// A time in milliseconds, or none (sorted last whatever the direction).
    Time(Option<i64>),
}

/// [`KeyPart`] borrowed from the resource it orders: sorting a page's resources copies no
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// Text, compared byte-wise (resource types, gateway ids).
    Text(&'a str),
    /// A time in milliseconds, or none (sorted last whatever the direction).
    Time(Option<i64>),
}

impl KeyRef<'_> {
    /// The part as kept in a cursor.
    pub fn to_part(self) -> KeyPart {
        match self {
            KeyRef::Text(t) => KeyPart::Text(t.to_owned()),
            KeyRef::Time(t) => KeyPart::Time(t),
        }
    }
}

/// A key part, owned ([`KeyPart`]) or borrowed ([`KeyRef`]), for [`compare_keys`].
pub trait AsKeyRef {
    /// The part, borrowed.
    fn key_ref(&self) -> KeyRef<'_>;
}

impl AsKeyRef for KeyPart {
    fn key_ref(&self) -> KeyRef<'_> {
        match self {
            KeyPart::Text(t) => KeyRef::Text(t),
            KeyPart::Time(t) => KeyRef::Time(*t),
        }
    }
}

impl AsKeyRef for KeyRef<'_> {
    fn key_ref(&self) -> KeyRef<'_> {
        *self
    }
}

/// Compares two keys part by part; `descending[i]` reverses part i (a missing time stays last).
pub fn compare_keys<A: AsKeyRef, B: AsKeyRef>(a: &[A], b: &[B], descending: &[bool]) -> Ordering {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let desc = descending.get(i).copied().unwrap_or(false);
        let ord = match (x.key_ref(), y.key_ref()) {
            (KeyRef::Text(x), KeyRef::Text(y)) => directed(x.cmp(y), desc),
            (KeyRef::Time(Some(x)), KeyRef::Time(Some(y))) => directed(x.cmp(&y), desc),
            (KeyRef::Time(None), KeyRef::Time(None)) => Ordering::Equal,
            (KeyRef::Time(None), KeyRef::Time(Some(_))) => Ordering::Greater,
            (KeyRef::Time(Some(_)), KeyRef::Time(None)) => Ordering::Less,
            (KeyRef::Text(_), KeyRef::Time(_)) => Ordering::Less,
            (KeyRef::Time(_), KeyRef::Text(_)) => Ordering::Greater,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

fn directed(ord: Ordering, descending: bool) -> Ordering {
    if descending { ord.reverse() } else { ord }
}

/// Encodes a key as an opaque, URL-safe cursor (`_cursor`): the position of the last entry of
/// a page. Text parts only ever hold resource types and ids, whose characters are URL-safe.
pub fn encode_cursor(key: &[KeyPart]) -> String {
    key.iter()
        .map(|p| match p {
            KeyPart::Text(t) => format!("t{t}"),
            KeyPart::Time(Some(n)) => format!("n{n}"),
            KeyPart::Time(None) => "z".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("~")
}

/// Decodes a cursor made by [`encode_cursor`]; `None` when it is not one.
pub fn decode_cursor(raw: &str) -> Option<Vec<KeyPart>> {
    raw.split('~')
        .map(|part| match part.split_at_checked(1)? {
            ("t", text)
                if text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
            {
                Some(KeyPart::Text(text.to_owned()))
            }
            ("n", num) => num.parse().ok().map(|n| KeyPart::Time(Some(n))),
            ("z", "") => Some(KeyPart::Time(None)),
            _ => None,
        })
        .collect()
}

/// The earliest start among the ranges at `paths` (the value a sort by that parameter uses).
pub fn sort_time(resource: &Value, paths: &[&str]) -> Option<i64> {
    paths
        .iter()
        .flat_map(|p| values_at(resource, p))
        .filter_map(value_range)
        .map(|r| r.start)
        .filter(|s| *s != i64::MIN)
        .min()
}

#[cfg(test)]
mod tests;
