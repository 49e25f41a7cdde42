//! Data-sharing agreements as policy files: their format and the checker behind
//! `concord policy check`.
//!
//! Each `policies/*.toml` file (but `labels.toml`) is one agreement, written for an
//! information-governance lead to read; `policies/labels.toml` maps clinical codes to HL7
//! sensitivity labels. [`PolicySet::load`] reads a directory and returns either the whole set
//! or every error found, each naming the file, the line and the field, so that one run of the
//! checker shows everything that needs fixing. Nothing is partly loaded: a set with one error
//! is not a set.
//!
//! The field names of `../shared/DESIGN.md` are the contract. Added here: `[agreement]
//! access` (`staff`, the default, or `patient` for the patient-access agreement, whose
//! recipients are the people themselves and, per rule, their carers by `relationships`).

mod agreement;
pub mod consent;
pub mod engine;
pub mod fhirpath;
mod labels;
pub mod live;
pub mod redact;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use agreement::{Agreement, Audience, Interaction, PURPOSES_OF_USE, Rule, Status};
pub use engine::{Acting, Caller, CallerPolicy, Consent, Explanation, Failure, Item, Permit};
pub use labels::{
    ACT_CODE, CONFIDENTIALITY, ICD10, LOCAL_LABEL_SYSTEM, LabelMap, Mapping, SENSITIVITY_LABELS,
    SNOMED, label_system, labels_in_meta,
};
pub use live::LivePolicies;

/// The name of the label map in a policy directory.
pub const LABELS_FILE: &str = "labels.toml";

/// Days before `valid_until` from which an agreement is reported as lapsing.
pub const LAPSE_WARNING_DAYS: i32 = 30;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when the problem has a place.
    pub line: Option<usize>,
    /// Dotted field, e.g. `rule[2].resources`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Why a policy set could not be loaded: every error found.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in the policy set:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<Finding>);

/// A checked set of agreements and the label map.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// The agreements, ordered by id (so nothing depends on file order).
    pub agreements: Vec<Agreement>,
    /// Codes to sensitivity labels.
    pub labels: LabelMap,
    /// SHA-256 over every file's name and bytes, in name order: which set was in force.
    pub hash: String,
    /// Things an IG lead should look at that do not stop the set loading.
    pub warnings: Vec<Finding>,
}

/// Records the line of a byte offset in a text.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One policy file's text, for findings that point into it.
pub(crate) struct PolicyFile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl PolicyFile<'_> {
    /// A finding at a byte offset of the file.
    pub(crate) fn at(&self, offset: usize, field: impl Into<String>, message: String) -> Finding {
        Finding {
            file: self.path.to_owned(),
            line: Some(line_of(self.text, offset)),
            field: field.into(),
            message,
        }
    }

    /// Deserialises the file; a TOML error (bad syntax, unknown field, wrong type) becomes
    /// the one finding, with its line.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<Finding>> {
        toml::from_str(self.text).map_err(|e| {
            vec![Finding {
                file: self.path.to_owned(),
                line: e.span().map(|s| line_of(self.text, s.start)),
                field: String::new(),
                message: e.message().to_owned(),
            }]
        })
    }
}

/// The `*.toml` files of a policy directory, in name order.
fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// SHA-256 over each file's name and bytes, in the order given, lower-case hex.
fn hash_texts<'a>(files: impl Iterator<Item = (&'a Path, &'a [u8])>) -> String {
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (path, bytes) in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update(&[0]);
        hasher.update(bytes);
        hasher.update(&[0]);
    }
    crate::hex(hasher.finish().as_ref())
}

fn is_labels_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == LABELS_FILE)
}

impl PolicySet {
    /// The hash [`PolicySet::hash`] would have for the files now in `dir`, without checking
    /// them: how a running gateway notices that the files changed.
    pub fn files_hash(dir: &Path) -> std::io::Result<String> {
        let mut texts = Vec::new();
        for path in list_files(dir)? {
            let bytes = std::fs::read(&path)?;
            texts.push((path, bytes));
        }
        Ok(hash_texts(
            texts.iter().map(|(p, b)| (p.as_path(), b.as_slice())),
        ))
    }

    /// A number that changes with the label map (from the set's hash), for caches of labelled
    /// resources.
    pub fn labels_key(&self) -> u64 {
        u64::from_str_radix(self.hash.get(..16).unwrap_or_default(), 16).unwrap_or_default()
    }

    /// Reads and checks every `*.toml` file in `dir`, as of `today`.
    pub fn load(dir: &Path, today: jiff::civil::Date) -> Result<PolicySet, PolicyErrors> {
        let fail = |message: String| {
            PolicyErrors(vec![Finding {
                file: dir.to_owned(),
                line: None,
                field: String::new(),
                message,
            }])
        };
        let files =
            list_files(dir).map_err(|e| fail(format!("cannot read the policy directory: {e}")))?;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut texts = Vec::new();
        for path in &files {
            match std::fs::read_to_string(path) {
                Ok(text) => texts.push((path.clone(), text)),
                Err(e) => errors.push(Finding {
                    file: path.clone(),
                    line: None,
                    field: String::new(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        let labels = match texts.iter().find(|(p, _)| is_labels_file(p)) {
            Some((path, text)) => match LabelMap::parse(path, text) {
                Ok(map) => map,
                Err(found) => {
                    errors.extend(found);
                    LabelMap::default()
                }
            },
            None => LabelMap::default(),
        };
        let mut agreements: Vec<Agreement> = Vec::new();
        let mut first_seen: HashMap<String, PathBuf> = HashMap::new();
        for (path, text) in &texts {
            if is_labels_file(path) {
                continue;
            }
            match Agreement::parse(path, text, &labels, today) {
                Ok((agreement, found)) => {
                    warnings.extend(found);
                    if let Some(other) = first_seen.get(&*agreement.id) {
                        errors.push(Finding {
                            file: path.clone(),
                            line: Some(agreement.id_line),
                            field: "agreement.id".into(),
                            message: format!(
                                "`{}` is also the id of the agreement in {}",
                                agreement.id,
                                other.display()
                            ),
                        });
                    } else {
                        first_seen.insert(agreement.id.to_string(), path.clone());
                        agreements.push(agreement);
                    }
                }
                Err(found) => errors.extend(found),
            }
        }
        if texts.iter().all(|(p, _)| is_labels_file(p)) && errors.is_empty() {
            errors.push(Finding {
                file: dir.to_owned(),
                line: None,
                field: String::new(),
                message: "holds no agreement (*.toml): nothing could ever be disclosed".into(),
            });
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        agreements.sort_by(|a, b| a.id.cmp(&b.id));
        let hash = hash_texts(texts.iter().map(|(p, t)| (p.as_path(), t.as_bytes())));
        Ok(PolicySet {
            agreements,
            labels,
            hash,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests;
