//! Reading one agreement file, and every check that does not need the other files.
//!
//! [`agreement`] takes the file's sections in order (the header, its dates, the parties, then
//! each rule), each in its own function. Findings are kept in the order they are found, which
//! is the order of the calls here: tests and the fuzz targets rely on both their texts and
//! their order, so change neither lightly.

use std::collections::HashSet;
use std::path::Path;

use jiff::civil::Date;
use serde::Deserialize;
use toml::Spanned;

use super::{Agreement, Audience, Interaction, PURPOSES_OF_USE, Rule, Status};
use crate::policy::fhirpath::Condition;
use crate::policy::labels::LabelMap;
use crate::policy::{Finding, LAPSE_WARNING_DAYS, PolicyFile, line_of};

/// A list of ODS codes as written, the list and each code with its place in the file.
type OdsList = Spanned<Vec<Spanned<String>>>;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The `[agreement]` table.
    agreement: Spanned<Header>,
    /// The `[parties]` table.
    parties: Spanned<Parties>,
    /// The `[[rule]]` tables, in file order.
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleDef>>,
}

/// The `[agreement]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The agreement's id.
    id: Spanned<String>,
    /// Its title.
    title: Spanned<String>,
    /// Its version.
    version: Spanned<String>,
    /// Where it stands.
    status: Spanned<Status>,
    /// Who it discloses to; staff when left out.
    #[serde(default)]
    access: Audience,
    /// Its legal bases.
    legal_basis: Spanned<Vec<String>>,
    /// First day in force, as written.
    valid_from: Spanned<String>,
    /// Last day in force, as written.
    valid_until: Spanned<String>,
    /// When it must next be reviewed, as written.
    review_by: Option<Spanned<String>>,
    /// Who owns it.
    owner: Spanned<String>,
}

/// The `[parties]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parties {
    /// The organisations whose records the agreement covers.
    disclosers: OdsList,
    /// The organisations whose staff may see them (staff agreements only).
    recipients: Option<OdsList>,
}

/// One `[[rule]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    /// The rule's id.
    id: Spanned<String>,
    /// PurposeOfUse codes it serves.
    purpose_of_use: Spanned<Vec<Spanned<String>>>,
    /// Staff roles it applies to.
    roles: Option<Spanned<Vec<String>>>,
    /// Carers' relationships it applies to.
    relationships: Option<Spanned<Vec<String>>>,
    /// Resource types, or `*`.
    resources: Spanned<Vec<Spanned<String>>>,
    /// What it permits doing with them; `read` and `search` when left out.
    interactions: Option<Spanned<Vec<Spanned<String>>>>,
    /// Labels never disclosed under it.
    #[serde(default)]
    exclude_labels: Vec<Spanned<String>>,
    /// Whether the person must be known to the caller's organisation.
    requires_care_relationship: Option<Spanned<bool>>,
    /// FHIRPath condition on the resource, as written.
    #[serde(rename = "where")]
    where_: Option<Spanned<String>>,
    /// Element paths removed before disclosure.
    #[serde(default)]
    redact: Vec<Spanned<String>>,
    /// The source a new resource the rule permits to create, belonging to no plan, goes to
    /// (patient-access rules).
    write_to: Option<Spanned<String>>,
}

impl RuleDef {
    /// The roles it names; none when left out.
    fn roles(&self) -> &[String] {
        self.roles.as_ref().map_or(&[], |r| r.get_ref().as_slice())
    }

    /// The carers' relationships it names; none when left out.
    fn relationships(&self) -> &[String] {
        self.relationships
            .as_ref()
            .map_or(&[], |r| r.get_ref().as_slice())
    }

    /// Whether it needs a care relationship; not when left out.
    fn requires_care(&self) -> bool {
        self.requires_care_relationship
            .as_ref()
            .is_some_and(|c| *c.get_ref())
    }
}

/// What the checks of one file found so far, each list in the order found.
struct Findings<'a> {
    /// The file, to place each finding in.
    source: PolicyFile<'a>,
    /// Errors: any one and the file does not load.
    errors: Vec<Finding>,
    /// Warnings: reported, but the file loads.
    warnings: Vec<Finding>,
}

impl Findings<'_> {
    /// Records an error about `field`, at byte `offset` of the file.
    fn error(&mut self, offset: usize, field: &str, message: impl Into<String>) {
        let finding = self.source.at(offset, field, message.into());
        self.errors.push(finding);
    }

    /// Records a warning about `field`, at byte `offset` of the file.
    fn warning(&mut self, offset: usize, field: &str, message: String) {
        let finding = self.source.at(offset, field, message);
        self.warnings.push(finding);
    }
}

/// The header's dates; `None` for one that is not a date (and was reported).
struct Dates {
    /// First day in force.
    valid_from: Option<Date>,
    /// Last day in force.
    valid_until: Option<Date>,
    /// When it must next be reviewed; also `None` when left out.
    review_by: Option<Date>,
}

/// Parses and checks one agreement file: see [`Agreement::parse`].
pub(super) fn agreement(
    path: &Path,
    text: &str,
    labels: &LabelMap,
    today: Date,
) -> Result<(Agreement, Vec<Finding>), Vec<Finding>> {
    let source = PolicyFile { path, text };
    let file: File = source.parse()?;
    let mut found = Findings {
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let head = file.agreement.get_ref();
    header(head, &mut found);
    let dates = dates(head, &mut found);
    lapse_warnings(head, &dates, today, &mut found);
    let (disclosers, recipients) = parties(&file.parties, head.access, &mut found);
    let rules = rules(&file, labels, &mut found);
    let (Some(valid_from), Some(valid_until)) = (dates.valid_from, dates.valid_until) else {
        return Err(found.errors);
    };
    if !found.errors.is_empty() {
        return Err(found.errors);
    }
    let agreement = Agreement {
        id: head.id.get_ref().as_str().into(),
        id_line: line_of(text, head.id.span().start),
        title: head.title.get_ref().clone(),
        version: head.version.get_ref().clone(),
        status: *head.status.get_ref(),
        access: head.access,
        legal_basis: head.legal_basis.get_ref().clone(),
        valid_from,
        valid_until,
        review_by: dates.review_by,
        owner: head.owner.get_ref().clone(),
        disclosers,
        recipients,
        rules,
    };
    Ok((agreement, found.warnings))
}

/// Checks the header's id, the texts that must not be empty, and the legal basis.
fn header(head: &Header, found: &mut Findings<'_>) {
    let id = head.id.get_ref();
    if id.len() > 64 || !crate::fhir::is_slug(id) {
        found.error(
            head.id.span().start,
            "agreement.id",
            format!("`{id}` must be 1 to 64 characters of a-z, 0-9 and -"),
        );
    }
    for (value, field) in [
        (&head.title, "agreement.title"),
        (&head.version, "agreement.version"),
        (&head.owner, "agreement.owner"),
    ] {
        if value.get_ref().trim().is_empty() {
            found.error(value.span().start, field, "must not be empty");
        }
    }
    if head
        .legal_basis
        .get_ref()
        .iter()
        .all(|b| b.trim().is_empty())
    {
        found.error(
            head.legal_basis.span().start,
            "agreement.legal_basis",
            "names no legal basis",
        );
    }
}

/// Reads the header's dates, reporting each that is not a date, then a `valid_until` before
/// `valid_from`.
fn dates(head: &Header, found: &mut Findings<'_>) -> Dates {
    let valid_from = date(&head.valid_from, "agreement.valid_from", found);
    let valid_until = date(&head.valid_until, "agreement.valid_until", found);
    let review_by = head
        .review_by
        .as_ref()
        .and_then(|r| date(r, "agreement.review_by", found));
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && until < from
    {
        found.error(
            head.valid_until.span().start,
            "agreement.valid_until",
            format!("{until} is before valid_from {from}"),
        );
    }
    Dates {
        valid_from,
        valid_until,
        review_by,
    }
}

/// One date of the header; `None`, and an error, when it is not a date.
fn date(value: &Spanned<String>, field: &str, found: &mut Findings<'_>) -> Option<Date> {
    match value.get_ref().parse::<Date>() {
        Ok(day) => Some(day),
        Err(_) => {
            found.error(
                value.span().start,
                field,
                format!("`{}` is not a date (YYYY-MM-DD)", value.get_ref()),
            );
            None
        }
    }
}

/// Warns, for an active agreement only, of a review that is overdue on `today`, then of a
/// `valid_until` within [`LAPSE_WARNING_DAYS`] of it.
fn lapse_warnings(head: &Header, dates: &Dates, today: Date, found: &mut Findings<'_>) {
    if *head.status.get_ref() != Status::Active {
        return;
    }
    if let Some(review) = dates.review_by
        && review < today
    {
        found.warning(
            head.review_by.as_ref().map_or(0, |r| r.span().start),
            "agreement.review_by",
            format!("the review was due on {review}"),
        );
    }
    if let Some(until) = dates.valid_until
        && until >= today
        && until <= today.saturating_add(jiff::Span::new().days(LAPSE_WARNING_DAYS))
    {
        found.warning(
            head.valid_until.span().start,
            "agreement.valid_until",
            format!("lapses on {until}, within {LAPSE_WARNING_DAYS} days"),
        );
    }
}

/// Reads the parties, disclosers then recipients: every code must be an ODS code, some
/// organisation must disclose, and recipients are named exactly when staff are the audience.
fn parties(
    table: &Spanned<Parties>,
    audience: Audience,
    found: &mut Findings<'_>,
) -> (Vec<String>, Vec<String>) {
    let parties = table.get_ref();
    let disclosers = ods_codes(&parties.disclosers, "parties.disclosers", found);
    let recipients = parties.recipients.as_ref().map_or_else(Vec::new, |list| {
        ods_codes(list, "parties.recipients", found)
    });
    if disclosers.is_empty() {
        found.error(
            parties.disclosers.span().start,
            "parties.disclosers",
            "names no organisation: the agreement could never disclose anything",
        );
    }
    match audience {
        Audience::Staff if recipients.is_empty() => found.error(
            table.span().start,
            "parties.recipients",
            "names no organisation: the agreement could never disclose anything",
        ),
        Audience::Patient if !recipients.is_empty() => found.error(
            parties.recipients.as_ref().map_or(0, |r| r.span().start),
            "parties.recipients",
            "a patient-access agreement discloses to the people themselves; leave recipients out",
        ),
        _ => {}
    }
    (disclosers, recipients)
}

/// The codes of one list of parties (`field`), reporting each that is not an ODS code.
fn ods_codes(list: &OdsList, field: &str, found: &mut Findings<'_>) -> Vec<String> {
    for (i, code) in list.get_ref().iter().enumerate() {
        if !crate::fhir::is_ods_code(code.get_ref()) {
            found.error(
                code.span().start,
                &format!("{field}[{i}]"),
                format!(
                    "`{}` is not an ODS code (3 to 10 upper-case letters and digits)",
                    code.get_ref()
                ),
            );
        }
    }
    values(list.get_ref())
}

/// Reads and checks every rule, in file order; an agreement with none is an error.
fn rules(file: &File, labels: &LabelMap, found: &mut Findings<'_>) -> Vec<Rule> {
    if file.rules.is_empty() {
        found.error(
            file.agreement.span().start,
            "rule",
            "the agreement has no [[rule]]: it could never disclose anything",
        );
    }
    let audience = file.agreement.get_ref().access;
    let mut ids = HashSet::new();
    let mut rules = Vec::with_capacity(file.rules.len());
    for (i, def) in file.rules.iter().enumerate() {
        rules.push(rule(i, def, audience, labels, &mut ids, found));
    }
    rules
}

/// Reads and checks the `i`th rule; `ids` holds the ids of the rules before it.
fn rule(
    i: usize,
    def: &Spanned<RuleDef>,
    audience: Audience,
    labels: &LabelMap,
    ids: &mut HashSet<String>,
    found: &mut Findings<'_>,
) -> Rule {
    let start = def.span().start;
    let def = def.get_ref();
    rule_id(i, def, ids, found);
    unknown_codes(i, def, labels, found);
    redactions(i, def, found);
    let where_ = condition(i, def, found);
    let interactions = interactions(i, def, found);
    empty_lists(i, def, found);
    audience_fit(i, def, start, audience, found);
    write_to(i, def, audience, &interactions, found);
    Rule {
        id: def.id.get_ref().as_str().into(),
        purpose_of_use: values(def.purpose_of_use.get_ref()),
        roles: def.roles().to_vec(),
        relationships: def.relationships().to_vec(),
        resources: values(def.resources.get_ref()),
        interactions,
        exclude_labels: values(&def.exclude_labels),
        requires_care_relationship: def.requires_care(),
        where_,
        redact: values(&def.redact),
        write_to: def.write_to.as_ref().map(|w| w.get_ref().clone()),
    }
}

/// Reports a `write_to` that is not a source id, or on a rule that cannot use it: only a
/// patient-access rule that permits `create` sends the person's new resources somewhere.
fn write_to(
    i: usize,
    def: &RuleDef,
    audience: Audience,
    interactions: &[Interaction],
    found: &mut Findings<'_>,
) {
    let Some(target) = &def.write_to else {
        return;
    };
    let at = target.span().start;
    let field = rule_field(i, "write_to");
    if !crate::fhir::is_slug(target.get_ref()) {
        found.error(
            at,
            &field,
            format!("`{}` is not a source id (a-z, 0-9 and -)", target.get_ref()),
        );
    } else if audience != Audience::Patient {
        found.error(
            at,
            &field,
            "names where the person's own new resources go: only a patient-access rule takes it (staff writes go by `write_default` in the config)",
        );
    } else if !interactions.contains(&Interaction::Create) {
        found.error(
            at,
            &field,
            "the rule does not permit `create`, so nothing it permits is written anywhere",
        );
    }
}

/// The dotted name of a field of the `i`th rule, e.g. `rule[2].resources`.
fn rule_field(i: usize, name: &str) -> String {
    format!("rule[{i}].{name}")
}

/// The text of a field that says a list is empty, so the rule could never match `what`.
fn never(what: &str) -> String {
    format!("is empty: the rule could never match {what}")
}

/// The values of a list, without their places in the file.
fn values(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|v| v.get_ref().clone()).collect()
}

/// Reports a rule id that is not a slug, or that an earlier rule of the agreement has.
fn rule_id(i: usize, def: &RuleDef, ids: &mut HashSet<String>, found: &mut Findings<'_>) {
    let id = def.id.get_ref();
    if !crate::fhir::is_slug(id) {
        found.error(
            def.id.span().start,
            &rule_field(i, "id"),
            format!("`{id}` must be a-z, 0-9 and -"),
        );
    } else if !ids.insert(id.clone()) {
        found.error(
            def.id.span().start,
            &rule_field(i, "id"),
            format!("`{id}` is the id of another rule of this agreement"),
        );
    }
}

/// Reports, in that order, purposes of use that are not HL7 v3 codes, resource types the
/// gateway does not serve, and labels that neither HL7 nor `labels.toml` defines.
fn unknown_codes(i: usize, def: &RuleDef, labels: &LabelMap, found: &mut Findings<'_>) {
    for (j, purpose) in def.purpose_of_use.get_ref().iter().enumerate() {
        if !PURPOSES_OF_USE.contains(&purpose.get_ref().as_str()) {
            found.error(
                purpose.span().start,
                &rule_field(i, &format!("purpose_of_use[{j}]")),
                format!("`{}` is not an HL7 v3 PurposeOfUse code", purpose.get_ref()),
            );
        }
    }
    for (j, resource) in def.resources.get_ref().iter().enumerate() {
        let r = resource.get_ref();
        if r != "*" && r != "Patient" && crate::fhir::search::type_def(r).is_none() {
            found.error(
                resource.span().start,
                &rule_field(i, &format!("resources[{j}]")),
                format!("`{r}` is not a FHIR resource type the gateway serves"),
            );
        }
    }
    for (j, label) in def.exclude_labels.iter().enumerate() {
        if !labels.is_known(label.get_ref()) {
            found.error(
                label.span().start,
                &rule_field(i, &format!("exclude_labels[{j}]")),
                format!(
                    "`{}` is not an HL7 sensitivity label nor one of labels.toml's local_labels",
                    label.get_ref()
                ),
            );
        }
    }
}

/// Reports each redaction that is not an element path that may be removed.
fn redactions(i: usize, def: &RuleDef, found: &mut Findings<'_>) {
    for (j, path) in def.redact.iter().enumerate() {
        let p = path.get_ref();
        if !is_removable(p) {
            found.error(
                path.span().start,
                &rule_field(i, &format!("redact[{j}]")),
                format!("`{p}` is not an element path (such as `note` or `performer.display`) that may be removed"),
            );
        }
    }
}

/// True for a dotted path of element names (each a lower-case letter, then letters and
/// digits), but for `id`, `meta`, `resourceType` and anything under `meta`, which every
/// disclosed resource keeps.
fn is_removable(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
        && !matches!(path, "id" | "meta" | "resourceType")
        && !path.starts_with("meta.")
}

/// The rule's `where` condition, if it has one; `None`, and an error, when it does not parse.
fn condition(i: usize, def: &RuleDef, found: &mut Findings<'_>) -> Option<Condition> {
    let text = def.where_.as_ref()?;
    match Condition::parse(text.get_ref()) {
        Ok(condition) => Some(condition),
        Err(e) => {
            found.error(
                text.span().start,
                &rule_field(i, "where"),
                format!("the FHIRPath condition does not parse: {e}"),
            );
            None
        }
    }
}

/// The rule's interactions ([`Interaction::DEFAULT`] when left out), reporting each name that
/// is not one, and an empty list: the rule could never permit anything.
fn interactions(i: usize, def: &RuleDef, found: &mut Findings<'_>) -> Vec<Interaction> {
    let Some(list) = &def.interactions else {
        return Interaction::DEFAULT.to_vec();
    };
    if list.get_ref().is_empty() {
        found.error(
            list.span().start,
            &rule_field(i, "interactions"),
            never("any interaction"),
        );
    }
    let mut out = Vec::new();
    for (j, name) in list.get_ref().iter().enumerate() {
        match Interaction::parse(name.get_ref()) {
            Some(interaction) if !out.contains(&interaction) => out.push(interaction),
            Some(_) => {}
            None => found.error(
                name.span().start,
                &rule_field(i, &format!("interactions[{j}]")),
                format!(
                    "`{}` is not an interaction (read, search, create, update)",
                    name.get_ref()
                ),
            ),
        }
    }
    out
}

/// Reports an empty list of purposes, then of resources: the rule could never match.
fn empty_lists(i: usize, def: &RuleDef, found: &mut Findings<'_>) {
    if def.purpose_of_use.get_ref().is_empty() {
        found.error(
            def.purpose_of_use.span().start,
            &rule_field(i, "purpose_of_use"),
            never("any purpose"),
        );
    }
    if def.resources.get_ref().is_empty() {
        found.error(
            def.resources.span().start,
            &rule_field(i, "resources"),
            never("any resource"),
        );
    }
}

/// Reports what does not fit the agreement's audience: a staff rule needs roles and names no
/// carers' relationships; a patient-access rule names no roles and needs no care
/// relationship. `start` places findings about fields the rule leaves out.
fn audience_fit(
    i: usize,
    def: &RuleDef,
    start: usize,
    audience: Audience,
    found: &mut Findings<'_>,
) {
    let roles_at = def.roles.as_ref().map_or(start, |r| r.span().start);
    match audience {
        Audience::Staff => {
            if def.roles().is_empty() {
                found.error(roles_at, &rule_field(i, "roles"), never("any role"));
            }
            if !def.relationships().is_empty() {
                found.error(
                    def.relationships.as_ref().map_or(start, |r| r.span().start),
                    &rule_field(i, "relationships"),
                    "carers' relationships belong to patient-access agreements",
                );
            }
        }
        Audience::Patient => {
            if !def.roles().is_empty() {
                found.error(
                    roles_at,
                    &rule_field(i, "roles"),
                    "a patient-access rule applies to the person (and carers by relationships), not to staff roles",
                );
            }
            if def.requires_care() {
                found.error(
                    def.requires_care_relationship
                        .as_ref()
                        .map_or(start, |c| c.span().start),
                    &rule_field(i, "requires_care_relationship"),
                    "a patient has no care relationship with an organisation's records; the rule could never match",
                );
            }
        }
    }
}
