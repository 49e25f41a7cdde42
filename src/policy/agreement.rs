//! One agreement file: its shape and every check that does not need the other files.

use std::collections::HashSet;
use std::path::Path;

use jiff::civil::Date;
use serde::Deserialize;
use toml::Spanned;

use super::labels::LabelMap;
use super::{Finding, LAPSE_WARNING_DAYS, PolicyFile, line_of};

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

/// Who an agreement discloses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Staff of the recipient organisations.
    #[default]
    Staff,
    /// The people themselves (and their carers, where a rule names the relationship).
    Patient,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agreement: Spanned<Header>,
    parties: Spanned<Parties>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    id: Spanned<String>,
    title: Spanned<String>,
    version: Spanned<String>,
    status: Spanned<Status>,
    #[serde(default)]
    access: Access,
    legal_basis: Spanned<Vec<String>>,
    valid_from: Spanned<String>,
    valid_until: Spanned<String>,
    review_by: Option<Spanned<String>>,
    owner: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parties {
    disclosers: Spanned<Vec<Spanned<String>>>,
    recipients: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: Spanned<String>,
    purpose_of_use: Spanned<Vec<Spanned<String>>>,
    roles: Option<Spanned<Vec<String>>>,
    relationships: Option<Spanned<Vec<String>>>,
    resources: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    exclude_labels: Vec<Spanned<String>>,
    requires_care_relationship: Option<Spanned<bool>>,
    #[serde(rename = "where")]
    where_: Option<Spanned<String>>,
    #[serde(default)]
    redact: Vec<Spanned<String>>,
}

/// A checked agreement.
#[derive(Debug, Clone)]
pub struct Agreement {
    /// Its id.
    pub id: String,
    /// Line of the id (for errors that involve other files).
    pub id_line: usize,
    /// Title.
    pub title: String,
    /// Version.
    pub version: String,
    /// Status.
    pub status: Status,
    /// Staff or patient access.
    pub access: Access,
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
    /// Its id, unique in the agreement.
    pub id: String,
    /// PurposeOfUse codes it serves.
    pub purpose_of_use: Vec<String>,
    /// Roles it applies to (staff agreements).
    pub roles: Vec<String>,
    /// Carers' relationships it applies to (patient-access agreements); empty: the person only.
    pub relationships: Vec<String>,
    /// Resource types, or `*`.
    pub resources: Vec<String>,
    /// Labels never disclosed under it.
    pub exclude_labels: Vec<String>,
    /// The person must be known to the user's own organisation.
    pub requires_care_relationship: bool,
    /// FHIRPath condition on the resource (see [`super::fhirpath`] for what is supported).
    pub where_: Option<super::fhirpath::Condition>,
    /// Element paths removed before disclosure.
    pub redact: Vec<String>,
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
        let source = PolicyFile { path, text };
        let file: File = source.parse()?;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let at = |offset: usize, field: &str, message: String| source.at(offset, field, message);
        let head = file.agreement.get_ref();
        let id = head.id.get_ref();
        if id.len() > 64 || !crate::fhir::is_slug(id) {
            errors.push(at(
                head.id.span().start,
                "agreement.id",
                format!("`{id}` must be 1 to 64 characters of a-z, 0-9 and -"),
            ));
        }
        for (value, field) in [
            (&head.title, "agreement.title"),
            (&head.version, "agreement.version"),
            (&head.owner, "agreement.owner"),
        ] {
            if value.get_ref().trim().is_empty() {
                errors.push(at(value.span().start, field, "must not be empty".into()));
            }
        }
        if head
            .legal_basis
            .get_ref()
            .iter()
            .all(|b| b.trim().is_empty())
        {
            errors.push(at(
                head.legal_basis.span().start,
                "agreement.legal_basis",
                "names no legal basis".into(),
            ));
        }
        let mut date = |value: &Spanned<String>, field: &str| match value.get_ref().parse::<Date>()
        {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push(at(
                    value.span().start,
                    field,
                    format!("`{}` is not a date (YYYY-MM-DD)", value.get_ref()),
                ));
                None
            }
        };
        let valid_from = date(&head.valid_from, "agreement.valid_from");
        let valid_until = date(&head.valid_until, "agreement.valid_until");
        let review_by = head
            .review_by
            .as_ref()
            .map(|r| date(r, "agreement.review_by"));
        if let (Some(from), Some(until)) = (valid_from, valid_until)
            && until < from
        {
            errors.push(at(
                head.valid_until.span().start,
                "agreement.valid_until",
                format!("{until} is before valid_from {from}"),
            ));
        }
        let status = *head.status.get_ref();
        if status == Status::Active {
            if let Some(Some(review)) = review_by
                && review < today
            {
                warnings.push(at(
                    head.review_by.as_ref().map_or(0, |r| r.span().start),
                    "agreement.review_by",
                    format!("the review was due on {review}"),
                ));
            }
            if let Some(until) = valid_until
                && until >= today
                && until <= today.saturating_add(jiff::Span::new().days(LAPSE_WARNING_DAYS))
            {
                warnings.push(at(
                    head.valid_until.span().start,
                    "agreement.valid_until",
                    format!("lapses on {until}, within {LAPSE_WARNING_DAYS} days"),
                ));
            }
        }

        let parties = file.parties.get_ref();
        let ods_list = |list: Option<&Spanned<Vec<Spanned<String>>>>,
                        field: &str,
                        errors: &mut Vec<Finding>| {
            let Some(list) = list else {
                return Vec::new();
            };
            for (i, code) in list.get_ref().iter().enumerate() {
                if !crate::fhir::is_ods_code(code.get_ref()) {
                    errors.push(at(
                        code.span().start,
                        &format!("{field}[{i}]"),
                        format!(
                            "`{}` is not an ODS code (3 to 10 upper-case letters and digits)",
                            code.get_ref()
                        ),
                    ));
                }
            }
            list.get_ref()
                .iter()
                .map(|c| c.get_ref().clone())
                .collect::<Vec<_>>()
        };
        let disclosers = ods_list(Some(&parties.disclosers), "parties.disclosers", &mut errors);
        let recipients = ods_list(
            parties.recipients.as_ref(),
            "parties.recipients",
            &mut errors,
        );
        if disclosers.is_empty() {
            errors.push(at(
                parties.disclosers.span().start,
                "parties.disclosers",
                "names no organisation: the agreement could never disclose anything".into(),
            ));
        }
        match head.access {
            Access::Staff if recipients.is_empty() => errors.push(at(
                file.parties.span().start,
                "parties.recipients",
                "names no organisation: the agreement could never disclose anything".into(),
            )),
            Access::Patient if !recipients.is_empty() => errors.push(at(
                parties.recipients.as_ref().map_or(0, |r| r.span().start),
                "parties.recipients",
                "a patient-access agreement discloses to the people themselves; leave recipients out".into(),
            )),
            _ => {}
        }

        if file.rules.is_empty() {
            errors.push(at(
                file.agreement.span().start,
                "rule",
                "the agreement has no [[rule]]: it could never disclose anything".into(),
            ));
        }
        let mut rule_ids = HashSet::new();
        let mut rules = Vec::new();
        for (i, rule) in file.rules.iter().enumerate() {
            let rule_at = rule.span().start;
            let rule = rule.get_ref();
            let empty = Vec::new();
            let roles = rule.roles.as_ref().map_or(&empty, |r| r.get_ref());
            let roles_at = rule.roles.as_ref().map_or(rule_at, |r| r.span().start);
            let relationships = rule.relationships.as_ref().map_or(&empty, |r| r.get_ref());
            let relationships_at = rule
                .relationships
                .as_ref()
                .map_or(rule_at, |r| r.span().start);
            let care = rule
                .requires_care_relationship
                .as_ref()
                .is_some_and(|c| *c.get_ref());
            let care_at = rule
                .requires_care_relationship
                .as_ref()
                .map_or(rule_at, |c| c.span().start);
            let field = |name: &str| format!("rule[{i}].{name}");
            let rid = rule.id.get_ref();
            if !crate::fhir::is_slug(rid) {
                errors.push(at(
                    rule.id.span().start,
                    &field("id"),
                    format!("`{rid}` must be a-z, 0-9 and -"),
                ));
            } else if !rule_ids.insert(rid.clone()) {
                errors.push(at(
                    rule.id.span().start,
                    &field("id"),
                    format!("`{rid}` is the id of another rule of this agreement"),
                ));
            }
            for (j, purpose) in rule.purpose_of_use.get_ref().iter().enumerate() {
                if !PURPOSES_OF_USE.contains(&purpose.get_ref().as_str()) {
                    errors.push(at(
                        purpose.span().start,
                        &field(&format!("purpose_of_use[{j}]")),
                        format!("`{}` is not an HL7 v3 PurposeOfUse code", purpose.get_ref()),
                    ));
                }
            }
            for (j, resource) in rule.resources.get_ref().iter().enumerate() {
                let r = resource.get_ref();
                if r != "*" && r != "Patient" && crate::fhir::search::type_def(r).is_none() {
                    errors.push(at(
                        resource.span().start,
                        &field(&format!("resources[{j}]")),
                        format!("`{r}` is not a FHIR resource type the gateway serves"),
                    ));
                }
            }
            for (j, label) in rule.exclude_labels.iter().enumerate() {
                if !labels.is_known(label.get_ref()) {
                    errors.push(at(
                        label.span().start,
                        &field(&format!("exclude_labels[{j}]")),
                        format!(
                            "`{}` is not an HL7 sensitivity label nor one of labels.toml's local_labels",
                            label.get_ref()
                        ),
                    ));
                }
            }
            for (j, path) in rule.redact.iter().enumerate() {
                let p = path.get_ref();
                let ok = !p.is_empty()
                    && p.split('.').all(|part| {
                        part.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                            && part.bytes().all(|b| b.is_ascii_alphanumeric())
                    })
                    && !matches!(p.as_str(), "id" | "meta" | "resourceType")
                    && !p.starts_with("meta.");
                if !ok {
                    errors.push(at(
                        path.span().start,
                        &field(&format!("redact[{j}]")),
                        format!("`{p}` is not an element path (such as `note` or `performer.display`) that may be removed"),
                    ));
                }
            }
            let condition = match &rule.where_ {
                None => None,
                Some(text) => match super::fhirpath::Condition::parse(text.get_ref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors.push(at(
                            text.span().start,
                            &field("where"),
                            format!("the FHIRPath condition does not parse: {e}"),
                        ));
                        None
                    }
                },
            };
            // Rules that could never match anything.
            let never = |what: &str| format!("is empty: the rule could never match {what}");
            if rule.purpose_of_use.get_ref().is_empty() {
                errors.push(at(
                    rule.purpose_of_use.span().start,
                    &field("purpose_of_use"),
                    never("any purpose"),
                ));
            }
            if rule.resources.get_ref().is_empty() {
                errors.push(at(
                    rule.resources.span().start,
                    &field("resources"),
                    never("any resource"),
                ));
            }
            match head.access {
                Access::Staff => {
                    if roles.is_empty() {
                        errors.push(at(roles_at, &field("roles"), never("any role")));
                    }
                    if !relationships.is_empty() {
                        errors.push(at(
                            relationships_at,
                            &field("relationships"),
                            "carers' relationships belong to patient-access agreements".into(),
                        ));
                    }
                }
                Access::Patient => {
                    if !roles.is_empty() {
                        errors.push(at(
                            roles_at,
                            &field("roles"),
                            "a patient-access rule applies to the person (and carers by relationships), not to staff roles".into(),
                        ));
                    }
                    if care {
                        errors.push(at(
                            care_at,
                            &field("requires_care_relationship"),
                            "a patient has no care relationship with an organisation's records; the rule could never match".into(),
                        ));
                    }
                }
            }
            rules.push(Rule {
                id: rid.clone(),
                purpose_of_use: rule
                    .purpose_of_use
                    .get_ref()
                    .iter()
                    .map(|p| p.get_ref().clone())
                    .collect(),
                roles: roles.clone(),
                relationships: relationships.clone(),
                resources: rule
                    .resources
                    .get_ref()
                    .iter()
                    .map(|r| r.get_ref().clone())
                    .collect(),
                exclude_labels: rule
                    .exclude_labels
                    .iter()
                    .map(|l| l.get_ref().clone())
                    .collect(),
                requires_care_relationship: care,
                where_: condition,
                redact: rule.redact.iter().map(|r| r.get_ref().clone()).collect(),
            });
        }
        let (Some(valid_from), Some(valid_until)) = (valid_from, valid_until) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((
            Agreement {
                id: id.clone(),
                id_line: line_of(text, head.id.span().start),
                title: head.title.get_ref().clone(),
                version: head.version.get_ref().clone(),
                status,
                access: head.access,
                legal_basis: head.legal_basis.get_ref().clone(),
                valid_from,
                valid_until,
                review_by: review_by.flatten(),
                owner: head.owner.get_ref().clone(),
                disclosers,
                recipients,
                rules,
            },
            warnings,
        ))
    }
}
