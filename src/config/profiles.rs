//! `[profiles]`: the FHIR profiles sources are held to.

use std::path::PathBuf;

use serde::Deserialize;

/// `[profiles]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// The directory of StructureDefinitions, ValueSets and CodeSystems (default
    /// `fhir-profiles`, beside the config file), loaded and compiled at start-up when any
    /// source's `conformance` is not `off`.
    pub dir: PathBuf,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("fhir-profiles"),
        }
    }
}
