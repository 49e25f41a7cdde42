//! One agreement: the checked agreement and its rules. Reading a file, and every check that
//! does not need the other files, is in `parse`.

use std::path::Path;
use std::sync::Arc;

use jiff::civil::Date;
use serde::Deserialize;

use super::Finding;
use super::labels::LabelMap;

mod parse;

/// HL7 v3 PurposeOfUse codes a rule may name.
pub const PURPOSES_OF_USE: &[&str] = &[
    "TREAT",
    "ETREAT",
    "BTG",
    "CAREMGT",
    "CLINTRL",
    "COC",
    "POPHLTH",
    "HACCRED",
    "HCOMPL",
    "HDECD",
    "HDIRECT",
    "HLEGAL",
    "HOUTCOMS",
    "HPRGRP",
    "HQUALIMP",
    "HSYSADMIN",
    "PATADMIN",
    "PATSFTY",
    "PERFMSR",
    "RECORDMGT",
    "TRAIN",
    "HPAYMT",
    "HRESCH",
    "CLINTRCH",
    "PATRQT",
    "FAMRQT",
    "PWATRNY",
    "SUPNWK",
    "PUBHLTH",
    "DISASTER",
    "THREAT",
    "HMARKT",
];

/// What a rule lets a caller do with a type: the `interactions` key of a rule (FHIR's
/// interaction names). A rule that leaves it out permits `read` and `search` only, so writes
/// are denied unless a rule names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// Read one resource by id.
    Read,
    /// Search a type, or `$everything`.
    Search,
    /// Create a resource (`POST /fhir/{type}`).
    Create,
    /// Update a resource (`PUT /fhir/{type}/{id}`).
    Update,
}

impl Interaction {
    /// Every interaction, in the order the file names them.
    pub const ALL: [Interaction; 4] = [
        Interaction::Read,
        Interaction::Search,
        Interaction::Create,
        Interaction::Update,
    ];

    /// What a rule permits when it names no interactions: reading only.
    pub const DEFAULT: [Interaction; 2] = [Interaction::Read, Interaction::Search];

    /// Its name in agreement files (and FHIR's).
    pub fn name(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Search => "search",
            Interaction::Create => "create",
            Interaction::Update => "update",
        }
    }

    /// The interaction with this name.
    pub fn parse(name: &str) -> Option<Interaction> {
        Interaction::ALL.into_iter().find(|i| i.name() == name)
    }

    /// True for create and update.
    pub fn is_write(self) -> bool {
        matches!(self, Interaction::Create | Interaction::Update)
    }
}

/// Where an agreement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being written; never in force.
    Draft,
    /// In force between `valid_from` and `valid_until`.
    Active,
    /// Stopped for now; not in force.
    Suspended,
    /// Ended; not in force.
    Retired,
}

/// Who an agreement discloses to: the `access` key of its `[agreement]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Staff of the recipient organisations.
    #[default]
    Staff,
    /// The people themselves (and their carers, where a rule names the relationship).
    Patient,
}

/// A checked agreement.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Its id (shared with every audit record that names it).
    pub id: Arc<str>,
    /// Line of the id (for errors that involve other files).
    pub id_line: usize,
    /// Title.
    pub title: String,
    /// Version.
    pub version: String,
    /// Status.
    pub status: Status,
    /// Who it discloses to: staff, or the people themselves (the file's `access` key).
    pub access: Audience,
    /// Legal bases.
    pub legal_basis: Vec<String>,
    /// First day in force.
    pub valid_from: Date,
    /// Last day in force.
    pub valid_until: Date,
    /// When it must next be reviewed.
    pub review_by: Option<Date>,
    /// Who owns it.
    pub owner: String,
    /// ODS codes of the organisations whose records it covers.
    pub disclosers: Vec<String>,
    /// ODS codes of the organisations whose staff may see them (staff agreements).
    pub recipients: Vec<String>,
    /// Its rules, in file order.
    pub rules: Vec<Rule>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its id, unique in the agreement (shared with every audit record that names it).
    pub id: Arc<str>,
    /// PurposeOfUse codes it serves.
    pub purpose_of_use: Vec<String>,
    /// Roles it applies to (staff agreements).
    pub roles: Vec<String>,
    /// Carers' relationships it applies to (patient-access agreements); empty: the person only.
    pub relationships: Vec<String>,
    /// Resource types, or `*`.
    pub resources: Vec<String>,
    /// What it permits doing with them ([`Interaction::DEFAULT`] when the file says nothing).
    pub interactions: Vec<Interaction>,
    /// Labels never disclosed under it.
    pub exclude_labels: Vec<String>,
    /// The person must be known to the user's own organisation.
    pub requires_care_relationship: bool,
    /// FHIRPath condition on the resource (see [`super::fhirpath`] for what is supported).
    pub where_: Option<super::fhirpath::Condition>,
    /// Element paths removed before disclosure.
    pub redact: Vec<String>,
    /// Patient-access rules that permit `create`: the source (its config id) a new resource
    /// they permit goes to when it belongs to no plan (`write_to`).
    pub write_to: Option<String>,
}

impl Rule {
    /// True when the rule permits one of `wanted`.
    pub fn permits_any(&self, wanted: &[Interaction]) -> bool {
        self.interactions.iter().any(|i| wanted.contains(i))
    }
}

impl Agreement {
    /// True when it is in force on `day`.
    pub fn in_force(&self, day: Date) -> bool {
        self.status == Status::Active && self.valid_from <= day && day <= self.valid_until
    }

    /// Parses and checks one file (`path` only names it in findings); warnings on success,
    /// every error on failure. Public for the fuzz targets (`fuzz/`); the gateway loads whole
    /// directories with `PolicySet::load`, which also checks ids across files.
    pub fn parse(
        path: &Path,
        text: &str,
        labels: &LabelMap,
        today: Date,
    ) -> Result<(Agreement, Vec<Finding>), Vec<Finding>> {
        parse::agreement(path, text, labels, today)
    }
}
