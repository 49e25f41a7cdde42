//! `policies/labels.toml`: which clinical codes make a resource sensitive, and how.
//!
//! ```toml
//! local_labels = ["SAFEGUARDING"]      # labels of our own beside HL7's
//!
//! [[map]]
//! label = "HIV"                        # an HL7 v3 sensitivity label (or a local one)
//! system = "http://snomed.info/sct"
//! codes = ["86406008"]
//!
//! [[map]]
//! label = "PSY"
//! system = "http://hl7.org/fhir/sid/icd-10"
//! ranges = ["F20-F29"]                 # ICD-10 only: every code from F20 to F29.9
//!
//! [[map]]
//! label = "SAFEGUARDING"
//! system = "http://terminology.hl7.org/CodeSystem/flag-category"
//! codes = ["safety"]                   # any other code system: exact codes
//! ```
//!
//! A resource carries a label when any coding anywhere in it (its code, category, type,
//! reason, medication, …, but not its `meta`) has a mapped system and code, or when its
//! source already put the label in `meta.security`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{Finding, PolicyFile};

/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// ICD-10 (WHO and the UK edition).
pub const ICD10: &[&str] = &[
    "http://hl7.org/fhir/sid/icd-10",
    "http://hl7.org/fhir/sid/icd-10-uk",
];

/// HL7 v3 ActCode sensitivity labels (InformationSensitivityPolicy) and confidentiality codes
/// agreements may name.
pub const SENSITIVITY_LABELS: &[&str] = &[
    "ETH", "GDIS", "HIV", "MST", "SCA", "SDV", "SEX", "SPI", "BH", "COGN", "DVD", "EMOTDIS", "MH",
    "PSY", "PSYTHPN", "SUD", "SICKLE", "STD", "TBOO", "PRS", "LDS", "R", "V",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    local_labels: Vec<Spanned<String>>,
    #[serde(default)]
    map: Vec<Spanned<MapEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapEntry {
    label: Spanned<String>,
    system: Spanned<String>,
    #[serde(default)]
    codes: Vec<Spanned<String>>,
    #[serde(default)]
    ranges: Vec<Spanned<String>>,
}

/// One mapping: codes of one system to one label.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The label.
    pub label: String,
    /// The code system.
    pub system: String,
    /// Exact codes.
    pub codes: HashSet<String>,
    /// ICD-10 ranges, inclusive, by their three-character category.
    pub ranges: Vec<(String, String)>,
}

/// The checked label map.
#[derive(Debug, Clone, Default)]
pub struct LabelMap {
    /// The mappings, in file order.
    pub mappings: Vec<Mapping>,
    /// Labels of our own beside HL7's.
    pub local_labels: Vec<String>,
    /// Mapping indexes by code system.
    by_system: HashMap<String, Vec<usize>>,
}

/// The code system of HL7 sensitivity labels in `meta.security`.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// The code system of the confidentiality codes `R` and `V`.
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The code system of local labels (those of `local_labels`) in `meta.security`.
pub const LOCAL_LABEL_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/sensitivity-label";

/// The system a label is written with in `meta.security`.
pub fn label_system(label: &str) -> &'static str {
    match label {
        "R" | "V" => CONFIDENTIALITY,
        l if SENSITIVITY_LABELS.contains(&l) => ACT_CODE,
        _ => LOCAL_LABEL_SYSTEM,
    }
}

/// The labels in a resource's `meta.security` (HL7 labels and local ones), in order.
pub fn labels_in_meta(resource: &Value) -> impl Iterator<Item = &str> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let system = c.get("system")?.as_str()?;
            let code = c.get("code")?.as_str()?;
            let known = match system {
                ACT_CODE | CONFIDENTIALITY => SENSITIVITY_LABELS.contains(&code),
                LOCAL_LABEL_SYSTEM => true,
                _ => false,
            };
            known.then_some(code)
        })
}

impl Mapping {
    fn matches(&self, code: &str) -> bool {
        if self.codes.contains(code) {
            return true;
        }
        let category = code.get(..3).unwrap_or(code);
        self.ranges
            .iter()
            .any(|(from, to)| from.as_str() <= category && category <= to.as_str())
    }
}

/// An absolute URI naming a code system: `http(s)://…`, `urn:oid:…` or `urn:uuid:…`.
fn is_system_uri(system: &str) -> bool {
    let rest = ["http://", "https://", "urn:oid:", "urn:uuid:"]
        .iter()
        .find_map(|p| system.strip_prefix(p));
    rest.is_some_and(|r| !r.is_empty() && !r.bytes().any(|b| b.is_ascii_whitespace()))
}

fn is_icd10_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() >= 3
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && match code.get(3..) {
            Some("") | None => true,
            Some(rest) => {
                rest.strip_prefix('.')
                    .unwrap_or(rest)
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric())
                    && rest.len() <= 5
            }
        }
}

impl LabelMap {
    /// The labels a resource carries: those its codings map to, and HL7 (or declared local)
    /// labels its source already put in `meta.security`; sorted, each once.
    pub fn labels_of(&self, resource: &Value) -> Vec<String> {
        let mut found: Vec<String> = labels_in_meta(resource)
            .filter(|l| self.is_known(l))
            .map(str::to_owned)
            .collect();
        if let Some(obj) = resource.as_object() {
            for (key, child) in obj {
                if key != "meta" {
                    self.scan(child, &mut found, 0);
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    fn scan(&self, value: &Value, found: &mut Vec<String>, depth: usize) {
        // FHIR resources are not deep; a hostile one could be. Labels below this depth are
        // not looked for (normalised resources have passed the JSON parser's own limit).
        if depth > 64 {
            return;
        }
        match value {
            Value::Object(obj) => {
                if let (Some(Value::String(system)), Some(Value::String(code))) =
                    (obj.get("system"), obj.get("code"))
                    && let Some(indexes) = self.by_system.get(system.as_str())
                {
                    for &i in indexes {
                        let mapping = &self.mappings[i];
                        if mapping.matches(code) && !found.contains(&mapping.label) {
                            found.push(mapping.label.clone());
                        }
                    }
                }
                for child in obj.values() {
                    self.scan(child, found, depth + 1);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.scan(i, found, depth + 1)),
            _ => {}
        }
    }

    /// Puts each label in `meta.security` (with its system) unless it is there already.
    pub fn stamp(obj: &mut Map<String, Value>, labels: &[String]) {
        for label in labels {
            super::redact::add_security(obj, label_system(label), label);
        }
    }

    /// True for an HL7 label or one this map declares.
    pub fn is_known(&self, label: &str) -> bool {
        SENSITIVITY_LABELS.contains(&label) || self.local_labels.iter().any(|l| l == label)
    }

    /// Parses and checks the file's text (`path` only names it in findings). Public for the
    /// fuzz targets (`fuzz/`); the gateway loads whole directories with `PolicySet::load`.
    pub fn parse(path: &Path, text: &str) -> Result<LabelMap, Vec<Finding>> {
        let source = PolicyFile { path, text };
        let file: File = source.parse()?;
        let mut errors = Errors {
            source,
            found: Vec::new(),
        };
        let mut map = LabelMap {
            local_labels: local_labels(&file.local_labels, &mut errors),
            ..LabelMap::default()
        };
        for (i, entry) in file.map.iter().enumerate() {
            if let Some(mapping) = map.mapping(i, entry, &mut errors) {
                map.mappings.push(mapping);
            }
        }
        map.index_by_system();
        if errors.found.is_empty() {
            Ok(map)
        } else {
            Err(errors.found)
        }
    }

    /// Checks the `i`th `[[map]]` entry: its label (HL7 or one of this map's local labels),
    /// its system, codes and ranges. Gives the mapping when its system is a URI (even if
    /// other parts of it were wrong and reported), and `None` when it is not.
    fn mapping(&self, i: usize, entry: &Spanned<MapEntry>, errors: &mut Errors) -> Option<Mapping> {
        let at = entry.span().start;
        let entry = entry.get_ref();
        let field = |name: &str| format!("map[{i}].{name}");
        let label = entry.label.get_ref();
        if !self.is_known(label) {
            errors.push(
                entry.label.span().start,
                field("label"),
                format!(
                    "`{label}` is not an HL7 sensitivity label ({}) nor in local_labels",
                    SENSITIVITY_LABELS.join(", ")
                ),
            );
        }
        let system = entry.system.get_ref();
        if !is_system_uri(system) {
            errors.push(
                entry.system.span().start,
                field("system"),
                format!(
                    "`{system}` is not a code system URI (such as {SNOMED} or {})",
                    ICD10[0]
                ),
            );
            return None;
        }
        if entry.codes.is_empty() && entry.ranges.is_empty() {
            errors.push(at, field("codes"), "needs codes or ranges".into());
        }
        let scheme = Scheme::of(system);
        Some(Mapping {
            label: label.clone(),
            system: system.clone(),
            codes: codes(i, &entry.codes, scheme, errors),
            ranges: ranges(i, &entry.ranges, scheme, errors),
        })
    }

    /// Fills in `by_system` from `mappings`: each system's mapping indexes, in file order.
    fn index_by_system(&mut self) {
        for (i, mapping) in self.mappings.iter().enumerate() {
            self.by_system
                .entry(mapping.system.clone())
                .or_default()
                .push(i);
        }
    }
}

/// The errors found in one label file so far, in the order found.
struct Errors<'a> {
    /// The file, to place each error in.
    source: PolicyFile<'a>,
    /// The errors.
    found: Vec<Finding>,
}

impl Errors<'_> {
    /// Records an error about `field`, at byte `offset` of the file.
    fn push(&mut self, offset: usize, field: String, message: String) {
        let finding = self.source.at(offset, field, message);
        self.found.push(finding);
    }
}

/// How a mapping's code system writes its codes, which decides the codes it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// ICD-10 (either edition): codes such as `F20.1`, and ranges.
    Icd10,
    /// SNOMED CT: 6 to 18 digits.
    Snomed,
    /// Any other system: any text without surrounding spaces.
    Other,
}

impl Scheme {
    /// The scheme of a code system URI.
    fn of(system: &str) -> Scheme {
        if ICD10.contains(&system) {
            Scheme::Icd10
        } else if system == SNOMED {
            Scheme::Snomed
        } else {
            Scheme::Other
        }
    }

    /// True when `code` is written as this scheme's codes are.
    fn accepts(self, code: &str) -> bool {
        match self {
            Scheme::Icd10 => is_icd10_code(code),
            Scheme::Snomed => {
                (6..=18).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
            }
            Scheme::Other => !code.trim().is_empty() && code.trim() == code,
        }
    }

    /// The scheme's name in "is not a … code".
    fn code_name(self) -> &'static str {
        match self {
            Scheme::Icd10 => "ICD-10",
            Scheme::Snomed => "SNOMED CT",
            Scheme::Other => "usable",
        }
    }
}

/// Checks `local_labels`: each must be upper-case letters, digits and `-`, and not an HL7
/// label. Gives the good ones, in file order.
fn local_labels(labels: &[Spanned<String>], errors: &mut Errors) -> Vec<String> {
    let mut good = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let name = label.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            errors.push(
                label.span().start,
                format!("local_labels[{i}]"),
                format!("`{name}` must be upper-case letters, digits and -"),
            );
        } else if SENSITIVITY_LABELS.contains(&name.as_str()) {
            errors.push(
                label.span().start,
                format!("local_labels[{i}]"),
                format!("`{name}` is an HL7 label already"),
            );
        } else {
            good.push(name.clone());
        }
    }
    good
}

/// Checks the codes of the `i`th `[[map]]` entry against its scheme. Gives every code, the
/// bad ones too (they were reported).
fn codes(
    i: usize,
    codes: &[Spanned<String>],
    scheme: Scheme,
    errors: &mut Errors,
) -> HashSet<String> {
    let mut all = HashSet::new();
    for (j, code) in codes.iter().enumerate() {
        let c = code.get_ref();
        if !scheme.accepts(c) {
            errors.push(
                code.span().start,
                format!("map[{i}].codes[{j}]"),
                format!("`{c}` is not a {} code", scheme.code_name()),
            );
        }
        all.insert(c.clone());
    }
    all
}

/// Checks the ranges of the `i`th `[[map]]` entry: three-character ICD-10 categories,
/// `from-to` with `from` not after `to`, and only for ICD-10. Gives the good ones, in file
/// order.
fn ranges(
    i: usize,
    ranges: &[Spanned<String>],
    scheme: Scheme,
    errors: &mut Errors,
) -> Vec<(String, String)> {
    let icd = scheme == Scheme::Icd10;
    let mut good = Vec::new();
    for (j, range) in ranges.iter().enumerate() {
        let r = range.get_ref();
        let parsed = r.split_once('-').filter(|(from, to)| {
            from.len() == 3
                && to.len() == 3
                && is_icd10_code(from)
                && is_icd10_code(to)
                && from <= to
        });
        match parsed {
            Some((from, to)) if icd => good.push((from.to_owned(), to.to_owned())),
            _ => errors.push(
                range.span().start,
                format!("map[{i}].ranges[{j}]"),
                if icd {
                    format!("`{r}` is not an ICD-10 range such as F20-F29")
                } else {
                    "ranges are for ICD-10 only".into()
                },
            ),
        }
    }
    good
}
