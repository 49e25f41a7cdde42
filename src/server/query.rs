//! Reading a FHIR search request: its parameters, the `Prefer: handling` choice for unknown
//! ones, and the links that repeat it.

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::fhir::resource::Resource;
use crate::fhir::search::{self, Filter, KeyPart, KeyRef, TypeDef};

/// Parameters every search accepts, beside the type's own.
pub const RESULT_PARAMS: [&str; 4] = ["_count", "_sort", "_format", "_pretty"];
/// The gateway's paging cursor parameter (opaque to clients: they follow `next` links).
pub const CURSOR: &str = "_cursor";

pub use crate::fhir::search::{MAX_ALTERNATIVES, MAX_PARAMS, MAX_REPEATS, MAX_TOTAL_ALTERNATIVES};

/// The raw query as (name, value) pairs, in order, within the limits above (400 naming the
/// parameter and the limit beyond them). Every FHIR endpoint reads its query through here.
pub fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut total = 0_usize;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let shown: String = name.chars().take(64).collect();
        if out.len() == MAX_PARAMS {
            return Err(ApiError::bad_param(
                &shown,
                format!("the request has more than {MAX_PARAMS} parameters, the most accepted"),
            ));
        }
        if out.iter().filter(|(n, _)| *n == name).count() == MAX_REPEATS {
            return Err(ApiError::bad_param(
                &shown,
                format!("is repeated more than {MAX_REPEATS} times, the most accepted"),
            ));
        }
        if name.chars().chain(value.chars()).any(char::is_control) {
            // No FHIR search value holds one, and PostgreSQL cannot hold a NUL in text.
            return Err(ApiError::bad_param(
                &shown.replace(char::is_control, "?"),
                "contains control characters",
            ));
        }
        let alternatives = value.bytes().filter(|b| *b == b',').count() + 1;
        if alternatives > MAX_ALTERNATIVES {
            return Err(ApiError::bad_param(
                &shown,
                format!(
                    "has {alternatives} comma-separated values; at most {MAX_ALTERNATIVES} are accepted"
                ),
            ));
        }
        total += alternatives;
        if total > MAX_TOTAL_ALTERNATIVES {
            return Err(ApiError::bad_param(
                &shown,
                format!(
                    "the request has more than {MAX_TOTAL_ALTERNATIVES} values in all parameters together, the most accepted"
                ),
            ));
        }
        out.push((name.into_owned(), value.into_owned()));
    }
    Ok(out)
}

/// True when the caller asked for `Prefer: handling=strict`.
pub fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=strict"))
}

/// The parameters a search used, and those it ignored.
#[derive(Debug, Default)]
pub struct Used {
    /// Pairs that were understood, to repeat in `self` and `next` links.
    pub pairs: Vec<(String, String)>,
    /// Names of parameters that were not understood (ignored under lenient handling).
    pub ignored: Vec<String>,
}

impl Used {
    /// Records an unknown parameter, failing under strict handling.
    pub fn unknown(&mut self, name: &str, strict: bool) -> Result<(), ApiError> {
        if strict {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::bad_param(
                &shown,
                "is not supported here (Prefer: handling=strict)",
            ));
        }
        self.ignored.push(name.to_owned());
        Ok(())
    }

    /// The OperationOutcome that lists the parameters ignored (lenient handling), if any.
    pub fn ignored_notice(&self) -> Option<serde_json::Value> {
        if self.ignored.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .ignored
            .iter()
            .map(|n| format!("`{}`", n.chars().take(64).collect::<String>()))
            .collect();
        Some(crate::fhir::operation_outcome(&[crate::fhir::Issue::new(
            crate::fhir::Severity::Information,
            "not-supported",
            format!(
                "parameters ignored (not supported here): {}",
                names.join(", ")
            ),
        )]))
    }
}

/// How many entries a page holds.
pub fn page_size(raw: &str, max: usize) -> Result<usize, ApiError> {
    match raw.parse::<usize>() {
        Ok(n) => Ok(n.min(max)),
        Err(_) => Err(ApiError::bad_param(
            "_count",
            "must be a whole number of 0 or more",
        )),
    }
}

/// A sort order: keys with directions, always ending with the gateway id ascending so that
/// the order is total and cursors are exact.
#[derive(Debug, Clone)]
pub struct SortSpec {
    keys: Vec<SortKey>,
}

#[derive(Debug, Clone)]
enum SortKey {
    Time {
        paths: &'static [&'static str],
        descending: bool,
    },
    Id {
        descending: bool,
    },
    TypeName,
    ClinicalDate,
}

impl SortSpec {
    /// Newest first by the type's clinical date.
    pub fn default_for(def: &'static TypeDef) -> Self {
        Self {
            keys: vec![SortKey::Time {
                paths: def.clinical_date,
                descending: true,
            }],
        }
    }

    /// `$everything`'s order: by type, then newest first by each type's clinical date.
    pub fn everything() -> Self {
        Self {
            keys: vec![SortKey::TypeName, SortKey::ClinicalDate],
        }
    }

    /// Parses `_sort=date,-_lastUpdated,_id` for a type.
    pub fn parse(def: &'static TypeDef, raw: &str) -> Result<Self, ApiError> {
        let mut keys = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, descending) = match item.strip_prefix('-') {
                Some(n) => (n, true),
                None => (item, false),
            };
            if name == "_id" {
                keys.push(SortKey::Id { descending });
                continue;
            }
            match def.param(name) {
                Some(p) if p.kind == search::ParamKind::Date => keys.push(SortKey::Time {
                    paths: p.paths,
                    descending,
                }),
                _ => {
                    let shown: String = name.chars().take(64).collect();
                    return Err(ApiError::bad_param(
                        "_sort",
                        format!(
                            "cannot sort {} by `{shown}`; date parameters, _lastUpdated and _id can be used",
                            def.name
                        ),
                    ));
                }
            }
        }
        if keys.is_empty() {
            return Err(ApiError::bad_param("_sort", "names no parameter"));
        }
        Ok(Self { keys })
    }

    /// The resource's position key.
    pub fn key<'a>(&self, resource: &'a Resource) -> Vec<KeyRef<'a>> {
        let mut parts: Vec<KeyRef<'a>> = Vec::with_capacity(self.keys.len() + 1);
        parts.extend(self.keys.iter().map(|k| match k {
            SortKey::Time { paths, .. } => KeyRef::Time(search::sort_time(resource.value(), paths)),
            SortKey::Id { .. } => KeyRef::Text(resource.id()),
            SortKey::TypeName => KeyRef::Text(resource.resource_type()),
            SortKey::ClinicalDate => KeyRef::Time(resource.clinical_time()),
        }));
        parts.push(KeyRef::Text(resource.id()));
        parts
    }

    /// Direction of each key part.
    pub fn descending(&self) -> Vec<bool> {
        let mut d: Vec<bool> = self
            .keys
            .iter()
            .map(|k| {
                matches!(
                    k,
                    SortKey::Time {
                        descending: true,
                        ..
                    } | SortKey::Id { descending: true }
                        | SortKey::ClinicalDate
                )
            })
            .collect();
        d.push(false);
        d
    }
}

/// A parsed type search.
#[derive(Debug)]
pub struct TypeSearch {
    /// The gateway patient id named by `patient` or `subject`.
    pub patient: Option<String>,
    /// Filters, all of which must match (AND); each holds OR-ed alternatives.
    pub filters: Vec<Filter>,
    /// Page size.
    pub count: usize,
    /// Order.
    pub sort: SortSpec,
    /// Where the page starts (the key of the previous page's last entry).
    pub cursor: Option<Vec<KeyPart>>,
    /// Pretty-print the answer.
    pub pretty: bool,
    /// What was used and ignored.
    pub used: Used,
}

/// Extracts the gateway patient id from `patient` / `subject` values: `id`, `Patient/id` or
/// `{base}/Patient/id`.
pub fn patient_id(raw: &str, base: &str, param: &str) -> Result<String, ApiError> {
    let rest = raw
        .strip_prefix(base)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(raw);
    let id = match rest.split_once('/') {
        Some(("Patient", id)) => id,
        Some(_) => return Err(ApiError::bad_param(param, "must reference a Patient")),
        None if param == "subject" => {
            return Err(ApiError::bad_param(param, "must be written `Patient/{id}`"));
        }
        None => rest,
    };
    if !crate::fhir::reference::is_valid_id(id) {
        return Err(ApiError::bad_param(param, "is not a valid resource id"));
    }
    Ok(id.to_owned())
}

/// Parses a type search's parameters.
pub fn type_search(
    def: &'static TypeDef,
    pairs: Vec<(String, String)>,
    strict: bool,
    base: &str,
    page: (usize, usize),
) -> Result<TypeSearch, ApiError> {
    let mut out = TypeSearch {
        patient: None,
        filters: Vec::new(),
        count: page.0,
        sort: SortSpec::default_for(def),
        cursor: None,
        pretty: false,
        used: Used::default(),
    };
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "subject" if name == "patient" || def.patient_element == "subject" => {
                let id = patient_id(&value, base, &name)?;
                if out.patient.as_ref().is_some_and(|p| *p != id) {
                    return Err(ApiError::bad_param(
                        &name,
                        "names a different patient from an earlier parameter",
                    ));
                }
                out.patient = Some(id);
            }
            "_count" => out.count = page_size(&value, page.1)?,
            "_sort" => out.sort = SortSpec::parse(def, &value)?,
            CURSOR => {
                out.cursor = Some(cursor(&value)?);
                continue; // never repeated in self links
            }
            "_format" => check_format(&value)?,
            "_pretty" => out.pretty = value == "true",
            other => match def.param(other) {
                Some(p) => out
                    .filters
                    .push(Filter::parse(p, &value).map_err(|e| ApiError::bad_param(other, e))?),
                None => {
                    out.used.unknown(other, strict)?;
                    continue;
                }
            },
        }
        out.used.pairs.push((name, value));
    }
    Ok(out)
}

/// Decodes `_cursor`, which only ever comes from a `next` link this gateway made.
pub fn cursor(value: &str) -> Result<Vec<KeyPart>, ApiError> {
    search::decode_cursor(value).ok_or_else(|| {
        ApiError::bad_param(
            CURSOR,
            "is not a cursor this gateway made; follow the Bundle's next link",
        )
    })
}

/// `_format` may only ask for JSON.
pub fn check_format(value: &str) -> Result<(), ApiError> {
    match value {
        "json" | "application/json" | "application/fhir+json" => Ok(()),
        _ => Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "only JSON is served (_format=json)",
        )),
    }
}

/// `{base}/{path}?{pairs}`.
pub fn link(base: &str, path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return format!("{base}/{path}");
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}/{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search::type_def;

    fn def() -> &'static TypeDef {
        type_def("Observation").expect("served")
    }

    #[test]
    fn patient_forms() {
        for raw in ["abc", "Patient/abc", "http://gw/fhir/Patient/abc"] {
            assert_eq!(
                patient_id(raw, "http://gw/fhir", "patient").ok().as_deref(),
                Some("abc"),
                "{raw}"
            );
        }
        assert!(patient_id("Group/abc", "http://gw/fhir", "patient").is_err());
        assert!(patient_id("abc", "http://gw/fhir", "subject").is_err());
        assert!(patient_id("Patient/a b", "http://gw/fhir", "patient").is_err());
    }

    #[test]
    fn strict_and_lenient_unknown_parameters() {
        let pairs = vec![
            ("patient".to_owned(), "abc".to_owned()),
            ("colour".to_owned(), "blue".to_owned()),
        ];
        let lenient =
            type_search(def(), pairs.clone(), false, "http://gw/fhir", (50, 100)).expect("lenient");
        assert_eq!(lenient.used.ignored, vec!["colour"]);
        assert_eq!(lenient.used.pairs.len(), 1);
        let strict =
            type_search(def(), pairs, true, "http://gw/fhir", (50, 100)).expect_err("strict");
        assert_eq!(strict.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn count_is_capped_and_checked() {
        assert_eq!(page_size("5000", 100).ok(), Some(100));
        assert!(page_size("-1", 100).is_err());
        assert!(page_size("ten", 100).is_err());
    }

    #[test]
    fn sort_accepts_only_date_parameters() {
        assert!(SortSpec::parse(def(), "-date,_lastUpdated,_id").is_ok());
        assert!(SortSpec::parse(def(), "code").is_err());
        assert!(SortSpec::parse(def(), ",").is_err());
    }

    #[test]
    fn prefer_header() {
        let mut h = HeaderMap::new();
        assert!(!strict(&h));
        h.insert(
            "prefer",
            "return=minimal, handling=strict".parse().expect("header"),
        );
        assert!(strict(&h));
    }
}
