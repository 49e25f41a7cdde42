//! The profiles Concord holds its sources to (`fhir-profiles/`), compiled once at start-up,
//! and the checker that tells, for one resource, every way it departs from them.
//!
//! [`Profiles::load`] reads a directory laid out as `fhir-profiles/README.md` describes:
//!
//! - `base/r4-structure.json`: per served resource type and reachable datatype, its elements,
//!   their types, which are arrays, choice groups, base min 1, required bindings and reference
//!   targets (generated from the official R4 JSON schema and the R4 StructureDefinitions);
//! - every other `*.json` file: a profile (StructureDefinition in differential form, derived
//!   from a core resource type), a ValueSet or a CodeSystem.
//!
//! Compiling turns each profile's differential into a tree of constraint nodes
//! (`profiles/compile.rs`: cardinality, fixed and pattern values, required bindings,
//! reference targets, slices) and expands each value set from the code systems present into
//! hash sets. [`Profiles::check`] then walks a resource once, base structure and profile side
//! by side, and allocates little but the problems it reports.
//!
//! What is checked, with the [`Constraint`] each failure is reported under:
//!
//! | rule | what |
//! | --- | --- |
//! | `structure` | `resourceType` a served type; every element known to base R4; arrays where R4 has arrays and single values elsewhere; no empty arrays or `null`s; one value per choice element |
//! | `format` | primitives: JSON type and lexical form (`date`, `dateTime`, `instant`, `time`, `code`, `id`, `uri`, `integer`, …; impossible dates refused) |
//! | `cardinality` | base R4 min 1; the profile's min and max, per slice too |
//! | `fixed` | the profile's `fixed[x]` (exact) and `pattern[x]` (contained) values |
//! | `binding` | required bindings only: `code`, `Coding`, `CodeableConcept` against the value set |
//! | `reference` | `Reference.reference` and `Reference.type` against the allowed target types |
//!
//! Not supported (documented here so that nothing is silently half-checked):
//!
//! - slicing discriminators other than `value` or `pattern` on a path whose slice gives a
//!   `fixed`/`pattern` value (e.g. `identifier` by `system`), and extension slices, which are
//!   matched by `url`; other slicings keep their element constraints but slices are not told
//!   apart (their own constraints are not applied);
//! - extension contents: extensions are checked as base R4 `Extension`s, not against their
//!   definitions, which are not loaded;
//! - invariants (`constraint` FHIRPath), `maxLength`, `minValue`/`maxValue`, `mustSupport`;
//! - bindings weaker than `required`; value sets are expanded from `compose.include` of code
//!   systems present in the directory: an include by `filter`, or of a whole system that is not
//!   present (SNOMED CT, BCP 47), can only be checked for the system; `exclude` removes listed
//!   codes only;
//! - profiles derived from other profiles (a load error); references are checked for their
//!   target *type*, not the target's profile; contained resources get the base check only.
//!
//! Which profile applies: the first `meta.profile` that names a loaded profile of the
//! resource's type; otherwise the type's default profile, the first of its type in file-name
//! order (the UK Core one in `fhir-profiles/`). A type with no profile gets the base check.

mod base;
mod check;
mod compile;
mod format;
mod terminology;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use base::Structure;
use compile::Node;
use terminology::Terminology;

pub use crate::fhir::conformance::{Constraint, Departure};

/// The base structure file, relative to the profiles directory.
pub const STRUCTURE_FILE: &str = "base/r4-structure.json";

/// The profiles directory `concord profile check` uses when not told otherwise (relative to
/// the working directory).
pub const DEFAULT_DIR: &str = "fhir-profiles";

/// Why a profiles directory cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory cannot be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not JSON.
    #[error("`{}` is not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A file is JSON but not what it should be.
    #[error("`{}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An element of a profile's differential cannot be compiled.
    #[error("`{}`: element `{element}`: {message}", path.display())]
    Element {
        /// The profile's file.
        path: PathBuf,
        /// The element id, e.g. `Patient.identifier:nhsNumber.system`.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// A required binding names a value set that is not in the directory.
    #[error("value set `{url}` (required by {used_by}) is not in the profiles directory")]
    MissingValueSet {
        /// The value set's canonical URL.
        url: String,
        /// The element that binds it.
        used_by: String,
    },
}

/// One compiled profile.
#[derive(Debug)]
pub struct Profile {
    /// Canonical URL.
    pub url: String,
    /// The resource type it constrains.
    pub resource_type: String,
    root: Node,
}

/// Everything in a profiles directory, compiled.
#[derive(Debug)]
pub struct Profiles {
    base: Structure,
    terminology: Terminology,
    profiles: Vec<Profile>,
    by_url: HashMap<String, usize>,
    default_for: HashMap<String, usize>,
}

impl Profiles {
    /// Loads and compiles a profiles directory (see the module documentation).
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let structure_path = dir.join(STRUCTURE_FILE);
        let mut base = Structure::from_json(&structure_path, &read_json(&structure_path)?)?;
        let mut files = Vec::new();
        collect_json(dir, &structure_path, &mut files)?;
        files.sort();
        let mut definitions = Vec::new();
        let mut value_sets = Vec::new();
        let mut code_systems = Vec::new();
        for path in files {
            let json = read_json(&path)?;
            match json.get("resourceType").and_then(Value::as_str) {
                Some("StructureDefinition") => definitions.push((path, json)),
                Some("ValueSet") => value_sets.push((path, json)),
                Some("CodeSystem") => code_systems.push((path, json)),
                other => {
                    return Err(LoadError::Invalid {
                        path,
                        message: format!(
                            "expected a StructureDefinition, ValueSet or CodeSystem, found `{}`",
                            other.unwrap_or("no resourceType")
                        ),
                    });
                }
            }
        }
        let mut terminology = Terminology::load(&value_sets, &code_systems)?;
        base.resolve_bindings(&mut terminology)?;
        let mut profiles = Vec::new();
        let mut by_url = HashMap::new();
        let mut default_for = HashMap::new();
        for (path, json) in &definitions {
            let profile = compile::profile(path, json, &base, &mut terminology)?;
            if by_url.contains_key(&profile.url) {
                return Err(LoadError::Invalid {
                    path: path.clone(),
                    message: format!("a second profile with the url `{}`", profile.url),
                });
            }
            by_url.insert(profile.url.clone(), profiles.len());
            default_for
                .entry(profile.resource_type.clone())
                .or_insert(profiles.len());
            profiles.push(profile);
        }
        Ok(Profiles {
            base,
            terminology,
            profiles,
            by_url,
            default_for,
        })
    }

    /// The compiled profiles, in file-name order.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The resource types Concord checks (those in the base structure).
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.base.resource_names()
    }

    /// The profile a resource is checked against: its first `meta.profile` that is loaded and
    /// of its type, else its type's default profile.
    pub fn profile_for(&self, resource: &Value) -> Option<&Profile> {
        let resource_type = resource.get("resourceType")?.as_str()?;
        let claimed = resource
            .pointer("/meta/profile")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|url| self.by_url.get(url.split('|').next().unwrap_or(url)))
            .map(|&i| &self.profiles[i])
            .find(|p| p.resource_type == resource_type);
        claimed.or_else(|| {
            self.default_for
                .get(resource_type)
                .map(|&i| &self.profiles[i])
        })
    }

    /// Every problem of one resource, in document order (cardinality problems of an object
    /// after its elements). Empty when the resource conforms. Never panics.
    pub fn check(&self, resource: &Value) -> Vec<Departure> {
        let profile = self.profile_for(resource).map(|p| &p.root);
        check::resource(&self.base, &self.terminology, resource, profile)
    }
}

fn read_json(path: &Path) -> Result<Value, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LoadError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Every `*.json` file under `dir` but the structure file.
fn collect_json(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read = |path: &Path| {
        std::fs::read_dir(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })
    };
    for entry in read(dir)? {
        let entry = entry.map_err(|source| LoadError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            collect_json(&path, skip, out)?;
        } else if path.extension().is_some_and(|e| e == "json") && path != skip {
            out.push(path);
        }
    }
    Ok(())
}
